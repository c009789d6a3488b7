"""Issue 29: rsghost:train keeps what it trained, says where, and trains the bundled model's kind.

A run into QGIS's temporary folder lost hours of training when QGIS exited; the architecture
defaulted to g_ghost_regnetx_040 whatever the bundled model was.
"""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingFeedback, QgsProcessingUtils

from rs_ghost_qgis.core.model.runtime import load_model
from rs_ghost_qgis.paths import PACKAGE_DIR
from tests.qgis.test_processing import _fake_torch_python, _run


def _train(tmp_path, output):
    feedback = QgsProcessingFeedback()
    logged = []
    feedback.pushConsoleInfo = logged.append
    feedback.pushInfo = logged.append
    parameters = {
        "DATA": str(tmp_path),
        "PYTHON": str(_fake_torch_python(tmp_path)),
        "PROJECT": str(PACKAGE_DIR.parent),
    }
    if output is not None:
        parameters["OUTPUT"] = output
    result = _run("rsghost:train", parameters, QgsProcessingContext(), feedback)
    return result, logged


def _profile_folder() -> Path:
    return Path(QgsApplication.qgisSettingsDirPath()) / "rs_ghost_qgis" / "trained"


def test_train_defaults_to_the_bundled_models_architecture(qgis_app, provider, tmp_path):
    bundled = load_model(None).card.architecture  # the card, read by the engine itself
    _result, logged = _train(tmp_path, str(tmp_path / "run"))
    argv = next(line for line in logged if line.startswith("argv: "))
    assert f"--student {bundled} " in argv + " "
    assert provider.algorithm("train").parameterDefinition("ARCHITECTURE").defaultValue() == bundled


def test_train_into_the_temporary_folder_goes_to_the_profile_and_says_so(qgis_app, provider, tmp_path):
    temporary = Path(QgsProcessingUtils.tempFolder()) / "train_output"
    before = set(_profile_folder().glob("run-*")) if _profile_folder().is_dir() else set()
    result, logged = _train(tmp_path, str(temporary))
    made = set(_profile_folder().glob("run-*")) - before
    assert len(made) == 1
    folder = made.pop()
    try:
        assert Path(result["MODEL"]).parent == folder and Path(result["MODEL"]).is_file()
        assert not temporary.exists()
        said = [line for line in logged if str(folder) in line]
        assert said and "stays after QGIS exits" in said[0]
    finally:
        for item in sorted(folder.rglob("*"), reverse=True):
            item.unlink() if item.is_file() else item.rmdir()
        folder.rmdir()


def test_train_into_a_chosen_folder_says_where(qgis_app, provider, tmp_path):
    result, logged = _train(tmp_path, str(tmp_path / "mine"))
    assert Path(result["MODEL"]).parent == tmp_path / "mine"
    assert any(f"go to {tmp_path / 'mine'}" in line for line in logged), logged


def test_adapt_log_table_keeps_its_columns(qgis_app, provider, project, tmp_path, tiny_model):
    from tests.core.adapt_data import labelled_polygons, nir_scene, write_labels

    feedback = QgsProcessingFeedback()
    commands = []
    feedback.pushCommandInfo = commands.append
    parameters = {
        "INPUT": str(nir_scene(tmp_path / "nir.tif")),
        "POLYGONS": str(write_labels(tmp_path / "labels.gpkg", labelled_polygons())),
        "CLASS_FIELD": "landcover",
        "MODEL": str(tiny_model),
        "OUTPUT": str(tmp_path / "adapted.onnx"),
    }
    result = _run("rsghost:adapt", parameters, QgsProcessingContext(), feedback)
    table = next(text for text in commands if "held-out\u00a0recall" in text)
    # The log is HTML: runs of plain spaces collapse there; no-break spaces keep the columns.
    assert "  " not in table and table.replace("\u00a0", " ") == result["SUMMARY"]
