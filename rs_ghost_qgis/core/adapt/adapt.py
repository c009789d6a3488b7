"""Adapt a model to the user's own scene and classes: a few labelled polygons, seconds, no torch.

``adapt()`` keeps the base model's ONNX graph as a feature extractor and fits a new softmax
classifier (``linear.py``) on chips cut from the user's polygons:

- **Chips** are the tiles of the engine's own grid (``classify/grid.py``, the model's footprint at
  its ground sampling distance, a step of ``stride`` model pixels), read and scaled by the
  same code as ``classify`` (``strips.read_strip``). **Rule:** a chip belongs to the polygon
  that contains its centre (the first one, where polygons of one class overlap; a centre inside
  polygons of two classes is contested, and the chip is left out and counted) and is used when at least
  ``min_valid_fraction`` of its pixels are valid. A polygon smaller than the chip step may
  hold no chip centre; the smallest usable polygon is about one step across.
- **Features** per chip: the graph's ``features`` output (the pooled vector before its
  classifier; added by ``onnx_meta.expose_features`` to a graph exported without it, when its
  classifier is a Gemm or MatMul), else its logits; then the mean and standard
  deviation of every band of the raster over the chip (``head.tile_band_statistics``), so a
  near-infrared band the base model never saw helps.
- **Accuracy** is cross-validated with whole polygons held out (group k-fold by polygon).
- **Output**: the base model's ONNX bytes with a new card (``onnx_meta.replace_metadata``),
  its classes the user's and the classifier in ``ModelCard.head``; ``runtime.Model`` applies it
  after the graph, so every face runs the adapted model like any other.

Every problem with the input raises an ``InputError`` naming the option and the fix, before
anything is written; the model is written atomically.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import shapely

from .. import crs
from ..classify.grid import Grid, build_grid
from ..classify.sinks import check_output
from ..classify.strips import MAX_TILES_PER_READ, fill_invalid, read_strip
from ..errors import Cancelled
from ..model.card import ModelCard
from ..model.head import Head
from ..model.onnx_meta import expose_features, replace_metadata
from ..model.runtime import Model, create_session, feature_source, load_model
from ..options import Area, OptionError, OptionText
from ..outputs import written
from ..radiometry.scaling import plan_radiometry
from ..sources.vector import read_features, split_layer
from .linear import cross_validate, fit_softmax

MIN_CHIPS = 5  # chips a class needs
FOLDS = 5
OUT = "adapted model (--out)"  # how messages name the output
# Distinct colours for classes the polygons' style does not colour (ColorBrewer Set1 + Dark2).
PALETTE = (
    "#e41a1c",
    "#377eb8",
    "#4daf4a",
    "#984ea3",
    "#ff7f00",
    "#a65628",
    "#f781bf",
    "#999999",
    "#1b9e77",
    "#d95f02",
    "#7570b3",
    "#e7298a",
    "#66a61e",
    "#e6ab02",
)
CHIP_RULE = (
    "a chip (one tile of the model's footprint, cut every stride on the model's grid) belongs to the polygon "
    "containing its centre and is used when at least the minimum valid fraction of its pixels are valid"
)
_POLYGONAL = {"Polygon", "MultiPolygon"}


@dataclass
class Labels:
    """The user's labelled polygons: one class name per geometry, in ``crs_wkt`` (None: the raster's)."""

    geometries: list  # shapely geometries
    classes: list[str | None]  # per geometry; None or '' is skipped with a warning
    crs_wkt: str | None
    source: str  # the file or layer, for the card and the messages
    field: str  # the class field
    colors: dict[str, str] = field(default_factory=dict)  # class -> '#rrggbb' (a categorized style)
    ids: list[int] = field(default_factory=list)  # feature ids, for messages (default: 1, 2, ...)
    file: str | None = None  # the file read, which the adapted model may never replace (None: a layer)
    without_geometry: int = 0  # features left out before these: no geometry, or an empty one


@dataclass
class AdaptOptions:
    """How to adapt; the values of ``classify`` that apply, with a denser default stride."""

    out_path: str
    model_path: str | None = None  # the base model; None = bundled
    stride: int | None = None  # model pixels between chips; None = a quarter of the tile
    bands: list[int] | None = None
    scaling: str = "auto"
    offset: float | None = None
    product: str = "auto"
    min_valid_fraction: float = 0.5
    threads: int | None = None
    batch_size: int = 32
    overwrite: bool = False
    min_chips: int = MIN_CHIPS
    folds: int = FOLDS


@dataclass
class AdaptResult:
    """What an adaptation made and how well it does."""

    out_path: str
    card: ModelCard
    chips: dict[str, int]  # per class
    polygons: dict[str, int]  # per class, the polygons that gave chips
    cv_accuracy: float
    cv_balanced_accuracy: float
    cv_recall: dict[str, float]
    feature_source: str  # "features" or "logits"
    seconds: float
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """Classes, chips and held-out accuracy as fixed-width text."""
        width = max(len("class"), *(len(name) for name in self.chips))
        lines = [f"{'class':<{width}}  {'polygons':>8}  {'chips':>6}  {'held-out recall':>15}"]
        for name, chips in self.chips.items():
            # One polygon, held out whole: its class is never learned when it is tested, so 0 % means nothing.
            recall = "n/a: 1 polygon" if self.polygons[name] == 1 else f"{self.cv_recall[name]:.1%}"
            lines.append(f"{name:<{width}}  {self.polygons[name]:>8}  {chips:>6}  {recall:>15}")
        if all(count == 1 for count in self.polygons.values()):  # every class held out whole: nothing to measure
            lines.append("cross-validated accuracy: not measurable, every class has one polygon (see the warning)")
        else:
            lines.append(
                f"cross-validated with whole polygons held out: accuracy {self.cv_accuracy:.1%}, "
                f"balanced accuracy {self.cv_balanced_accuracy:.1%}"
            )
        return "\n".join(lines)

    def unmeasured_note(self) -> str:
        """Why the classes drawn with one polygon have no measured accuracy, and the fix ('' when each has two)."""
        alone = [name for name, count in self.polygons.items() if count == 1]
        if not alone:
            return ""
        names = ", ".join(f"'{name}'" for name in alone)
        return (
            f"The accuracy of {names} cannot be measured: the check holds whole polygons out, so with one polygon the "
            "class is never learned when it is tested (its 0 % held-out recall, and the overall accuracy it lowers, "
            f"say nothing about the model). Draw a second polygon of {names} and adapt again."
        )


@dataclass
class _Chips:
    features: np.ndarray  # (n, d) graph features + band statistics
    polygon: np.ndarray  # (n,) index into the polygons
    contested: int = 0  # chip centres inside polygons of two classes, left out


def adapt(
    source,
    labels: Labels,
    options: AdaptOptions,
    progress: Callable[[float], None] | None = None,
    is_canceled: Callable[[], bool] | None = None,
) -> AdaptResult:
    """Fit a new classifier for ``labels`` on ``source`` and write the adapted model to ``options.out_path``."""
    started = time.perf_counter()
    info = source.info
    inputs = {"the base model ({model})": options.model_path, "the polygons ({polygons})": labels.file}
    check_output(options.out_path, options.overwrite, (".onnx",), OUT, input_path=info.path, inputs=inputs)
    polygons, classes, warnings = check_labels(labels, info)
    model, graph, exposed = with_features(load_model(options.model_path, options.threads), options.threads)
    grid = build_grid(info, model.card, Area(geometries=polygons, crs_wkt=info.crs_wkt), _stride(options, model))
    radiometry = plan_radiometry(source, model.card, options.bands, options.scaling, options.offset, options.product)
    warnings += [*grid.warnings, *radiometry.warnings]
    in_grid = crs.transform_geometry(np.asarray(polygons, dtype=object), info.crs_wkt, grid.crs_wkt)
    names = sorted(set(classes), key=_natural)
    label_of = [names.index(c) for c in classes]
    chips = _collect(source, model, radiometry, grid, list(in_grid), label_of, options, progress, is_canceled)
    warnings += _contested_warning(chips.contested, labels)
    y = np.array([names.index(c) for c in classes], dtype=int)[chips.polygon]
    warnings += _check_chips(names, y, chips, classes, labels, options, grid, model.card)
    source_kind = feature_source(model.session)[0]
    head, scores = _fit(chips, y, len(names), info.band_count, source_kind, options.folds)
    facts = _Facts(info, labels, options, radiometry, grid, names, y, chips.polygon, scores, source_kind, exposed)
    card = adapted_card(model, head, names, _colors(names, labels.colors), facts)
    write_adapted(graph, card, options.out_path)
    if progress:
        progress(100.0)
    return AdaptResult(
        out_path=str(options.out_path),
        card=card,
        chips=card.training["chips_per_class"],
        polygons=card.training["polygons_per_class"],
        cv_accuracy=scores["cv_accuracy"],
        cv_balanced_accuracy=scores["cv_balanced_accuracy"],
        cv_recall=dict(zip(names, scores["cv_recall"])),
        feature_source=source_kind,
        seconds=time.perf_counter() - started,
        warnings=warnings,
    )


def _fit(chips: _Chips, y: np.ndarray, classes: int, bands: int, source_kind: str, folds: int) -> tuple[Head, dict]:
    """The head fitted on every chip, and the held-out scores of group k-fold by polygon."""
    held_out = cross_validate(chips.features, y, chips.polygon, classes, folds)
    fitted = fit_softmax(chips.features, y, classes)
    dims = chips.features.shape[1] - 2 * bands
    head = Head(source_kind, dims, bands, fitted.mean, fitted.scale, fitted.weights, fitted.bias)
    return head, _scores(y, held_out, classes)


def _stride(options: AdaptOptions, model: Model) -> int:
    """The chip step: the option, else a quarter of the tile (more chips from small polygons)."""
    return options.stride if options.stride else max(1, model.card.tile_size // 4)


def _natural(name: str) -> tuple:
    return (name.lower(), name)


def check_labels(labels: Labels, info) -> tuple[list, list[str], list[str]]:
    """The usable polygons in the raster's CRS and their classes, plus warnings; InputError for bad input."""
    if not labels.geometries:
        raise OptionError("polygons", "{polygons} ({name}) holds no feature with a geometry.", name=labels.source)
    ids = labels.ids or list(range(1, len(labels.geometries) + 1))
    _check_polygonal(labels, ids)
    warnings: list[str] = []
    if labels.without_geometry:
        warnings.append(
            OptionText(
                "{count} feature(s) of {name} have no geometry (or an empty one) and were left out.",
                count=labels.without_geometry,
                name=labels.source,
            )
        )
    keep = [i for i, c in enumerate(labels.classes) if c is not None and str(c).strip()]
    if len(keep) < len(labels.classes):
        warnings.append(
            OptionText(
                "{skipped} polygon(s) of {name} have no value in the class field '{field}' ({class_field}) "
                "and were left out.",
                skipped=len(labels.classes) - len(keep),
                name=labels.source,
                field=labels.field,
            )
        )
    classes = [str(labels.classes[i]).strip() for i in keep]
    warnings += _case_variants(classes, labels)
    if len(set(classes)) < 2:
        raise OptionError(
            "class_field",
            "The class field '{field}' ({class_field}) of {name} gives {count} class(es) ({found}); adapting needs "
            "at least two: label polygons of two or more classes, or choose another field.",
            field=labels.field,
            name=labels.source,
            count=len(set(classes)),
            found=", ".join(sorted(set(classes))) or "none",
        )
    polygons = [shapely.make_valid(labels.geometries[i]) for i in keep]
    polygons = _in_raster_crs(polygons, labels.crs_wkt, info)
    _check_inside(polygons, [ids[i] for i in keep], [classes[k] for k in range(len(keep))], labels, info)
    return polygons, classes, warnings


