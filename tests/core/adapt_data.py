"""A synthetic scene whose two classes differ only in near infrared, and labelled polygons for it.

The oracle of the adaptation tests: 4 x 4 blocks of 128 px (10 m pixels, 1,280 m), each
block 'meadow' or 'plastic' by BLOCKS. Red, green and blue are drawn from one distribution
everywhere (a constant colour with pixel noise); band 4 (B08,
near infrared) is about 3,500 for meadow and 1,500 for plastic. So no model that sees only
RGB can tell the classes apart, and one that sees band 4 can. The top two block rows are
labelled, the bottom two are held out. (A brightness per block would not do: with four blocks
per class it can separate the labelled blocks by chance, and then fail on the held-out ones.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import shapely
from osgeo import ogr, osr

from tests.core.engine_data import ORIGIN, write_raster

BLOCK_PX = 128
BLOCKS = np.array([[0, 1, 0, 1], [1, 0, 1, 0], [0, 0, 1, 1], [1, 1, 0, 0]])  # 0 meadow, 1 plastic
NAMES = ("meadow", "plastic")
NIR = (3500.0, 1500.0)
LABELLED_ROWS = 2  # block rows with polygons; the rest is held out


def nir_scene(path: Path, with_nir: bool = True) -> Path:
    """The scene as uint16 reflectance x 10,000, bands B02, B03, B04 (+ B08), EPSG:32633."""
    rng = np.random.default_rng(7)
    size = BLOCK_PX * BLOCKS.shape[0]
    data = np.zeros((4, size, size))
    for (r, c), cls in np.ndenumerate(BLOCKS):
        window = np.s_[r * BLOCK_PX : (r + 1) * BLOCK_PX, c * BLOCK_PX : (c + 1) * BLOCK_PX]
        for band, base in enumerate((600.0, 800.0, 700.0)):
            data[band][window] = base
        data[3][window] = NIR[cls]
    data[:3] += rng.normal(0, 80, size=data[:3].shape)
    data[3] += rng.normal(0, 200, size=data[3].shape)
    bands = 4 if with_nir else 3
    data = np.clip(data[:bands], 1, 10_000).astype(np.uint16)
    return write_raster(path, data, descriptions=["B02", "B03", "B04", "B08"][:bands])


def block_box(row: int, col: int, inset_m: float = 0.0):
    """The ground square of block (row, col), shrunk by ``inset_m`` on each side (EPSG:32633)."""
    side = BLOCK_PX * 10.0
    x0, y0 = ORIGIN[0] + col * side, ORIGIN[1] - row * side
    return shapely.box(x0 + inset_m, y0 - side + inset_m, x0 + side - inset_m, y0 - inset_m)


def labelled_polygons(inset_m: float = 150.0) -> list[tuple[str, object]]:
    """(class, polygon) for every block of the labelled rows."""
    return [
        (NAMES[int(BLOCKS[r, c])], block_box(r, c, inset_m))
        for r in range(LABELLED_ROWS)
        for c in range(BLOCKS.shape[1])
    ]


def write_labels(path: Path, features: list[tuple[object, object]], epsg: int | None = 32633, field: str = "landcover"):
    """A GeoPackage layer of (class value, shapely geometry) features, in ``epsg`` (None: no CRS)."""
    driver = ogr.GetDriverByName("GPKG")
    dataset = driver.CreateDataSource(str(path))
    srs = None
    if epsg is not None:
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(epsg)
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    layer = dataset.CreateLayer("labels", srs, ogr.wkbUnknown)
    layer.CreateField(ogr.FieldDefn(field, ogr.OFTString))
    for value, geometry in features:
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField(field, value)
        feature.SetGeometry(ogr.CreateGeometryFromWkb(shapely.to_wkb(geometry)))
        layer.CreateFeature(feature)
    dataset = None
    return path


def held_out_truth(row: int, col: int, tile_px: int = 32) -> int | None:
    """The class of tile (row, col) of a whole-raster grid when it lies in a held-out block, else None."""
    per_block = BLOCK_PX // tile_px
    block_row, block_col = row // per_block, col // per_block
    if block_row < LABELLED_ROWS or block_row >= BLOCKS.shape[0] or block_col >= BLOCKS.shape[1]:
        return None
    return int(BLOCKS[block_row, block_col])
