"""The dialog: preselection, model card display, settings, a full run with summary, bad inputs."""

import onnx
import pytest
from qgis.core import (
    Qgis,
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsRasterLayer,
    QgsRectangle,
    QgsSettings,
    QgsVectorLayer,
)
from qgis.gui import QgsMessageBarItem
from qgis.PyQt.QtCore import QEventLoop, QTimer

from rs_ghost_qgis.core.model import runtime
from rs_ghost_qgis.ui.dialog import SETTINGS_PREFIX, ClassifyDialog
from tests.qgis.rasters import two_halves, write_geotiff


@pytest.fixture()
def dialog(qgis_app, qgis_iface, project, qgis_processing):
    QgsSettings().remove(SETTINGS_PREFIX.rstrip("/"))
    widget = ClassifyDialog(qgis_iface)
    yield widget
    widget.shutdown()
    widget.deleteLater()


def _raster(tmp_path, project, bands=3, name="halves"):
    path = write_geotiff(tmp_path / f"{name}.tif", two_halves()[:bands], descriptions=["B4", "B3", "B2"][:bands])
    layer = QgsRasterLayer(str(path), name)
    project.addMapLayer(layer)
    return layer


def _use_model(dialog, path):
    dialog.file_radio.setChecked(True)
    dialog.model_file.setFilePath(str(path))


def _wait(dialog, timeout_s=60):
    task = dialog.task
    assert task is not None, dialog.message.text()
    loop = QEventLoop()
    task.done.connect(lambda _: loop.quit())
    QTimer.singleShot(timeout_s * 1000, loop.quit)
    loop.exec_()
    assert dialog.task is None, "the run did not finish"
    return task


def test_preselects_layer_and_shows_model_card(dialog, tmp_path, project, tiny_model):
    other = _raster(tmp_path, project, name="other")
    layer = _raster(tmp_path, project)
    dialog.select_layer(layer)
    assert dialog.layer_combo.currentLayer() is layer
    _use_model(dialog, tiny_model)
    text = dialog.model_info.text()
    for expected in ("Water", "Forest", "Crop", "#33a02c", "32 px × 10 m = 320 m", "GSD 10 m"):
        assert expected in text
    assert dialog.bands_edit.placeholderText() == "auto: 1,2,3"
    assert "matched by description" in dialog.bands_hint.text()
    dialog.select_layer(QgsVectorLayer("Point?crs=EPSG:4326", "points", "memory"))  # not a raster: ignored
    assert dialog.layer_combo.currentLayer() is layer
    assert other is not layer


def test_short_window_scrolls_the_settings_instead_of_squeezing_the_hints(dialog, tmp_path, project, tiny_model):
    dialog.select_layer(_raster(tmp_path, project))
    _use_model(dialog, tiny_model)
    dialog.resize(520, 420)  # shorter than the settings: a laptop screen or a docked panel
    dialog.show()
    for _ in range(3):  # the scroll area lays out its contents in a second pass
        QgsApplication.processEvents()
    hint = dialog.bands_hint
    assert len(hint.text()) > 80  # long enough to wrap onto several lines
    assert hint.height() >= hint.heightForWidth(hint.width()), "the wrapped band hint is cut off"
    assert dialog.height() == 420, "the dialog cannot be made short enough for a laptop screen"
    assert dialog.run_button.isVisible() and dialog.run_button.geometry().bottom() <= dialog.height()
    dialog.hide()


def test_run_shows_summary_and_remembers_settings(dialog, tmp_path, project, tiny_model):
    layer = _raster(tmp_path, project)
    dialog.select_layer(layer)
    _use_model(dialog, tiny_model)
    dialog.folder_widget.setFilePath(str(tmp_path / "out"))
    dialog.stride_spin.setValue(16)
    dialog.start()
    assert dialog.cancel_button.isEnabled() and not dialog.run_button.isEnabled()
    _wait(dialog)
    assert dialog.message.text().startswith("Done:"), dialog.message.text()
    done = dialog.message.text()
    assert "s on the CPU;" in done and "ExecutionProvider" not in done, done
    for internal in ("(card)", "gdal_translate", "->", "..", "as chosen:"):
        assert internal not in done.split("Scaling: ")[1], done
    assert dialog.progress.value() == 100
    assert not dialog.cancel_button.isEnabled() and dialog.run_button.isEnabled()
    rows = {dialog.summary.item(i, 0).text() for i in range(dialog.summary.rowCount())}
    assert rows == {"Forest", "Water"} and not dialog.summary.isHidden()
    assert sorted(p.suffix for p in (tmp_path / "out").iterdir()) == [".gpkg", ".tif"]
    assert len(project.mapLayers()) == 3  # the input plus both outputs
    settings = QgsSettings()
    assert settings.value(SETTINGS_PREFIX + "model_path") == str(tiny_model)
    # The stride belongs to the raster (test_bands_and_scaling_belong_to_one_raster), not to the next session.
    assert settings.value(SETTINGS_PREFIX + "stride") is None
    again = ClassifyDialog(dialog.iface)
    assert again.model_file.filePath() == str(tiny_model) and again.stride_spin.value() == 0
    again.deleteLater()


