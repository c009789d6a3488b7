"""core.sources.vector: the one OGR polygon reader behind --mask and training's labelled polygons."""

from __future__ import annotations

import shapely
from osgeo import ogr, osr

from rs_ghost_qgis.core.crs import same_crs, to_wkt
from rs_ghost_qgis.core.sources.vector import read_features


def _write(path, rows, epsg=None):
    driver = "ESRI Shapefile" if path.suffix == ".shp" else "GPKG"  # a GeoPackage always has some CRS
    ds = ogr.GetDriverByName(driver).CreateDataSource(str(path))
    srs = None
    if epsg is not None:
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(epsg)
    layer = ds.CreateLayer("polygons", srs=srs, geom_type=ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("landuse", ogr.OFTString))
    for wkt, value in rows:
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField("landuse", value)
        if wkt is not None:
            feature.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
        layer.CreateFeature(feature)
    ds = None
    return path


def test_features_keep_gis_axis_order_fields_and_count_the_skipped(tmp_path):
    # EPSG:4326 declares latitude first; the package uses x = longitude everywhere.
    path = _write(tmp_path / "p.gpkg", [("POLYGON ((13 53, 14 53, 14 54, 13 53))", "crop"), (None, "forest")], 4326)
    layer = read_features(path, ["landuse", "missing"])
    assert layer.fields == ["landuse"]
    assert layer.values == [{"landuse": "crop"}]
    assert layer.skipped == 1
    assert shapely.bounds(layer.geometries[0]).tolist() == [13, 53, 14, 54]
    assert same_crs(layer.crs_wkt, to_wkt("EPSG:4326"))


def test_a_layer_without_crs_and_an_unreadable_file(tmp_path):
    layer = read_features(_write(tmp_path / "p.shp", [("POLYGON ((0 0, 1 0, 1 1, 0 0))", None)]))
    assert layer.crs_wkt is None and len(layer.geometries) == 1
    (tmp_path / "junk.gpkg").write_text("not a vector file")
    assert read_features(tmp_path / "junk.gpkg") is None
