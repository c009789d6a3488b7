"""The zip: layout, security scan, install into a fresh profile, headless qgis_process; make install."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

from tests.qgis.rasters import two_halves, write_geotiff

ROOT = Path(__file__).resolve().parents[2]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


package = _script("package")
install_plugin = _script("install_plugin")


@pytest.fixture(scope="module")
def plugin_zip(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    assert package.main(["--no-scan", "--out", str(out)]) == 0
    return next(out.glob("rs_ghost_qgis-*.zip"))


def _env(**extra) -> dict:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return dict(env, QT_QPA_PLATFORM="offscreen", **extra)


def test_zip_layout(plugin_zip):
    assert plugin_zip.name == f"rs_ghost_qgis-{package.version()}.zip"
    names = zipfile.ZipFile(plugin_zip).namelist()
    assert {name.split("/")[0] for name in names} == {"rs_ghost_qgis"}
    for needed in ("metadata.txt", "LICENSE", "resources/icon.svg", "resources/icon.png", "__init__.py", "plugin.py"):
        assert f"rs_ghost_qgis/{needed}" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or "/tests/" in n or "conftest" in n]
    metadata = zipfile.ZipFile(plugin_zip).read("rs_ghost_qgis/metadata.txt").decode()
    for key in ("name=", "qgisMinimumVersion=3.22", "hasProcessingProvider=yes", "category=Raster", "icon="):
        assert key in metadata
    assert "<" not in metadata  # no HTML


@pytest.mark.slow
def test_security_scan_is_clean(tmp_path):
    target = package.stage(tmp_path)
    assert package.scan(target) == []


def test_zip_installs_into_fresh_profile_and_runs(plugin_zip, tmp_path, tiny_model):
    plugins = tmp_path / "profiles" / "default" / "python" / "plugins"
    plugins.mkdir(parents=True)
    zipfile.ZipFile(plugin_zip).extractall(plugins)
    raster = write_geotiff(tmp_path / "halves.tif", two_halves())
    script = tmp_path / "start.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            from qgis.core import QgsApplication
            app = QgsApplication([], True)
            app.initQgis()
            from qgis.gui import QgsMapCanvas
            from qgis.PyQt.QtWidgets import QMainWindow
            import qgis.utils
            from processing.core.Processing import Processing
            Processing.initialize()

            class Iface:  # the part of QgisInterface the plugin touches
                def __init__(self):
                    self.window = QMainWindow()
                    self.menu = []
                def mainWindow(self):
                    return self.window
                def addToolBar(self, name):
                    return self.window.addToolBar(name)
                def addPluginToRasterMenu(self, menu, action):
                    self.menu.append(action)
                def removePluginRasterMenu(self, menu, action):
                    self.menu.remove(action)
                def activeLayer(self):
                    return None

            iface = Iface()
            qgis.utils.iface = iface
            sys.path.insert(0, {str(plugins)!r})  # as QGIS does for the profile's plugins folder
            qgis.utils.plugin_paths = [{str(plugins)!r}]
            qgis.utils.updateAvailablePlugins()
            assert qgis.utils.loadPlugin("rs_ghost_qgis"), "load failed"
            assert qgis.utils.startPlugin("rs_ghost_qgis"), "start failed"
            import rs_ghost_qgis
            print("FROM", rs_ghost_qgis.__file__)
            import processing
            result = processing.run("rsghost:classify", {{
                "INPUT": {str(raster)!r}, "MODEL": {str(tiny_model)!r},
                "OUTPUT_VECTOR": {str(tmp_path / "tiles.gpkg")!r}}})
            print("TILES", result["TILES_CLASSIFIED"])
            assert len(iface.menu) == 4  # classify, assess, dependencies, help
            assert qgis.utils.unloadPlugin("rs_ghost_qgis"), "unload failed"
            print("PROVIDER", QgsApplication.processingRegistry().providerById("rsghost"), len(iface.menu))
            app.exitQgis()
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"FROM {plugins}/rs_ghost_qgis/__init__.py" in done.stdout
    assert "TILES 8" in done.stdout and "PROVIDER None 0" in done.stdout


def _qgis_process_classify(plugin_zip, tmp_path, *parameters: str) -> subprocess.CompletedProcess:
    """``qgis_process.bin run rsghost:classify -- PARAMETERS`` with the zip in a fresh profile."""
    binary = shutil.which("qgis_process.bin")
    if binary is None:
        pytest.skip("qgis_process.bin is not installed")
    plugins = tmp_path / "plugins"
    zipfile.ZipFile(plugin_zip).extractall(plugins)
    ini = tmp_path / "config" / "profiles" / "default" / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True)
    ini.write_text("[PythonPlugins]\nrs_ghost_qgis=true\n")
    env = _env(
        QGIS_CUSTOM_CONFIG_PATH=str(tmp_path / "config"),
        QGIS_PLUGINPATH=str(plugins),
        PYTHONPATH=sysconfig.get_paths()["purelib"],  # the venv's onnxruntime and shapely
    )
    command = [binary, "run", "rsghost:classify", "--", *parameters]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_qgis_process_bin_runs_classify(plugin_zip, tmp_path, tiny_model):
    raster = write_geotiff(tmp_path / "halves.tif", two_halves())
    done = _qgis_process_classify(
        plugin_zip,
        tmp_path,
        f"INPUT={raster}",
        f"MODEL={tiny_model}",
        f"OUTPUT_VECTOR={tmp_path / 'tiles.gpkg'}",
        f"OUTPUT_RASTER={tmp_path / 'classes.tif'}",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "TILES_CLASSIFIED:\t8" in done.stdout
    assert (tmp_path / "tiles.gpkg").is_file() and (tmp_path / "classes.tif").is_file()


# A parameter that is wrong before the run starts, and the error's words.
ONCE = {
    "missing_model": (("MODEL", "nothing.onnx"), "does not exist"),
    "one_band": ((), "usable band(s) but the model needs 3"),
    "stride": (("STRIDE", "5"), "STRIDE 5 is not possible"),
    "outside": (("EXTENT", "0,10,0,10 [EPSG:32633]"), "does not overlap"),
}


@pytest.mark.parametrize("case", list(ONCE))
def test_qgis_process_bin_prints_an_input_error_once(plugin_zip, tmp_path, tiny_model, case):
    raster = write_geotiff(tmp_path / "halves.tif", two_halves()[:1] if case == "one_band" else two_halves())
    wrong, message = ONCE[case]
    parameters = {"INPUT": raster, "MODEL": tiny_model, "OUTPUT_VECTOR": tmp_path / "tiles.gpkg"}
    parameters.update([wrong] if wrong else [])
    done = _qgis_process_classify(plugin_zip, tmp_path, *(f"{key}={value}" for key, value in parameters.items()))
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert output.count(message) == 1, output
    assert "Traceback" not in output and not (tmp_path / "tiles.gpkg").exists()


def test_install_links_a_zip_shaped_folder(plugin_zip, tmp_path):
    target = install_plugin.install(tmp_path / "plugins")
    zipped = {name.split("/")[1] for name in zipfile.ZipFile(plugin_zip).namelist() if name.count("/") >= 1}
    installed = {p.name for p in target.iterdir() if p.name != install_plugin.MARKER}
    assert zipped <= installed
    assert (target / "metadata.txt").resolve() == ROOT / "metadata.txt"
    assert (target / "resources" / "icon.svg").is_file()
    again = install_plugin.install(tmp_path / "plugins")  # idempotent
    assert again == target
    ini = install_plugin.enable(tmp_path / "profile")
    assert "rs_ghost_qgis=true" in ini.read_text()


@pytest.mark.slow
def test_real_qgis_desktop_starts_the_plugin(plugin_zip, tmp_path, tiny_model):
    """QGIS itself (GEOS/GDAL loaded globally) loads the zip, runs Processing and opens the dialog."""
    qgis_bin, xvfb = shutil.which("qgis.bin") or shutil.which("qgis"), shutil.which("xvfb-run")
    if qgis_bin is None or xvfb is None:
        pytest.skip("QGIS desktop or xvfb-run is not installed")
    plugins = tmp_path / "plugins"
    zipfile.ZipFile(plugin_zip).extractall(plugins)
    ini = tmp_path / "profiles" / "default" / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True)
    ini.write_text("[PythonPlugins]\nrs_ghost_qgis=true\n")
    raster = write_geotiff(tmp_path / "halves.tif", two_halves())
    report = tmp_path / "report.txt"
    script = tmp_path / "check.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import traceback
            from qgis.core import QgsApplication
            from qgis.PyQt.QtCore import QTimer
            from qgis.utils import plugins

            def check():
                with open({str(report)!r}, "w") as out:
                    try:
                        import processing
                        out.write(f"loaded {{'rs_ghost_qgis' in plugins}}\\n")
                        result = processing.run("rsghost:classify", {{"INPUT": {str(raster)!r},
                            "MODEL": {str(tiny_model)!r}, "OUTPUT_VECTOR": {str(tmp_path / "t.gpkg")!r}}})
                        out.write(f"tiles {{result['TILES_CLASSIFIED']}}\\n")
                        plugins["rs_ghost_qgis"].show_dialog()
                        out.write(f"dialog {{plugins['rs_ghost_qgis'].dialog is not None}}\\n")
                    except Exception:
                        out.write(traceback.format_exc())
                QTimer.singleShot(200, lambda: QgsApplication.exit(0))

            QTimer.singleShot(3000, check)
            """
        )
    )
    command = [xvfb, "-a", qgis_bin, "--noversioncheck", "--nologo", "--profiles-path", str(tmp_path)]
    command += ["--code", str(script)]
    env = _env(QGIS_PLUGINPATH=str(plugins), PYTHONPATH=sysconfig.get_paths()["purelib"])
    env.pop("QT_QPA_PLATFORM")  # a real (virtual) display
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    text = report.read_text() if report.exists() else done.stdout + done.stderr
    assert text.splitlines() == ["loaded True", "tiles 8", "dialog True"], text
    assert "Traceback" not in done.stdout + done.stderr
