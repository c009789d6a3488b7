"""Small synthetic rasters for the engine tests, written with rasterio.

The tiny model's class follows the mean colour of a tile: blue -> Water (0), green ->
Forest (1), red -> Crop (2). ``class_pattern`` paints whole tiles with those colours so a
test knows what every tile must be classified as.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from osgeo import ogr, osr
from rasterio.transform import from_origin

ORIGIN = (500_000.0, 6_000_000.0)  # UTM 33N, near Demmin
COLOURS = {0: (40, 60, 200), 1: (40, 190, 60), 2: (210, 70, 50)}  # RGB (uint8) per tiny-model class


def write_raster(
    path: Path,
    data: np.ndarray,
    crs: str | None = "EPSG:32633",
    res: float | tuple[float, float] = 10.0,
    origin: tuple[float, float] = ORIGIN,
    nodata: float | None = None,
    descriptions: list[str] | None = None,
    mask: np.ndarray | None = None,
    **profile,
) -> Path:
    """Write ``data`` (bands, rows, cols) as a GeoTIFF; ``mask`` (rows, cols) bool becomes an internal mask."""
    rx, ry = (res, res) if np.isscalar(res) else res
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=data.dtype,
        crs=crs,
        transform=from_origin(origin[0], origin[1], rx, ry),
        nodata=nodata,
        **profile,
    ) as ds:
        ds.write(data)
        for index, text in enumerate(descriptions or [], start=1):
            ds.set_band_description(index, text)
        if mask is not None:
            ds.write_mask(mask.astype(np.uint8) * 255)
    return path


def class_pattern(classes: np.ndarray, tile_px: int, dtype=np.uint8, scale: float = 1.0) -> np.ndarray:
    """An RGB image (3, rows * tile_px, cols * tile_px): each tile painted its class colour, with texture."""
    rows, cols = classes.shape
    image = np.zeros((3, rows * tile_px, cols * tile_px), dtype=np.float64)
    for (r, c), cls in np.ndenumerate(classes):
        for band, value in enumerate(COLOURS[int(cls)]):
            image[band, r * tile_px : (r + 1) * tile_px, c * tile_px : (c + 1) * tile_px] = value
    rng = np.random.default_rng(0)
    image += rng.integers(-8, 9, size=image.shape)  # texture, mean-neutral
    return np.clip(image * scale, 1, None).astype(dtype)


def write_mask(path: Path, wkt: str, epsg: int = 32633) -> Path:
    """A GeoPackage mask of one polygon given as WKT in ``epsg`` (x, y order: longitude first in degrees)."""
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = ds.CreateLayer("mask", srs, ogr.wkbPolygon)
    feature = ogr.Feature(layer.GetLayerDefn())
    feature.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
    layer.CreateFeature(feature)
    ds = None  # closes and flushes the GeoPackage
    return path


def write_hyperspectral(path: Path) -> tuple[Path, list[int]]:
    """A 200-band raster whose only clue to band order is each band's wavelength tag (400-2500 nm).

    Returns the path and the bands nearest to Sentinel-2's red, green and blue (665, 560, 492 nm).
    """
    wavelengths = np.linspace(400, 2500, 200)
    data = np.random.default_rng(0).uniform(0.02, 0.4, (200, 32, 32)).astype(np.float32)
    write_raster(path, data)
    with rasterio.open(path, "r+") as ds:
        for band, nm in enumerate(wavelengths, start=1):
            ds.update_tags(band, wavelength=f"{nm:.1f}", wavelength_units="Nanometers")
    return path, [int(np.argmin(abs(wavelengths - nm))) + 1 for nm in (665, 560, 492)]
