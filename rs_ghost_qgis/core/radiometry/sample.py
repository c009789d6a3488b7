"""The sample of a raster that the radiometry's statistics come from.

Valid, finite values at full resolution: the whole raster when it is at most SAMPLE_PIXELS,
else a regular SAMPLE_WINDOWS x SAMPLE_WINDOWS pattern of SAMPLE_WINDOW_PX windows.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InputError
from ..sources.source import Bounds, RasterSource, finite_pixels
from .bands import join_bands

PERCENTILES = (2.0, 98.0)
# Full-resolution sample for the statistics: whole raster when it is at most this many
# pixels, else a regular 8 x 8 pattern of 128 x 128 px windows.
SAMPLE_PIXELS = 1 << 20
SAMPLE_WINDOWS = 8
SAMPLE_WINDOW_PX = 128


def sample_values(source: RasterSource, bands: list[int], within: Bounds | None = None) -> np.ndarray:
    """Valid, finite values of ``bands`` (len(bands), N) sampled across the whole raster at full resolution.

    When none is found and ``within`` (bounds in the raster's CRS) is given, they are sampled
    there: the whole raster's windows can all miss the data of a sparse mosaic that the area holds.
    """
    samples = _valid_samples(source, bands, source.info.bounds)
    if not samples and within is not None:
        samples = _valid_samples(source, bands, within)
    if not samples:
        where = "" if within is None else " inside the area asked for"
        raise InputError(
            f"{source.info.name} has no valid pixels in bands {join_bands(bands)}{where} (all nodata, NaN or masked); "
            "nothing to classify."
        )
    return _joined(samples)


def _valid_samples(source: RasterSource, bands: list[int], extent: Bounds) -> list[np.ndarray]:
    """The valid, finite values of each sampled block of ``extent``, in the raster's type; empty blocks left out."""
    # Non-finite values are nodata whatever the source says: one NaN would make every statistic NaN.
    samples = [_valid_values(block) for block in _sample_blocks(source, bands, extent)]
    return [s for s in samples if s.shape[1]]


def _joined(samples: list[np.ndarray]) -> np.ndarray:
    """The blocks' values (bands, N) side by side as float64, each band's values contiguous.

    Each block is cast as it is copied into place: no float64 copy per block, and no second
    copy to join them. No statistic depends on the layout: the colour caution's means add up
    in the values' order whatever it is (``colour.row_means``).
    """
    values = np.empty((len(samples[0]), sum(s.shape[1] for s in samples)), dtype=np.float64)
    start = 0
    for sample in samples:
        values[:, start : start + sample.shape[1]] = sample
        start += sample.shape[1]
    return values


def per_band(values: np.ndarray, reduce) -> np.ndarray:
    """``reduce(values, axis=1)`` (min, max), band by band: fast whatever the layout of ``values``."""
    return np.array([reduce(band) for band in values], dtype=values.dtype)


def _valid_values(block) -> np.ndarray:
    """The block's values (bands, N) at its valid, finite pixels, in its type (``_joined`` makes them float64)."""
    keep = block.valid & finite_pixels(block.data)
    if keep.all():
        return block.data.reshape(len(block.data), -1)  # the values of the boolean index below, without its cost
    return block.data[:, keep]


def percentile_ranges(values: np.ndarray, common: bool) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The 2nd and 98th percentiles per band of ``values`` (C, N), or of all bands together when ``common``."""
    if common:
        low = np.full(values.shape[0], np.percentile(values, PERCENTILES[0]))
        high = np.full(values.shape[0], np.percentile(values, PERCENTILES[1]))
    else:
        low = np.percentile(values, PERCENTILES[0], axis=1)
        high = np.percentile(values, PERCENTILES[1], axis=1)
    return tuple(float(v) for v in low), tuple(float(v) for v in _widen(low, high))


def _widen(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``high``, raised where needed so that ``high - low`` is a positive, finite span.

    A constant band still needs a valid mapping; a step of 1 vanishes in rounding for large
    values (1e30 + 1 == 1e30), so the step grows with the magnitude.
    """
    step = np.maximum(1.0, np.abs(low) * 1e-6)
    return np.where(high - low > 0, high, low + step)


def _sample_blocks(source: RasterSource, bands: list[int], extent: Bounds):
    """Blocks of ``bands`` spread over ``extent`` (the raster's CRS), whole pixels at full resolution."""
    info = source.info
    xmin, ymax = info.bounds[0], info.bounds[3]
    px, py = info.pixel_size
    col0 = max(0, math.floor((extent[0] - xmin) / px))
    row0 = max(0, math.floor((ymax - extent[3]) / py))
    width = min(info.width, math.ceil((extent[2] - xmin) / px)) - col0
    height = min(info.height, math.ceil((ymax - extent[1]) / py)) - row0
    if width <= 0 or height <= 0:
        return
    if width * height <= SAMPLE_PIXELS:
        x0, y1 = xmin + col0 * px, ymax - row0 * py
        yield source.read((x0, y1 - height * py, x0 + width * px, y1), info.crs_wkt, width, height, bands)
        return
    w, h = min(SAMPLE_WINDOW_PX, width), min(SAMPLE_WINDOW_PX, height)
    for i in range(SAMPLE_WINDOWS):
        for j in range(SAMPLE_WINDOWS):
            # Window origins on whole pixels, spread evenly; reads stay at full resolution.
            col = col0 + round((width - w) * (j + 0.5) / SAMPLE_WINDOWS)
            row = row0 + round((height - h) * (i + 0.5) / SAMPLE_WINDOWS)
            x0, y1 = xmin + col * px, ymax - row * py
            yield source.read((x0, y1 - h * py, x0 + w * px, y1), info.crs_wkt, w, h, bands)
