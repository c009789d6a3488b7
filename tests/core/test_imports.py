import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ENGINE = ["crs", "classify.grid", "radiometry.scaling", "sources.rasterio_source", "model.runtime", "classify.sinks"]
ENGINE += ["classify.pipeline", "download"]
ENGINE += ["many.job", "many.worker", "many.merge"]  # classify-many's
CLI = ["rs_ghost_qgis.cli.main", "rs_ghost_qgis.cli.many", "rs_ghost_qgis.cli.common", "rs_ghost_qgis.cli.preview"]


def test_package_engine_and_cli_import_neither_torch_nor_qgis():
    modules = ["rs_ghost_qgis", "rs_ghost_qgis.core", "rs_ghost_qgis.__main__"]
    modules += [f"rs_ghost_qgis.core.{name}" for name in ENGINE] + CLI
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'qgis', 'PyQt5'))\n"
        "print(bad)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_engine_leaves_osgeo_exception_mode_alone():
    """QGIS plugins share osgeo's process-wide exception switch: the engine must not flip it."""
    code = (
        "from osgeo import gdal, ogr, osr\n"
        "before = (gdal.GetUseExceptions(), ogr.GetUseExceptions(), osr.GetUseExceptions())\n"
        "import rs_ghost_qgis.cli.main, rs_ghost_qgis.core.classify.pipeline, rs_ghost_qgis.cli.preview\n"
        "from rs_ghost_qgis.cli.common import read_mask, parse_bbox\n"
        "parse_bbox('1,2,3,4,EPSG:4326')\n"
        "print(before == (gdal.GetUseExceptions(), ogr.GetUseExceptions(), osr.GetUseExceptions()))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "True"


def test_engine_that_qgis_uses_imports_without_rasterio():
    """Inside QGIS there is no rasterio (issue 13): only the command line's reader may need it."""
    code = (
        "import sys\n"
        "class NoRasterio:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'rasterio':\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, NoRasterio())\n"
        "import rs_ghost_qgis.core.classify.pipeline, rs_ghost_qgis.core.classify.sinks, rs_ghost_qgis.deps\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'rasterio'))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
