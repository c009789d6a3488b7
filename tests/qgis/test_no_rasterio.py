"""Issue 13: the plugin zip classifies a GeoTIFF in a QGIS whose Python has no rasterio.

A fresh QGIS process gets a module finder that makes ``import rasterio`` fail as if it were
not installed, loads the plugin from the zip and runs ``rsghost:classify`` through Processing.
This process, which has rasterio, then checks the outputs against the class raster's contract.
"""

from __future__ import annotations

import numpy as np
import rasterio
from osgeo import ogr

from tests.qgis.rasters import two_halves, write_geotiff
from tests.qgis.subprocess_qgis import packaged_plugins, run_in_fresh_qgis

CLASSIFY = """
assert started, "the plugin did not start"
import processing
import rs_ghost_qgis
output = processing.run("rsghost:classify", PARAMETERS)
result = {"tiles": output["TILES_CLASSIFIED"], "plugin": rs_ghost_qgis.__file__}
qgis.utils.unloadPlugin("rs_ghost_qgis")
"""


def test_plugin_zip_classifies_a_geotiff_in_a_qgis_without_rasterio(tmp_path, tiny_model):
    plugins = packaged_plugins(tmp_path / "package")
    raster = write_geotiff(tmp_path / "halves.tif", two_halves())
    vector, classes = tmp_path / "tiles.gpkg", tmp_path / "classes.tif"
    parameters = {
        "INPUT": str(raster),
        "MODEL": str(tiny_model),
        "OUTPUT_VECTOR": str(vector),
        "OUTPUT_RASTER": str(classes),
    }
    result = run_in_fresh_qgis(plugins, {"rasterio"}, CLASSIFY, tmp_path, PARAMETERS=parameters)

    assert result["plugin"] == str(plugins / "rs_ghost_qgis" / "__init__.py")  # the zip's code, not the checkout
    assert result["loaded"] == []  # and nothing slipped past the finder
    assert result["tiles"] == 8
    tiles = ogr.Open(str(vector))  # kept: the layer lives only as long as its dataset
    assert tiles.GetLayer(0).GetFeatureCount() == 8
    assert sorted({feature.GetField("class_name") for feature in tiles.GetLayer(0)}) == ["Forest", "Water"]
    with rasterio.open(classes) as ds:
        assert ds.count == 2 and ds.dtypes == ("uint8", "uint8") and ds.nodatavals == (255, 255)
        assert ds.descriptions == ("class", "confidence_percent")
        assert ds.crs.to_epsg() == 32633 and (ds.transform.a, ds.transform.e) == (320.0, -320.0)
        assert ds.colormap(1)[0][3] == 255 and "pad" in ds.tags()["edge_policy"]
        assert ds.tags(1)["CLASS_0"] == "Water"
        values = ds.read(1)
    assert set(np.unique(values)) == {0, 1}
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary left
