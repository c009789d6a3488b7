"""Small rasters and tile folders written with GDAL / Pillow for the QGIS tests."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from osgeo import gdal, osr

gdal.UseExceptions()

# Tiny model colours (uint8, scaling "none"): class follows the mean colour.
WATER = (20, 40, 200)
FOREST = (30, 180, 40)
CROP = (220, 120, 30)


def write_geotiff(
    path: Path,
    data: np.ndarray,
    epsg: int | None = 32633,
    origin: tuple[float, float] = (500000.0, 5900000.0),
    pixel: float = 10.0,
    nodata: float | None = None,
    descriptions: list[str] | None = None,
    alpha: np.ndarray | None = None,
) -> Path:
    """Write (bands, h, w) ``data`` as a north-up GeoTIFF; an alpha band is appended when given."""
    bands, height, width = data.shape
    types = {np.uint8: gdal.GDT_Byte, np.uint16: gdal.GDT_UInt16, np.float32: gdal.GDT_Float32}
    count = bands + (1 if alpha is not None else 0)
    ds = gdal.GetDriverByName("GTiff").Create(str(path), width, height, count, types[data.dtype.type])
    ds.SetGeoTransform((origin[0], pixel, 0.0, origin[1], 0.0, -pixel))
    if epsg is not None:
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(epsg)
        ds.SetProjection(srs.ExportToWkt())
    for i in range(bands):
        band = ds.GetRasterBand(i + 1)
        band.WriteArray(data[i])
        if nodata is not None:
            band.SetNoDataValue(nodata)
        if descriptions:
            band.SetDescription(descriptions[i])
    if alpha is not None:
        band = ds.GetRasterBand(count)
        band.WriteArray(alpha.astype(data.dtype))
        band.SetColorInterpretation(gdal.GCI_AlphaBand)
    ds.FlushCache()
    ds = None
    return path


def two_halves(height: int = 64, width: int = 128, left=FOREST, right=WATER) -> np.ndarray:
    """A 3-band uint8 image: ``left`` colour on the left half, ``right`` on the right half."""
    data = np.zeros((3, height, width), dtype=np.uint8)
    for band in range(3):
        data[band, :, : width // 2] = left[band]
        data[band, :, width // 2 :] = right[band]
    return data


def lonlat_to_tile(lon: float, lat: float, zoom: int) -> tuple[int, int]:
    """Web Mercator tile column and row holding a point."""
    n = 2**zoom
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return x, y


def write_xyz_tiles(folder: Path, zoom: int, x0: int, y0: int, colours: list[list[tuple]]) -> Path:
    """A local XYZ tile pyramid (one zoom): colours[row][col] fills tile (x0 + col, y0 + row)."""
    from PIL import Image

    for row, line in enumerate(colours):
        for col, colour in enumerate(line):
            tile = folder / str(zoom) / str(x0 + col) / f"{y0 + row}.png"
            tile.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (256, 256), colour).save(tile)
    return folder


def tile_bounds_3857(zoom: int, x: int, y: int) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) of an XYZ tile in EPSG:3857."""
    half = 20037508.342789244
    size = 2 * half / 2**zoom
    return (-half + x * size, half - (y + 1) * size, -half + (x + 1) * size, half - y * size)