def test_a_run_opens_the_model_once(dialog, tmp_path, project, tiny_model, monkeypatch):
    loads = []
    load_model = runtime.load_model

    def counted(*args, **kwargs):
        loads.append(args)
        return load_model(*args, **kwargs)

    monkeypatch.setattr(runtime, "load_model", counted)
    dialog.select_layer(_raster(tmp_path, project))
    _use_model(dialog, tiny_model)  # the card is shown: the model is open
    dialog.folder_widget.setFilePath(str(tmp_path / "out"))
    dialog.start()
    _wait(dialog)
    assert dialog.message.text().startswith("Done:"), dialog.message.text()
    assert len(loads) == 1, "the card, the checks and the task share one loaded model"
    dialog.threads_spin.setValue(1)  # another thread count needs another session
    dialog.start()
    _wait(dialog)
    assert len(loads) == 2


def _no_card(tiny_model, tmp_path):
    model = onnx.load(str(tiny_model))
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / "nocard.onnx"))
    return tmp_path / "nocard.onnx"


@pytest.mark.parametrize(
    "case, message",
    [
        ("vector", "is a vector layer; choose a raster layer"),
        ("one_band", "has no band for green, blue, which the model needs (red, green, blue)"),  # its band says B4
        ("missing_model", "does not exist"),
        ("no_card", "no complete model card"),
        ("no_bundled", "bundled model is not there yet"),
        ("no_output", "at least one output"),
    ],
)
def test_bad_inputs_are_messages(dialog, tmp_path, project, tiny_model, monkeypatch, case, message):
    layer = _raster(tmp_path, project, bands=1 if case == "one_band" else 3)
    dialog.select_layer(layer)
    _use_model(dialog, tiny_model)
    if case == "vector":
        vector = QgsVectorLayer("Polygon?crs=EPSG:4326", "fields", "memory")
        monkeypatch.setattr(dialog.layer_combo, "currentLayer", lambda: vector)
    elif case == "missing_model":
        dialog.model_file.setFilePath(str(tmp_path / "nothing.onnx"))
    elif case == "no_card":
        dialog.model_file.setFilePath(str(_no_card(tiny_model, tmp_path)))
    elif case == "no_bundled":
        monkeypatch.setattr(runtime, "MODEL_DIRS", (tmp_path / "no_models",))
        dialog.bundled_radio.setChecked(True)
    elif case == "no_output":
        dialog.polygons_check.setChecked(False)
        dialog.raster_check.setChecked(False)
    dialog.start()
    assert dialog.task is None
    assert message in dialog.message.text() and "Traceback" not in dialog.message.text()


def test_extent_outside_raster_is_a_message(dialog, tmp_path, project, tiny_model, qgis_iface):
    layer = _raster(tmp_path, project)
    dialog.select_layer(layer)
    _use_model(dialog, tiny_model)
    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:32633"))
    canvas.setExtent(QgsRectangle(100000, 100000, 101000, 101000))
    dialog.area_combo.setCurrentIndex(dialog.area_combo.findData("canvas"))
    dialog.folder_widget.setFilePath(str(tmp_path / "out"))
    dialog.start()
    assert dialog.task is None, "the size check places the area before any work"
    assert "does not overlap" in dialog.message.text()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert len(project.mapLayers()) == 1