def _case_variants(classes: list[str], labels: Labels) -> list[str]:
    """A warning for class values that differ only in case ('Meadow', 'meadow'): they become separate classes."""
    spellings: dict[str, set[str]] = {}
    for name in classes:
        spellings.setdefault(name.casefold(), set()).add(name)
    twins = [sorted(names) for names in spellings.values() if len(names) > 1]
    if not twins:
        return []
    return [
        OptionText(
            "The class field '{field}' ({class_field}) of {name} spells classes in more than one way ({twins}): "
            "each spelling becomes a class of its own. Write each class one way if they are the same.",
            field=labels.field,
            name=labels.source,
            twins="; ".join(" and ".join(f"'{n}'" for n in names) for names in twins),
        )
    ]


def _check_polygonal(labels: Labels, ids: list[int]) -> None:
    """Points or lines cannot hold chips: refuse them, saying how many and which."""
    kinds = [shapely.get_type_id(g) for g in labels.geometries]
    wrong = [
        (i, labels.geometries[k].geom_type)
        for k, i in enumerate(ids)
        if labels.geometries[k].geom_type not in _POLYGONAL
        and not (kinds[k] == 7 and _collection_has_polygon(labels.geometries[k]))
    ]
    if wrong:
        types = sorted({kind for _, kind in wrong})
        raise OptionError(
            "polygons",
            "{polygons} ({name}) must hold polygons, but {count} feature(s) are {types} (e.g. feature {first}); "
            "chips are cut where a polygon contains their centre: draw polygons around the areas of each class.",
            name=labels.source,
            count=len(wrong),
            types=", ".join(types),
            first=wrong[0][0],
        )


