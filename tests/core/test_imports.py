import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ENGINE = ["crs", "grid", "radiometry", "rasterio_source", "runtime", "sinks", "pipeline", "preview", "download", "cli"]


def test_package_and_engine_import_neither_torch_nor_qgis():
    modules = ["rs_ghost_qgis", "rs_ghost_qgis.core", "rs_ghost_qgis.__main__"]
    modules += [f"rs_ghost_qgis.core.{name}" for name in ENGINE]
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