def test_cancel_button_stops_the_run(dialog, tmp_path, project, tiny_model):
    import numpy as np

    big = np.zeros((3, 1536, 1536), dtype=np.uint8)
    big[1] = 150  # 48 x 48 tiles, 4 x 4 overlapping per cell with stride 8: seconds of work
    layer = QgsRasterLayer(str(write_geotiff(tmp_path / "big.tif", big)), "big")
    project.addMapLayer(layer)
    dialog.select_layer(layer)
    _use_model(dialog, tiny_model)
    dialog.stride_spin.setValue(8)
    dialog.folder_widget.setFilePath(str(tmp_path / "out"))
    asked = []
    dialog.confirm_workload = lambda size: asked.append(size) or True  # a long run by the card-less estimate
    dialog.start()
    assert asked and asked[0].tiles > 30_000
    # Click Cancel once the task reports progress, i.e. while it is running.
    dialog.task.progressChanged.connect(lambda value: value > 0 and dialog.cancel_button.click())
    # What QGIS 3.22 does after finished() for a task of 5 s or more: a "Task complete" note.
    bar = dialog.iface.messageBar()
    dialog.task.done.connect(lambda task: bar.pushItem(QgsMessageBarItem("Task complete", task.description())))
    _wait(dialog)
    assert "Cancelled" in dialog.message.text()
    assert "#b00020" not in dialog.message.styleSheet()  # a cancel is no error
    infos = bar.get_messages(Qgis.Info)
    assert "Cancelled:Classifying big was cancelled; nothing was written." in infos, infos
    QgsApplication.processEvents()
    assert [item.title() for item in bar.items()] == [], "QGIS's 'Task complete' note was left for a cancel"
    assert len(project.mapLayers()) == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_xyz_layer_needs_an_area_and_runs_on_the_map_extent(dialog, tmp_path, project, tiny_model, qgis_iface):
    from tests.qgis.rasters import FOREST, WATER, tile_bounds_3857, write_xyz_tiles

    zoom, x0, y0 = 14, 8192, 8191
    folder = write_xyz_tiles(tmp_path / "xyz", zoom, x0, y0, [[FOREST, WATER]])
    url = f"type=xyz&url=file://{folder.as_posix()}/{{z}}/{{x}}/{{y}}.png&zmin={zoom}&zmax={zoom}"
    layer = QgsRasterLayer(url, "tiles", "wms")
    project.addMapLayer(layer)
    dialog.select_layer(layer)
    _use_model(dialog, tiny_model)
    dialog.folder_widget.setFilePath(str(tmp_path / "out"))
    dialog.start()
    assert dialog.task is None and "Current map extent" in dialog.message.text()
    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3857"))
    xmin, ymin, _, _ = tile_bounds_3857(zoom, x0, y0)
    _, _, xmax, ymax = tile_bounds_3857(zoom, x0 + 1, y0)
    canvas.setExtent(QgsRectangle(xmin, ymin, xmax, ymax))
    dialog.area_combo.setCurrentIndex(dialog.area_combo.findData("canvas"))
    dialog.start()
    _wait(dialog)
    assert dialog.message.text().startswith("Done:"), dialog.message.text()
    rows = {dialog.summary.item(i, 0).text() for i in range(dialog.summary.rowCount())}
    assert rows == {"Forest", "Water"}


def test_replace_checkbox_is_remembered_and_replaces_the_previous_run(dialog, tmp_path, project, tiny_model):
    layer = _raster(tmp_path, project)
    dialog.select_layer(layer)
    _use_model(dialog, tiny_model)
    dialog.folder_widget.setFilePath(str(tmp_path / "out"))
    assert not dialog.replace_check.isChecked()  # default: keep earlier runs for comparison
    dialog.start()
    first = [lyr.id() for lyr in _wait(dialog).layers]  # ids: the layers themselves go away
    dialog.replace_check.setChecked(True)
    dialog.start()
    second = _wait(dialog).layers
    assert set(project.mapLayers()) == {layer.id()} | {lyr.id() for lyr in second}
    assert not set(first) & set(project.mapLayers())
    assert str(QgsSettings().value(SETTINGS_PREFIX + "replace")).lower() == "true"
    again = ClassifyDialog(dialog.iface)
    assert again.replace_check.isChecked()
    again.deleteLater()


def test_bands_and_scaling_belong_to_one_raster(dialog, tmp_path, project, tiny_model):
    first = _raster(tmp_path, project, name="first")
    second = _raster(tmp_path, project, name="second")
    dialog.select_layer(first)
    _use_model(dialog, tiny_model)
    dialog.bands_edit.setText("3,2,1")
    dialog.scaling_combo.setCurrentIndex(dialog.scaling_combo.findData("percentile"))
    dialog.stride_spin.setValue(16)
    assert dialog.stride_metres.text() == "= 160 m on the ground (tiles overlap)"  # 16 px of 10 m
    dialog.select_layer(second)
    assert dialog.scaling_combo.currentData() == "auto" and dialog.bands_edit.text() == ""
    assert dialog.stride_spin.value() == 0 and dialog.stride_metres.text() == "= 320 m on the ground (no overlap)"
    dialog.select_layer(first)  # back to the first raster: its choices come back
    assert dialog.scaling_combo.currentData() == "percentile" and dialog.bands_edit.text() == "3,2,1"
    assert dialog.stride_spin.value() == 16
    dialog.folder_widget.setFilePath(str(tmp_path / "out"))
    dialog.start()
    _wait(dialog)
    # Not across sessions either: a new dialog (a QGIS restart) starts automatic.
    assert QgsSettings().value(SETTINGS_PREFIX + "scaling") is None
    again = ClassifyDialog(dialog.iface)
    again.select_layer(first)
    assert again.scaling_combo.currentData() == "auto" and again.bands_edit.text() == ""
    again.deleteLater()


