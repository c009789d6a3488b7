"""Strips of tiles read from a RasterSource and made ready for the model: the one reader of classify and adapt.

A strip is one read of neighbouring tiles in a grid row (at most MAX_TILES_PER_READ), scaled
by the run's radiometry into the network input; a tile's invalid pixels are filled with its
mean before it reaches the model (``fill_invalid``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import InputError
from ..model.head import tile_band_statistics
from ..radiometry.plan import Radiometry
from ..sources.source import Block
from .evidence import EvidenceBands, pixel_masks, tile_shares
from .grid import Grid

MAX_TILES_PER_READ = 64  # tiles per read: bounds the strip buffers (64 tiles of 64 px: 4096 px wide)


@dataclass
class Strip:
    """The tiles of one strip as the model sees them, before invalid pixels are filled."""

    tiles: np.ndarray  # (k, C, size, size) normalised network input (a view into the strip)
    valid: np.ndarray  # (k, size, size) bool
    valid_fraction: np.ndarray  # (k,)
    statistics: np.ndarray | None  # (k, 2 * bands): every raster band's mean and std per tile (adapted models)
    any_valid: bool
    water_share: np.ndarray | None = None  # (k,) water pixels per valid pixel (core/classify/evidence.py)
    vegetated_share: np.ndarray | None = None  # (k,) vegetated pixels per valid pixel


def read_strip(
    source,
    grid: Grid,
    radiometry: Radiometry,
    row: int,
    start: int,
    end: int,
    stat_bands: int = 0,
    evidence_bands: EvidenceBands | None = None,
):
    """Read tiles [start, end) of grid row ``row`` in one strip: the one reader of classify and adapt.

    ``stat_bands`` > 0 also reads raster bands 1..stat_bands and gives each tile their mean and
    standard deviation over its valid pixels, in the plan's units (``raw * gain - offset``:
    reflectance x 10,000 where reflectance was detected). ``evidence_bands`` also reads green,
    red and near infrared and gives each tile its shares of water and vegetated pixels.
    """
    n, px, size = grid.tile_cells, grid.cell_px, grid.tile_px
    width = (end - start - 1 + n) * px
    extra = [evidence_bands.green, evidence_bands.red, evidence_bands.nir] if evidence_bands else []
    bands = list(radiometry.bands) + list(range(1, stat_bands + 1)) + extra
    # Each band is read once: the evidence's green and red feed the model too, and a warp costs per band.
    distinct = list(dict.fromkeys(bands))
    block = source.read(grid.run_bounds(row, start, end), grid.crs_wkt, width, size, distinct)
    _check_block(source.info, block, (len(distinct), size, width))
    if len(distinct) < len(bands):
        block = Block(block.data[[distinct.index(band) for band in bands]], block.valid)
    channels = len(radiometry.bands)
    data = radiometry.normalise(block.data[:channels])  # (C, size, width)
    # Zero in every band is no reflectance or colour anywhere: a mosaic's gap or an export's fill
    # that nobody declared as nodata (plan_radiometry warns about it). Classified, it is open water.
    pixels_valid = block.valid & block.data[:channels].any(axis=0)
    # Tile k is the size x size window starting px * k pixels into the strip.
    tiles = sliding_window_view(data, size, axis=2)[:, :, ::px].transpose(2, 0, 1, 3)  # (k, C, size, size)
    valid = sliding_window_view(pixels_valid, size, axis=1)[:, ::px].transpose(1, 0, 2)  # (k, size, size)
    statistics = None
    if stat_bands:
        values = block.data[channels : channels + stat_bands].astype(np.float32) * radiometry.gain - radiometry.offset
        windows = sliding_window_view(values, size, axis=2)[:, :, ::px].transpose(2, 0, 1, 3)
        statistics = tile_band_statistics(windows, valid)
    everywhere = bool(pixels_valid.all())  # the usual strip: no count needed
    shares = np.ones(len(valid)) if everywhere else valid_shares(valid)
    strip = Strip(tiles, valid, shares, statistics, everywhere or bool(pixels_valid.any()))
    if extra:
        green, red, nir = (block.data[b].astype(np.float32) * radiometry.gain - radiometry.offset for b in (-3, -2, -1))
        water, vegetated = pixel_masks(green, red, nir, pixels_valid)
        strip.water_share = tile_shares(water, pixels_valid, size, px)
        strip.vegetated_share = tile_shares(vegetated, pixels_valid, size, px)
    return strip


def valid_shares(valid: np.ndarray) -> np.ndarray:
    """Each tile's share of valid pixels, ``valid.mean(axis=(1, 2))`` for (k, h, w): the same floats, counted.

    The mean adds the tile's 0s and 1s in float64, exactly, and divides once; so does this,
    from an integer count, without a float copy of the mask.
    """
    return np.count_nonzero(valid, axis=(1, 2)) / (valid.shape[1] * valid.shape[2])


def _check_block(info, block, shape: tuple[int, int, int]) -> None:
    """InputError when a source returned another shape than asked (an empty block): a failed read, not nodata."""
    if block.data.shape == shape and block.valid.shape == shape[1:]:
        return
    raise InputError(
        f"Reading {info.name} gave {block.data.size:,} values ({'x'.join(map(str, block.data.shape))}) where "
        f"{'x'.join(map(str, shape))} were asked: the read failed, so its pixels are not nodata but unknown. "
        "Run again; if it fails again, reopen the layer (in QGIS: remove and add it, or restart QGIS) or check "
        f"the file (gdalinfo -checksum {info.path or info.name})."
    )


def fill_invalid(tiles: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Copy tiles (k, C, H, W), replacing invalid pixels by the tile's mean of valid ones per band."""
    tiles = np.ascontiguousarray(tiles, dtype=np.float32)
    if valid.all():
        return tiles
    mask = valid[:, None, :, :]
    counts = np.maximum(valid.sum(axis=(1, 2)), 1)[:, None]
    means = np.where(mask, tiles, 0.0).sum(axis=(2, 3)) / counts  # (k, C)
    return np.where(mask, tiles, means[:, :, None, None]).astype(np.float32)
