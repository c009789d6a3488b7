"""load_dataset: find out what the source is, pick the splits, decode once, summarise."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from training.errors import DataError

from .base import DatasetSplits, ImageArrays
from .cache import Decoded, decode_cached
from .folders import FileList, choose_splits, scan_tree
from .splits import limit_per_class as limit_indices
from .splits import stratified_split

MAX_BAD_FRACTION = 0.01
MAX_LISTED_SKIPS = 50  # keeps the summary small when many files are broken


def load_dataset(
    source: str | Path,
    *,
    image_size: int = 64,
    split_csv: str | None = None,
    val_csv: str | None = None,
    val_fraction: float = 0.2,
    limit_per_class: int | None = None,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    polygons: str | None = None,
    class_field: str = "class",
    gsd_m: float | None = None,
    chip_stride: int | None = None,
) -> DatasetSplits:
    """Load a labelled image set as uint8 train/val arrays of ``image_size`` pixels.

    ``source`` is either a folder tree labelled by folder (class folders such as EuroSAT, AID,
    UC Merced, NWPU-RESISC45, or RSOD's category folders; see ``folders.scan_tree``), or a
    raster together with ``polygons`` that carry the class in ``class_field`` (see
    ``raster``). Splits come from ``split_csv``/``val_csv`` (or the tree's own train.csv and
    validation.csv), else from a seeded stratified split holding out ``val_fraction``.
    ``limit_per_class`` caps each class in each split, chosen with ``seed``. Folder images are
    decoded once and cached in ``cache_dir`` (default ./cache/datasets). ``gsd_m`` is the
    chips' metres per pixel in raster mode; for folders it is only recorded in the summary.
    Raises DataError for mistakes in the data or the arguments.
    """
    source = Path(source)
    _check_options(image_size, val_fraction, limit_per_class)
    if not source.exists():
        raise DataError(f"Data source {source} does not exist. Fix the path.")
    if polygons is not None:
        splits = _from_raster(
            source, Path(polygons), class_field, image_size, gsd_m, chip_stride, val_fraction, limit_per_class, seed
        )
    elif not source.is_dir():
        raise DataError(
            f"{source} is a file. Give a folder with one subfolder per class, or a raster together with "
            "--polygons <GeoPackage or Shapefile with a class field>."
        )
    else:
        splits = _from_folders(
            source, image_size, split_csv, val_csv, val_fraction, limit_per_class, seed, cache_dir, gsd_m
        )
    _warn_classes_without_val(splits)
    return splits


def _warn_classes_without_val(splits: DatasetSplits) -> None:
    """One line per class that trains but has no validation image: validation top-1 then leaves it out.

    A stratified split keeps one image of each class for validation only when the class has
    two or more; a validation CSV may simply not list a class.
    """
    counts = splits.summary.get("counts", {})
    train, val = counts.get("train", {}), counts.get("val", {})
    missing = [name for name in splits.class_names if train.get(name, 0) and not val.get(name, 0)]
    stratified = splits.summary.get("split") == "stratified"
    for name in missing:
        fix = (
            f"add images to {name} (two or more put one in validation)"
            if stratified
            else f"list images of {name} in the validation CSV"
        )
        print(
            f"warning: class {name} has {train[name]} training image(s) and none for validation; validation "
            f"top-1 covers {len(splits.class_names) - len(missing)} of {len(splits.class_names)} classes. To "
            f"measure it, {fix}.",
            file=sys.stderr,
        )


def _check_options(image_size: int, val_fraction: float, limit: int | None) -> None:
    if image_size < 1:
        raise DataError(f"--image-size must be a positive number of pixels, not {image_size}.")
    if not 0 < val_fraction < 1:
        raise DataError(f"--val-fraction must lie between 0 and 1 (e.g. 0.2), not {val_fraction}.")
    if limit is not None and limit < 1:
        raise DataError(f"--limit-per-class must be at least 1 (or left out for no limit), not {limit}.")


def _from_folders(
    root: Path,
    image_size: int,
    split_csv: str | None,
    val_csv: str | None,
    val_fraction: float,
    limit: int | None,
    seed: int,
    cache_dir: str | Path | None,
    gsd_m: float | None,
) -> DatasetSplits:
    tree = scan_tree(root)
    train, val, split = choose_splits(root, tree, split_csv, val_csv, val_fraction, seed)
    if limit is not None:
        train = train.take(limit_indices(train.labels, limit, seed))
        val = val.take(limit_indices(val.labels, limit, seed))
    decoded = decode_cached(root, train.files.tolist() + val.files.tolist(), image_size, cache_dir)
    total = len(decoded.rows) + len(decoded.failures)
    if len(decoded.failures) > MAX_BAD_FRACTION * total:
        name, reason = next(iter(decoded.failures.items()))
        raise DataError(
            f"{len(decoded.failures)} of {total} images under {root} cannot be decoded (more than "
            f"{MAX_BAD_FRACTION:.0%}), e.g. {name}: {reason}. Replace or delete the broken files."
        )
    splits = DatasetSplits(_arrays(train, decoded), _arrays(val, decoded), tree.class_names, {})
    splits.summary = {
        "source": str(root.resolve()),
        "kind": tree.kind,
        **split,
        "seed": seed,
        "limit_per_class": limit,
        "image_size": image_size,
        "gsd_m": gsd_m,
        "counts": _counts(splits),
        "converted": _tally(decoded.conversions.values()),
        "skipped": len(decoded.failures),
        "skipped_files": [{"file": f, "reason": r} for f, r in list(decoded.failures.items())[:MAX_LISTED_SKIPS]],
        "cache": {"file": str(decoded.cache_file), "hit": decoded.cache_hit},
    }
    return splits


def _arrays(files: FileList, decoded: Decoded) -> ImageArrays:
    """The decoded images of ``files`` in their order, leaving out those that failed."""
    rows = [decoded.rows.get(f, -1) for f in files.files.tolist()]
    kept = np.array([row >= 0 for row in rows], dtype=bool)
    indices = np.array(rows, dtype=np.int64)[kept]
    return ImageArrays(decoded.images[indices], files.labels[kept], files.files[kept])


def _from_raster(
    raster: Path,
    polygons: Path,
    class_field: str,
    image_size: int,
    gsd_m: float | None,
    chip_stride: int | None,
    val_fraction: float,
    limit: int | None,
    seed: int,
) -> DatasetSplits:
    from .raster import cut_chips  # rasterio and GDAL: only for a raster with polygons, not for patch folders

    chips = cut_chips(
        raster, polygons, class_field=class_field, image_size=image_size, gsd_m=gsd_m, chip_stride=chip_stride
    )
    train, val = stratified_split(chips.labels, val_fraction, seed)
    if limit is not None:
        train = train[limit_indices(chips.labels[train], limit, seed)]
        val = val[limit_indices(chips.labels[val], limit, seed)]
    splits = DatasetSplits(
        ImageArrays(chips.images[train], chips.labels[train]),
        ImageArrays(chips.images[val], chips.labels[val]),
        chips.class_names,
        {},
    )
    splits.summary = {
        "source": str(raster.resolve()),
        "kind": "raster_polygons",
        "split": "stratified",
        "val_fraction": val_fraction,
        "seed": seed,
        "limit_per_class": limit,
        "image_size": image_size,
        **chips.summary,
        "counts": _counts(splits),
        "skipped": 0,
    }
    return splits


def _counts(splits: DatasetSplits) -> dict:
    return {
        name: {c: int(np.sum(arrays.labels == label)) for label, c in enumerate(splits.class_names)}
        for name, arrays in (("train", splits.train), ("val", splits.val))
    }


def _tally(values: Iterable[str]) -> dict[str, int]:
    return dict(sorted(Counter(values).items()))
