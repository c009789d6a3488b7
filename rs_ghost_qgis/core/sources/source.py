"""The one small interface through which the pipeline reads rasters.

Outside QGIS a rasterio reader implements it; inside QGIS a reader over the layer's data
provider does (files, VRTs, WMS and XYZ alike). The pipeline never knows which.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..errors import InputError

Bounds = tuple[float, float, float, float]
# The band description a source gives a band whose values index a colour table (a palette
# raster): the band mapping refuses it with the way to expand it (radiometry).
PALETTE = "palette"
"""(xmin, ymin, xmax, ymax) in some CRS's units."""


@dataclass(frozen=True)
class RasterInfo:
    """What the pipeline needs to know about a raster before reading it."""

    name: str  # shown to the user and used in layer names
    width: int
    height: int
    band_count: int
    dtype: str  # numpy dtype name of the pixel values, e.g. "uint8", "uint16", "float32"
    crs_wkt: str  # "" when the raster has no CRS
    bounds: Bounds  # in the raster's CRS
    pixel_size: tuple[float, float]  # (x, y) in CRS units, both positive
    nodata: tuple[float | None, ...]  # per band
    band_descriptions: tuple[str, ...]  # per band, "" when unknown
    path: str = ""  # the file the pixels come from, "" when not a local file (WMS, XYZ, memory)
    # GDAL metadata items of the dataset ("KEY") and its bands ("band N:KEY"), default domain:
    # where BOA_ADD_OFFSET / RADIO_ADD_OFFSET say whether values carry the Sentinel-2 offset.
    metadata: Mapping[str, str] = field(default_factory=dict)
    # A web service (XYZ, WMS, WMTS): pixels are downloaded, so the area is limited
    # (core.classify.workload) and a run that gets no pixel says the tiles could not be fetched.
    web: bool = False
    # GDAL's per-band scale and offset (physical value = raw * scale + offset), one per band; ()
    # when the source has none. Both sources deliver physical values, as float (``dtype``), since
    # QGIS's provider applies them itself; these say that it was done, for the scaling note.
    scales: tuple[float, ...] = ()
    offsets: tuple[float, ...] = ()

    def band_scaling(self, band: int) -> tuple[float, float]:
        """(scale, offset) of ``band`` (1-based): (1.0, 0.0) when none is declared."""
        scale = self.scales[band - 1] if band <= len(self.scales) else 1.0
        offset = self.offsets[band - 1] if band <= len(self.offsets) else 0.0
        return scale, offset


def is_scaled(scales: Sequence[float], offsets: Sequence[float]) -> bool:
    """Whether any band declares a scale other than 1 or an offset other than 0."""
    return any(s != 1.0 for s in scales) or any(o != 0.0 for o in offsets)


def physical_dtype(dtype: str) -> str:
    """The numpy dtype of physical values computed from raw ``dtype`` values: float64 stays float64,
    everything else becomes float32, as QGIS's GDAL provider does for a band with a scale or offset."""
    return "float64" if dtype == "float64" else "float32"


@dataclass(frozen=True)
class Block:
    """Pixels read for one rectangle: values per band and where they are valid."""

    data: np.ndarray  # (bands, height, width), the raster's dtype or float32
    valid: np.ndarray  # (height, width) bool: False for nodata, alpha/mask 0, non-finite, or outside the raster


class RasterSource(Protocol):
    """A raster that can be read as blocks of any rectangle, in any CRS, at any pixel size."""

    @property
    def info(self) -> RasterInfo:
        """Facts about the raster."""
        ...

    def read(self, bounds: Bounds, crs_wkt: str, width: int, height: int, bands: Sequence[int]) -> Block:
        """Read ``bands`` (1-based) over ``bounds`` given in ``crs_wkt``, resampled to width x height.

        The source reprojects when ``crs_wkt`` differs from the raster's CRS, and marks every
        pixel outside the raster or without data as invalid, including pixels where any band
        is NaN or infinite (see ``finite_pixels``).
        """
        ...