def _collection_has_polygon(geometry) -> bool:
    return any(part.geom_type in _POLYGONAL for part in shapely.get_parts(geometry))


def _in_raster_crs(polygons: list, crs_wkt: str | None, info) -> list:
    """The polygons reprojected into the raster's CRS (a layer without CRS is taken to be in it)."""
    if not crs_wkt or crs.same_crs(crs_wkt, info.crs_wkt):
        return polygons
    moved = crs.transform_geometry(np.asarray(polygons, dtype=object), crs_wkt, info.crs_wkt)
    return [shapely.make_valid(g) for g in moved]


def _check_inside(polygons: list, ids: list[int], classes: list[str], labels: Labels, info) -> None:
    """Refuse polygons that miss the raster: they are elsewhere, or in another CRS than they declare."""
    footprint = shapely.box(*info.bounds)
    outside = [k for k, g in enumerate(polygons) if not shapely.intersects(g, footprint)]
    if not outside:
        return
    first = outside[0]
    raise OptionError(
        "polygons",
        "{count} of the {total} polygons of {name} lie outside the raster {raster} (e.g. feature {feature}, class "
        "'{label}'), so no chip can be cut there. Remove them, or check the layer's CRS: it must be the CRS its "
        "coordinates are in (polygons in another CRS are reprojected).",
        count=len(outside),
        total=len(polygons),
        name=labels.source,
        raster=info.name,
        feature=ids[first],
        label=classes[first],
    )


