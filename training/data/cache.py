"""Decode a tree's images once and keep them as a compact uint8 .npy beside a .json index.

The cache key is a hash of the tree's path, the image size and the sorted list of files with
their sizes and modification times: another seed or validation fraction over the same files
reuses the entry, while any edited, added or removed file makes a new one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rs_ghost_qgis.core.atomic import atomic_path, write_text

from . import images as image_decoding

CACHE_FORMAT = 1
log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """./cache/datasets under the working directory (data folders may be read-only)."""
    return Path.cwd() / "cache" / "datasets"


@dataclass
class Decoded:
    """The decoded images of a set of files, addressed by relative path."""

    images: np.ndarray  # (n_decoded, size, size, 3) uint8
    rows: dict[str, int]  # file -> row in images, for files that decoded
    conversions: dict[str, str]  # file -> conversion, for files that needed one
    failures: dict[str, str]  # file -> why it could not be decoded
    cache_file: Path
    cache_hit: bool


def decode_cached(root: Path, files: list[str], size: int, cache_dir: Path | None) -> Decoded:
    """Return the images of ``files`` (relative to ``root``), from the cache when it has them."""
    unique = sorted(set(files))
    key = _cache_key(root, unique, size)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    npy, index = cache_dir / f"{root.name}-{size}px-{key}.npy", cache_dir / f"{root.name}-{size}px-{key}.json"
    if index.is_file() and npy.is_file():
        meta = json.loads(index.read_text(encoding="utf-8"))
        # Mapped, not read: the splits copy out their rows, so the file is never held twice.
        return _decoded(np.load(npy, mmap_mode="r"), unique, meta["conversions"], meta["failures"], npy, cache_hit=True)

    started = time.perf_counter()
    log.info("Decoding %d images under %s (once; cached in %s)", len(unique), root, cache_dir)
    arrays, conversion_list, failure_index = image_decoding.decode_many([root / f for f in unique], size)
    conversions = {f: c for f, c in zip(unique, conversion_list, strict=True) if c}
    failures = {unique[i]: reason for i, reason in sorted(failure_index.items())}
    kept = np.array([i not in failure_index for i in range(len(unique))], dtype=bool)
    decoded_images = arrays[kept] if failures else arrays
    log.info("Decoded %d images in %.1f s", len(unique), time.perf_counter() - started)
    _write(npy, index, decoded_images, {"format": CACHE_FORMAT, "conversions": conversions, "failures": failures})
    return _decoded(decoded_images, unique, conversions, failures, npy, cache_hit=False)


def _decoded(
    images: np.ndarray, unique: list[str], conversions: dict, failures: dict, npy: Path, cache_hit: bool
) -> Decoded:
    rows = {f: row for row, f in enumerate(f for f in unique if f not in failures)}
    return Decoded(images, rows, conversions, failures, npy, cache_hit)


def _cache_key(root: Path, unique: list[str], size: int) -> str:
    digest = hashlib.sha256(f"{CACHE_FORMAT}\n{root.resolve()}\n{size}\n".encode())
    for name in unique:
        stat = os.stat(root / name)
        digest.update(f"{name}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def _write(npy: Path, index: Path, images: np.ndarray, meta: dict) -> None:
    # Each file is written atomically, the index last, so that an interrupted run never leaves
    # an entry that looks complete; a cache that cannot be written only costs speed.
    try:
        with atomic_path(npy) as tmp:  # keeps the .npy suffix, so np.save adds none
            np.save(tmp, images)
        write_text(index, json.dumps(meta))
    except OSError as error:
        log.warning("Could not write the dataset cache in %s (%s); the next load decodes again.", npy.parent, error)
