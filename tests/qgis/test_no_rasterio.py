"""Issue 13: the plugin zip classifies a GeoTIFF in a QGIS whose Python has no rasterio.

A fresh QGIS process gets a module finder that makes ``import rasterio`` fail as if it were
not installed, loads the plugin from the zip and runs ``rsghost:classify`` through Processing.
This process, which has rasterio, then checks the outputs against the class raster's contract.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from osgeo import ogr

from tests.qgis.rasters import two_halves, write_geotiff

ROOT = Path(__file__).resolve().parents[2]

# Runs first in the QGIS process: every import of rasterio is refused and recorded.
NO_RASTERIO = """
import sys

class NoRasterio:
    asked = []

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "rasterio":
            NoRasterio.asked.append(name)
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoRasterio())
"""

START_AND_CLASSIFY = """
import json
from qgis.core import QgsApplication
app = QgsApplication([], False)
app.initQgis()
import qgis.utils
from qgis.PyQt.QtWidgets import QMainWindow
from processing.core.Processing import Processing
Processing.initialize()

class Iface:  # the part of QgisInterface the plugin touches
    def __init__(self):
        self.window = QMainWindow()
    def mainWindow(self):
        return self.window
    def addToolBar(self, name):
        return self.window.addToolBar(name)
    def addPluginToRasterMenu(self, menu, action):
        pass
    def removePluginRasterMenu(self, menu, action):
        pass
    def activeLayer(self):
        return None

qgis.utils.iface = Iface()
sys.path.insert(0, PLUGINS)  # as QGIS does for the profile's plugins folder
qgis.utils.plugin_paths = [PLUGINS]
qgis.utils.updateAvailablePlugins()
assert qgis.utils.loadPlugin("rs_ghost_qgis") and qgis.utils.startPlugin("rs_ghost_qgis"), "the plugin did not start"
import processing
import rs_ghost_qgis
result = processing.run("rsghost:classify", PARAMETERS)
print("RESULT", json.dumps({
    "tiles": result["TILES_CLASSIFIED"],
    "plugin": rs_ghost_qgis.__file__,
    "asked": NoRasterio.asked,
    "loaded": sorted(m for m in sys.modules if m.split(".")[0] == "rasterio"),
}))
qgis.utils.unloadPlugin("rs_ghost_qgis")
app.exitQgis()
"""


def _package_script():
    spec = importlib.util.spec_from_file_location("package", ROOT / "scripts" / "package.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def plugin_zip(tmp_path_factory) -> Path:
    """The zip `make package` builds, staged in a folder of this test's own."""
    package = _package_script()
    work = tmp_path_factory.mktemp("package")
    return package.build_zip(package.stage(work / "stage"), work / f"rs_ghost_qgis-{package.version()}.zip")


def _run_in_qgis_without_rasterio(plugins: Path, parameters: dict, cwd: Path) -> dict:
    script = cwd / "no_rasterio.py"
    setup = f"PLUGINS = {str(plugins)!r}\nPARAMETERS = {parameters!r}\n"
    script.write_text(textwrap.dedent(NO_RASTERIO) + setup + textwrap.dedent(START_AND_CLASSIFY))
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    # The venv's onnxruntime and shapely (rasterio comes from Debian's dist-packages: the finder hides it).
    env.update(QT_QPA_PLATFORM="offscreen", PYTHONPATH=sysconfig.get_paths()["purelib"])
    done = subprocess.run([sys.executable, str(script)], cwd=cwd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def test_plugin_zip_classifies_a_geotiff_in_a_qgis_without_rasterio(plugin_zip, tmp_path, tiny_model):
    plugins = tmp_path / "plugins"
    zipfile.ZipFile(plugin_zip).extractall(plugins)
    raster = write_geotiff(tmp_path / "halves.tif", two_halves())
    vector, classes = tmp_path / "tiles.gpkg", tmp_path / "classes.tif"
    parameters = {
        "INPUT": str(raster),
        "MODEL": str(tiny_model),
        "OUTPUT_VECTOR": str(vector),
        "OUTPUT_RASTER": str(classes),
    }
    result = _run_in_qgis_without_rasterio(plugins, parameters, tmp_path)

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