def _collect(
    source, model: Model, radiometry, grid: Grid, polygons: list, label_of: list[int], options, progress, is_canceled
) -> _Chips:
    """Read every chip whose centre lies in a polygon; return its features and its polygon.

    ``label_of`` is each polygon's class index: a centre inside polygons of two classes is contested.
    """
    for polygon in polygons:
        shapely.prepare(polygon)
    features, owners, contested = [], [], 0
    rows = grid.tile_rows()
    for index, row in enumerate(rows):
        for start, end in grid.tile_runs(row):
            for first in range(start, end, MAX_TILES_PER_READ):
                if is_canceled and is_canceled():
                    raise Cancelled()
                cols = np.arange(first, min(end, first + MAX_TILES_PER_READ))
                owner = _owners(grid, row, cols, polygons, label_of)
                contested += int((owner == CONTESTED).sum())
                if (owner >= 0).any():
                    found = _read_chips(source, model, radiometry, grid, row, cols[owner >= 0], options)
                    features.append(found[0])
                    owners.append(owner[owner >= 0][found[1]])
        if progress:
            progress(90.0 * (index + 1) / len(rows))
    dims = 2 * source.info.band_count
    if not features:
        return _Chips(np.zeros((0, dims)), np.zeros(0, dtype=int), contested)
    return _Chips(np.concatenate(features), np.concatenate(owners), contested)


CONTESTED = -2  # _owners: a centre inside polygons of two classes


def _owners(grid: Grid, row: int, cols: np.ndarray, polygons: list, label_of: list[int]) -> np.ndarray:
    """Per tile, the first polygon containing its centre; -1: none does; CONTESTED: polygons of two classes do."""
    half = grid.tile_cells / 2
    x = grid.x0 + (cols + half) * grid.cell
    y = np.full(len(cols), grid.y0 - (row + half) * grid.cell)
    owner = np.full(len(cols), -1)
    for k, polygon in enumerate(polygons):
        inside = shapely.contains_xy(polygon, x, y)
        taken = owner >= 0
        clash = inside & taken
        clash[clash] = np.array(label_of)[owner[clash]] != label_of[k]
        owner[inside & (owner == -1)] = k
        owner[clash] = CONTESTED
    return owner


