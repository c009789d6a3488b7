"""The one small interface through which the pipeline reads rasters.

Outside QGIS a rasterio reader implements it; inside QGIS a reader over the layer's data
provider does (files, VRTs, WMS and XYZ alike). The pipeline never knows which.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

Bounds = tuple[float, float, float, float]
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


@dataclass(frozen=True)
class Block:
    """Pixels read for one rectangle: values per band and where they are valid."""

    data: np.ndarray  # (bands, height, width), the raster's dtype or float32
    valid: np.ndarray  # (height, width) bool: False for nodata, alpha/mask 0, or outside the raster


class RasterSource(Protocol):
    """A raster that can be read as blocks of any rectangle, in any CRS, at any pixel size."""

    @property
    def info(self) -> RasterInfo:
        """Facts about the raster."""
        ...

    def read(self, bounds: Bounds, crs_wkt: str, width: int, height: int, bands: Sequence[int]) -> Block:
        """Read ``bands`` (1-based) over ``bounds`` given in ``crs_wkt``, resampled to width x height.

        The source reprojects when ``crs_wkt`` differs from the raster's CRS, and marks every
        pixel outside the raster or without data as invalid.
        """
        ...
