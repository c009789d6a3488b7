"""Start the plugin in a fresh QGIS process where some packages are missing, as in a stock QGIS.

The script written for that process first installs a module finder that refuses every import of
the hidden packages (as if they were not installed) and records it. Then it starts QGIS and
Processing, loads and starts the plugin from a plugins folder as QGIS does at start-up, and runs
the caller's ``body``, which sets ``result`` (a dict). That dict comes back with what the process
saw added: whether the plugin started, the hidden packages asked for and any that got loaded,
the message log and the process's stderr.
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

ROOT = Path(__file__).resolve().parents[2]

# Runs first: every import of a hidden package is refused and recorded.
HIDE = """
import sys

class Hidden:
    asked = []

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            Hidden.asked.append(name)
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Hidden())
"""

START = """
import json
from qgis.core import QgsApplication
app = QgsApplication([], False)
app.initQgis()
logged = []
QgsApplication.messageLog().messageReceived.connect(lambda text, tag, level: logged.append([tag, text]))
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
"""

REPORT = """
print("RESULT", json.dumps({
    **result,
    "started": bool(started),
    "asked": sorted(set(Hidden.asked)),
    "loaded": sorted(m for m in sys.modules if m.split(".")[0] in HIDDEN),
    "log": logged,
}))
app.exitQgis()
"""


def run_in_fresh_qgis(plugins: Path, hidden: set[str], body: str, work: Path, **values: object) -> dict:
    """Run ``body`` in a new QGIS process with the plugin started from ``plugins`` and ``hidden`` missing.

    ``values`` become constants of the script (their repr), for the body to use. The process runs
    in ``work`` with a home folder of its own there, so no profile of this machine's user counts.
    Returns the body's ``result`` with ``started``, ``asked``, ``loaded``, ``log`` and ``stderr``.
    """
    constants = {"HIDDEN": hidden, "PLUGINS": str(plugins), **values}
    script = work / "in_qgis.py"
    script.write_text(
        "".join(f"{name} = {value!r}\n" for name, value in constants.items())
        + "".join(textwrap.dedent(part) for part in (HIDE, START, body, REPORT))
    )
    home = work / "home"
    home.mkdir(exist_ok=True)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    # The venv's packages (onnxruntime, shapely); Debian's dist-packages stay on the path too.
    env.update(QT_QPA_PLATFORM="offscreen", PYTHONPATH=sysconfig.get_paths()["purelib"], HOME=str(home))
    done = subprocess.run([sys.executable, str(script)], cwd=work, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    return {**json.loads(line.removeprefix("RESULT ")), "stderr": done.stderr}


def packaged_plugins(work: Path) -> Path:
    """A plugins folder in ``work`` holding the plugin zip that `make package` builds, unzipped."""
    spec = importlib.util.spec_from_file_location("package", ROOT / "scripts" / "package.py")
    package = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(package)
    plugin_zip = package.build_zip(package.stage(work / "stage"), work / f"rs_ghost_qgis-{package.version()}.zip")
    plugins = work / "plugins"
    zipfile.ZipFile(plugin_zip).extractall(plugins)
    return plugins