def _contested_warning(contested: int, labels: Labels) -> list[str]:
    """The warning for chips left out because their centre lies in polygons of two classes ([] when none)."""
    if not contested:
        return []
    return [
        OptionText(
            "{count} chip(s) lie where polygons of two classes of {name} overlap and were left out (a chip cannot "
            "belong to two classes). Fix the overlapping polygons in {polygons} so that each area has one class.",
            count=contested,
            name=labels.source,
        )
    ]


def _read_chips(source, model: Model, radiometry, grid: Grid, row: int, cols: np.ndarray, options):
    """Features of the tiles of ``row`` starting at ``cols`` that have enough valid pixels, and which those are."""
    strip = read_strip(source, grid, radiometry, row, int(cols[0]), int(cols[-1]) + 1, source.info.band_count)
    picked = cols - cols[0]
    usable = strip.valid_fraction[picked] >= max(options.min_valid_fraction, 1e-9)
    picked = picked[usable]
    tiles = fill_invalid(strip.tiles[picked], strip.valid[picked])
    graph = [model.features(tiles[i : i + options.batch_size]) for i in range(0, len(tiles), options.batch_size)]
    graph_features = np.concatenate(graph) if graph else np.zeros((0, 1))
    return np.concatenate([graph_features, strip.statistics[picked]], axis=1), np.flatnonzero(usable)


def _check_chips(names, y, chips: _Chips, classes, labels: Labels, options, grid: Grid, card) -> list[str]:
    """InputError for a class with too few chips; warnings for polygons that gave none."""
    step, polygon = grid.cell_m, chips.polygon
    # Chips left out where classes overlap may be why a class has too few: the error says so.
    contested = (
        f" ({chips.contested} chips were left out where polygons of two classes overlap)" if chips.contested else ""
    )
    for i, name in enumerate(names):
        have = int((y == i).sum())
        if have < options.min_chips:
            raise OptionError(
                "polygons",
                "Class '{name}' has {have} chip(s){contested}; at least {need} are needed. A chip is a {tile:g} m "
                "tile and belongs to the polygon containing its centre; centres lie every {step:g} m ({stride}), so "
                "a polygon of about {step:g} m across holds one. Draw larger or more polygons of '{name}' in "
                "{polygons}, or choose a smaller {stride}.",
                name=name,
                have=have,
                contested=contested,
                need=options.min_chips,
                tile=card.tile_size_m,
                step=step,
            )
    empty = sorted(set(range(len(classes))) - set(polygon.tolist()))
    if not empty:
        return []
    return [
        OptionText(
            "{count} polygon(s) of {name} hold no usable chip centre (smaller than the chip step of {step:g} m, "
            "mostly nodata, or overlapped by a polygon of another class) and add nothing; the smallest usable "
            "polygon is about {step:g} m across.",
            count=len(empty),
            name=labels.source,
            step=step,
        )
    ]


def _scores(y: np.ndarray, held_out: np.ndarray, classes: int) -> dict:
    """Held-out accuracy, balanced accuracy and recall per class (by class index, named in the card)."""
    recall = [float((held_out[y == i] == i).mean()) for i in range(classes)]
    return {
        "cv_accuracy": float((held_out == y).mean()),
        "cv_balanced_accuracy": float(np.mean(recall)),
        "cv_recall": recall,
    }


def _colors(names: list[str], style: dict[str, str]) -> list[str]:
    """The style's colour of each class where it has one, else the palette's next unused colour."""
    used = {c.lower() for c in style.values()}
    spare = iter([c for c in PALETTE if c not in used] + list(PALETTE))
    return [style[n] if n in style else next(spare) for n in names]


@dataclass
class _Facts:
    """What the card says about how the model was adapted."""

    info: object
    labels: Labels
    options: AdaptOptions
    radiometry: object
    grid: Grid
    names: list[str]
    y: np.ndarray
    polygon: np.ndarray
    scores: dict
    source_kind: str
    exposed: bool  # the 'features' output was added by adapt (the base graph lacked it)