def test_scaling_that_puts_values_out_of_range_is_warned_before_run(dialog, tmp_path, project, tiny_model, monkeypatch):
    import numpy as np

    reflectance = np.full((3, 64, 128), 5000, dtype=np.uint16)  # above the card's 0..3000 and far above 255
    path = write_geotiff(tmp_path / "bright.tif", reflectance, descriptions=["B4", "B3", "B2"])
    layer = QgsRasterLayer(str(path), "bright")
    project.addMapLayer(layer)
    dialog.select_layer(layer)
    _use_model(dialog, tiny_model)
    assert dialog.scaling_warning.isHidden() is False and "100%" in dialog.scaling_warning.text()
    dialog.scaling_combo.setCurrentIndex(dialog.scaling_combo.findData("none"))
    warning = dialog.scaling_warning.text()
    assert "0–255" in warning and "5000" in warning and "outside" in warning
    dialog.scaling_combo.setCurrentIndex(dialog.scaling_combo.findData("percentile"))
    assert dialog.scaling_warning.isHidden() and dialog.scaling_warning.text() == ""
    dialog.scaling_combo.setCurrentIndex(dialog.scaling_combo.findData("none"))
    asked = []
    monkeypatch.setattr(dialog, "confirm_scaling", lambda text: asked.append(text) or False)
    dialog.folder_widget.setFilePath(str(tmp_path / "out"))
    dialog.start()
    assert asked == [warning] and dialog.task is None and "Not started" in dialog.message.text()
    monkeypatch.setattr(dialog, "confirm_scaling", lambda text: True)
    dialog.start()
    assert _wait(dialog).error == ""


def test_band_hint_speaks_the_dialogs_words(dialog, tmp_path, project, tiny_model):
    # uint16: no band descriptions and no RGB colour interpretation (8-bit GeoTIFFs say red, green, blue)
    path = write_geotiff(tmp_path / "plain.tif", two_halves().astype("uint16"))
    layer = QgsRasterLayer(str(path), "plain")
    project.addMapLayer(layer)
    dialog.select_layer(layer)
    _use_model(dialog, tiny_model)
    hint = dialog.bands_hint.text()
    assert "no band descriptions matched" in hint and "Bands" in hint
    assert "--" not in hint, hint
    # A grey raster (one band, no description): its band may feed every channel.
    grey = QgsRasterLayer(str(write_geotiff(tmp_path / "grey.tif", two_halves()[:1].astype("uint16"))), "grey")
    project.addMapLayer(grey)
    dialog.select_layer(grey)
    dialog.start()
    assert "in Bands, e.g. 1,1,1" in dialog.message.text() and "--" not in dialog.message.text()


def test_disabled_mask_box_shows_no_layer(dialog, tmp_path, project, tiny_model):
    dialog.select_layer(_raster(tmp_path, project))
    _use_model(dialog, tiny_model)
    dialog.folder_widget.setFilePath(str(tmp_path / "out"))
    dialog.start()
    tiles = _wait(dialog).layers[0]
    assert not dialog.mask_combo.isEnabled()
    assert dialog.mask_combo.currentLayer() is None, "the disabled Mask box shows the new output layer"
    dialog.area_combo.setCurrentIndex(dialog.area_combo.findData("mask_all"))
    assert dialog.mask_combo.isEnabled() and dialog.mask_combo.currentLayer() is tiles


def test_scaling_hint_says_what_automatic_does_and_the_offset_field_changes_it(dialog, tmp_path, project, tiny_model):
    from tests.core.test_radiometry import write_kind

    path, _, _ = write_kind(tmp_path / "offset.tif", "offset, no tag")
    layer = QgsRasterLayer(str(path), "offset")
    project.addMapLayer(layer)
    dialog.select_layer(layer)
    _use_model(dialog, tiny_model)
    hint = dialog.scaling_hint.text()
    # The dialog's plain words for the engine's note (no "..", "->" or "(card)").
    assert hint.startswith("reflectance × 10,000 detected: linear 0–3000 → 0–255 for all bands, as the model card says")
    assert "probably carry the +1000 offset" in hint and "set Offset to 1000" in hint and "--" not in hint
    dialog.offset_edit.setText("1000")
    dialog.offset_edit.editingFinished.emit()
    assert "offset 1000 removed (as given)" in dialog.scaling_hint.text()
    assert "probably" not in dialog.scaling_hint.text()
    assert dialog.collect().options.offset == 1000.0
