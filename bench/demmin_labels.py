"""Labelled polygons drawn on the Demmin Sentinel-2 scene, for the adaptation's measurement and bench row.

Coordinates in EPSG:32633 (UTM 33N), chosen by looking at the scene (docs/adapt_demmin.png):
two parts of the large wheat field left of the north-south track at x 381,700; three bare
fields (the triangle in the north-west, the strip along the northern edge, the corner in the
south-west); two parts of the lighter crop field north of the wheat. The second wheat field,
east of the track (SECOND_WHEAT_BOX), is touched by no polygon: the adapted model is scored
on the tiles wholly inside it.
"""

from __future__ import annotations

from pathlib import Path

import shapely
from osgeo import ogr, osr

CRS_EPSG = 32633
CLASS_FIELD = "landcover"
POLYGONS: list[tuple[str, list[tuple[float, float]]]] = [
    ("wheat", [(380500, 5972350), (381500, 5972350), (381500, 5972850), (380500, 5972850)]),
    ("wheat", [(380700, 5971950), (381500, 5971950), (381500, 5972250), (380700, 5972250)]),
    ("bare", [(380120, 5973700), (380640, 5973700), (380420, 5972900), (380120, 5973150)]),
    ("bare", [(381850, 5973980), (382600, 5973980), (382600, 5973800), (381850, 5973800)]),
    ("bare", [(380120, 5971900), (380650, 5971900), (380650, 5971620), (380120, 5971620)]),
    ("other crop", [(380750, 5973150), (381200, 5973150), (381200, 5973600), (380750, 5973600)]),
    ("other crop", [(381250, 5973100), (381650, 5973100), (381650, 5973600), (381250, 5973600)]),
]
# The second wheat field: east of the track at x 381,700, inside the lead's wheat box.
SECOND_WHEAT_BOX = (381_750.0, 5_971_700.0, 383_600.0, 5_973_300.0)


def write_demmin_labels(path: str | Path) -> Path:
    """Write POLYGONS as a GeoPackage layer 'labels' with a text field 'landcover' (EPSG:32633)."""
    path = Path(path)
    if path.exists():
        path.unlink()
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(CRS_EPSG)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    dataset = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = dataset.CreateLayer("labels", srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn(CLASS_FIELD, ogr.OFTString))
    for name, ring in POLYGONS:
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField(CLASS_FIELD, name)
        feature.SetGeometry(ogr.CreateGeometryFromWkb(shapely.to_wkb(shapely.Polygon(ring))))
        layer.CreateFeature(feature)
    dataset = None
    return path