def adapted_card(model: Model, head: Head, names: list[str], colors: list[str], facts: _Facts) -> ModelCard:
    """The base card with the user's classes, the head, and how and how well it was adapted."""
    base = model.card
    scores = facts.scores
    metrics = {
        "cv_accuracy": round(scores["cv_accuracy"], 4),
        "cv_balanced_accuracy": round(scores["cv_balanced_accuracy"], 4),
        "cv_recall": {n: round(v, 4) for n, v in zip(names, scores["cv_recall"])},
        "cv_method": f"group k-fold by polygon ({min(facts.options.folds, len(set(facts.polygon.tolist())))} folds): "
        "chips of one polygon never test themselves",
        "chips": int(len(facts.y)),
    }
    return dataclasses.replace(
        base,
        class_names=list(names),
        class_colors=list(colors),
        temperature=1.0,
        metrics=metrics,
        training=_training(model, facts),
        head=head.to_card(),
        created=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


def _training(model: Model, facts: _Facts) -> dict:
    base = model.card
    if facts.exposed:
        features = "the base graph's pooled features (its final classifier's input, exposed as a 'features' output)"
    elif facts.source_kind == "features":
        features = "the base graph's pooled features ('features' output)"
    else:
        features = "the base model's logits (its graph has no 'features' output and no Gemm/MatMul classifier)"
    return {
        "status": "adapted",
        "method": f"softmax regression (L2, classes weighted equally) on {features} + mean and std of every "
        f"raster band per chip",
        "base_model": {
            "name": model.path.name,
            "sha256": sha256(model.path),
            "architecture": base.architecture,
            "classes": base.class_names,
        },
        "raster": facts.info.name,
        "raster_bands": facts.info.band_count,
        "polygons": facts.labels.source,
        "class_field": facts.labels.field,
        "chips_per_class": {n: int((facts.y == i).sum()) for i, n in enumerate(facts.names)},
        "polygons_per_class": {n: len(set(facts.polygon[facts.y == i].tolist())) for i, n in enumerate(facts.names)},
        "chip_rule": CHIP_RULE,
        "stride_m": facts.grid.cell_m,
        "bands": list(facts.radiometry.bands),
        "scaling": facts.radiometry.scaling_note,
        # What classify compares (radiometry.adapted_data_warning): other data changes the band statistics.
        "raster_dtype": facts.info.dtype,
        "scaling_method": facts.radiometry.scaling,
    }


def sha256(path: Path) -> str:
    """The file's sha256, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def with_features(model: Model, threads: int | None) -> tuple[Model, bytes, bool]:
    """The model reading its pooled features, its graph's bytes, and whether adapt exposed them.

    A graph exported without a ``features`` output gets one when its classifier is a Gemm or
    MatMul (``onnx_meta.expose_features``); otherwise the logits stand in.
    """
    data = Path(model.path).read_bytes()
    if feature_source(model.session)[0] == "features":
        return model, data, False
    exposed = expose_features(data)
    if exposed is None:
        return model, data, False
    session = create_session(exposed, threads)
    return dataclasses.replace(model, session=session, feature_output=feature_source(session)[1]), exposed, True


def write_adapted(graph: bytes, card: ModelCard, out_path: str) -> Path:
    """The base graph's bytes with ``card`` as its metadata, written atomically and loaded once to check it."""
    data = replace_metadata(graph, card.to_metadata())
    with written(out_path, f"the {OUT}") as tmp:
        tmp.write_bytes(data)
        load_model(tmp, threads=1)
    return Path(out_path)


def labels_from_file(path: str, class_field: str, layer_name: str | None = None) -> Labels:
    """The polygons of one layer of an OGR vector file, with their class field; InputError when unusable.

    ``path`` may be ``FILE|layername=NAME``; ``layer_name`` names the layer too.
    """
    file = split_layer(path)[0]
    if not Path(file).exists():
        raise OptionError("polygons", "{polygons} file {path} does not exist; check the path.", path=file)
    layer = read_features(path, [class_field], layer_name)
    if layer is None:
        raise OptionError(
            "polygons",
            "{polygons} {path} is not a vector file OGR can read (GeoPackage, Shapefile, GeoJSON, ...).",
            path=path,
        )
    if class_field not in layer.fields:
        raise missing_field(class_field, Path(path).name, layer.fields)
    classes = [values.get(class_field) for values in layer.values]
    return Labels(
        layer.geometries,
        [None if c is None else str(c) for c in classes],
        layer.crs_wkt,
        Path(path).name,
        class_field,
        file=file,
        without_geometry=layer.skipped,
    )


def missing_field(class_field: str, name: str, fields: Sequence[str]) -> OptionError:
    """The one error for a class field the layer does not have, listing those it has."""
    return OptionError(
        "class_field",
        "{name} has no field '{field}' ({class_field}); its fields are: {fields}.",
        name=name,
        field=class_field,
        fields=", ".join(fields) or "none",
    )
