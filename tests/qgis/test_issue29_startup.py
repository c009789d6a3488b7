"""Issue 29: QGIS starts the plugin cleanly in a Python without shapely and onnxruntime.

A fresh QGIS process gets a module finder that makes ``import shapely`` and ``import
onnxruntime`` fail as if they were not installed, then loads and starts the plugin as QGIS
does at start-up. No traceback may appear (on stderr or in the log), the Processing provider
must list every algorithm, and the log must say what to install.
"""

from __future__ import annotations

from pathlib import Path

from tests.qgis.subprocess_qgis import run_in_fresh_qgis

ROOT = Path(__file__).resolve().parents[2]

REPORT_PROVIDER = """
provider = QgsApplication.processingRegistry().providerById("rsghost")
result = {"algorithms": sorted(a.id() for a in provider.algorithms()) if provider else None}
"""


def test_qgis_starts_the_plugin_without_shapely_or_onnxruntime(tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "rs_ghost_qgis").symlink_to(ROOT / "rs_ghost_qgis")
    result = run_in_fresh_qgis(plugins, {"shapely", "onnxruntime"}, REPORT_PROVIDER, tmp_path)

    log = "\n".join(text for _tag, text in result["log"])
    assert "Traceback" not in result["stderr"] + log, result["stderr"] + log
    assert result["started"]
    assert result["algorithms"] == ["rsghost:adapt", "rsghost:assess", "rsghost:classify", "rsghost:train"]
    assert result["loaded"] == []  # nothing slipped past the finder
    guidance = [text for tag, text in result["log"] if tag == "RS Ghost"]
    assert any("onnxruntime" in text and "shapely" in text and "pip" in text for text in guidance), guidance