def finite_pixels(data: np.ndarray) -> np.ndarray:
    """(height, width) bool for ``data`` (bands, height, width): where every band is a finite number.

    The one rule for non-finite values: NaN or inf in any band makes a pixel nodata, whether or
    not the raster declares a nodata value (float rasters often mark gaps with NaN only), so
    it never reaches the statistics or the model.
    """
    if not np.issubdtype(data.dtype, np.floating) or data.shape[0] == 0:
        return np.ones(data.shape[1:], dtype=bool)
    return np.isfinite(data).all(axis=0)


def unreadable_block(info: RasterInfo, bounds: Bounds, crs_wkt: str, reason: str) -> InputError:
    """The one error for pixels the reader could not read: which file, which window, and why.

    Both sources raise it (a truncated GeoTIFF, a VRT whose source file is gone), so the run
    stops with no output instead of reading the block as zeros or nodata.
    """
    from ..crs import describe, same_crs  # osr only when it is needed

    if crs_wkt and not same_crs(crs_wkt, info.crs_wkt):
        where = f"x {bounds[0]:.6g}..{bounds[2]:.6g}, y {bounds[1]:.6g}..{bounds[3]:.6g} in {describe(crs_wkt)}"
    else:  # the raster's own pixels: what gdal_translate -srcwin would take
        (xmin, _, _, ymax), (px, py) = info.bounds, info.pixel_size
        col0, col1 = (max(0, min(info.width, math.floor((x - xmin) / px))) for x in (bounds[0], bounds[2]))
        row0, row1 = (max(0, min(info.height, math.floor((ymax - y) / py))) for y in (bounds[3], bounds[1]))
        where = f"pixel columns {col0}..{col1}, rows {row0}..{row1}"
    reason = " ".join(reason.split()).rstrip(".") or "no reason given"
    return InputError(
        f"Cannot read the block of {info.path or info.name} at {where}: {reason}. The file is damaged or "
        "incomplete (an interrupted download or copy), or a file it refers to is missing; repair or re-create it."
    )


def complex_pixels(where: str, type_name: str) -> InputError:
    """The one error for a raster of complex values (SAR, interferograms), e.g. GDAL's CInt16 or CFloat32.

    Dropping the imaginary part, as a cast does, would classify meaningless values without a word.
    """
    return InputError(
        f"{where} holds complex pixel values ({type_name}), as radar (SAR) products do; the model classifies "
        "real-valued optical imagery (reflectance or 8-bit colour). Convert the raster to real bands first "
        "(e.g. their amplitude), or choose an optical raster."
    )


def check_one_type(where: str, type_names: Sequence[str | None]) -> None:
    """InputError for bands of different data types (a VRT of Byte, UInt16 and Float32 files), GDAL names per band.

    None stands for a band that is not checked: an alpha band only says where pixels are valid.

    Each band's values mean something else (8-bit colour, reflectance x 10,000, reflectance 0..1),
    so no one scaling brings them to the model's range; read as one type they would be scaled as
    the widest and give confident garbage. Both sources refuse them alike.
    """
    if len({name for name in type_names if name is not None}) <= 1:
        return
    listed = ", ".join(f"band {band} {name}" for band, name in enumerate(type_names, start=1) if name is not None)
    raise InputError(
        f"{where} mixes band data types ({listed}), so one scaling cannot bring its values to the model's range. "
        "Make its bands one type first (e.g. `gdal_translate -ot UInt16 IN OUT`, or a VRT of files of one type)."
    )


def check_scales(where: str, scales: Sequence[float]) -> None:
    """InputError for a band whose declared scale is 0 (or not a number): every physical value would be its offset.

    GDAL's ``raw * scale + offset`` with scale 0 makes a flat band, which the content check would
    call an empty export; the fault is the metadata, and so is the fix.
    """
    wrong = [band for band, scale in enumerate(scales, start=1) if scale == 0 or not math.isfinite(scale)]
    if wrong:
        bands = ("band " if len(wrong) == 1 else "bands ") + ", ".join(map(str, wrong))
        raise InputError(
            f"{where} declares a scale of {scales[wrong[0] - 1]:g} for {bands} in its metadata, so every value of "
            "the band would read as its offset. Fix or remove the scale (e.g. `gdal_edit.py -scale 1 FILE`, or "
            "`gdal_translate -unscale` for a copy with physical values)."
        )
