"""Issue 29: QGIS starts the plugin cleanly in a Python without shapely and onnxruntime.

A fresh QGIS process gets a module finder that makes ``import shapely`` and ``import
onnxruntime`` fail as if they were not installed, then loads and starts the plugin as QGIS
does at start-up. No traceback may appear (on stderr or in the log), the Processing provider
must list every algorithm, and the log must say what to install.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

BLOCKER = """
import sys

class Missing:
    names = {"shapely", "onnxruntime"}
    asked = []

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in Missing.names:
            Missing.asked.append(name)
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Missing())
"""

START = """
import json
from qgis.core import QgsApplication, QgsMessageLog
app = QgsApplication([], False)
app.initQgis()
logged = []
QgsApplication.messageLog().messageReceived.connect(lambda text, tag, level: logged.append([tag, text]))
import qgis.utils
from qgis.PyQt.QtWidgets import QMainWindow
from processing.core.Processing import Processing
Processing.initialize()

class Iface:  # the part of QgisInterface the plugin touches at start
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
    def addPluginToMenu(self, menu, action):
        pass
    def removePluginMenu(self, menu, action):
        pass
    def activeLayer(self):
        return None

qgis.utils.iface = Iface()
sys.path.insert(0, PLUGINS)  # as QGIS does for the profile's plugins folder
qgis.utils.plugin_paths = [PLUGINS]
qgis.utils.updateAvailablePlugins()
started = qgis.utils.loadPlugin("rs_ghost_qgis") and qgis.utils.startPlugin("rs_ghost_qgis")
app.processEvents()
provider = QgsApplication.processingRegistry().providerById("rsghost")
print("RESULT", json.dumps({
    "started": bool(started),
    "algorithms": sorted(a.id() for a in provider.algorithms()) if provider else None,
    "asked": sorted(set(Missing.asked)),
    "loaded": sorted(m for m in sys.modules if m.split(".")[0] in Missing.names),
    "log": logged,
}))
app.exitQgis()
"""


def test_qgis_starts_the_plugin_without_shapely_or_onnxruntime(tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "rs_ghost_qgis").symlink_to(ROOT / "rs_ghost_qgis")
    script = tmp_path / "start.py"
    script.write_text(textwrap.dedent(BLOCKER) + f"PLUGINS = {str(plugins)!r}\n" + textwrap.dedent(START))
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(QT_QPA_PLATFORM="offscreen", PYTHONPATH=sysconfig.get_paths()["purelib"], HOME=str(tmp_path))
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])

    log = "\n".join(text for _tag, text in result["log"])
    assert "Traceback" not in done.stderr + log, done.stderr + log
    assert result["started"]
    assert result["algorithms"] == ["rsghost:adapt", "rsghost:assess", "rsghost:classify", "rsghost:train"]
    assert result["loaded"] == []  # nothing slipped past the finder
    guidance = [text for tag, text in result["log"] if tag == "RS Ghost"]
    assert any("onnxruntime" in text and "shapely" in text and "pip" in text for text in guidance), guidance
