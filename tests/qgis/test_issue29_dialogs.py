"""Issue 29: what the adapt and classify dialogs show a new analyst, and what they ignore.

Class field default, identifier fields, a one-polygon class, the progress bar after a refusal,
the chip step in the Stride box's words, and the mouse wheel over the dialog's boxes.
"""

from __future__ import annotations

import time

import pytest
from qgis.core import QgsRasterLayer, QgsSettings, QgsVectorLayer
from qgis.PyQt.QtCore import QPoint, QPointF, Qt
from qgis.PyQt.QtGui import QWheelEvent
from qgis.PyQt.QtTest import QTest
from qgis.PyQt.QtWidgets import QApplication

from rs_ghost_qgis.ui.adapt_dialog import suggest_class_field
from rs_ghost_qgis.ui.dialog import SETTINGS_PREFIX, ClassifyDialog
from tests.core.adapt_data import block_box, labelled_polygons, nir_scene, write_labels


@pytest.fixture()
def dialog(qgis_app, qgis_iface, project, qgis_processing, tmp_path, tiny_model):
    QgsSettings().remove(SETTINGS_PREFIX.rstrip("/"))
    widget = ClassifyDialog(qgis_iface)
    raster = QgsRasterLayer(str(nir_scene(tmp_path / "nir.tif")), "nir")
    project.addMapLayer(raster)
    widget.select_layer(raster)
    widget.file_radio.setChecked(True)
    widget.model_file.setFilePath(str(tiny_model))
    yield widget
    widget.shutdown()
    widget.deleteLater()


def _layer(project, path, features, name="labels"):
    layer = QgsVectorLayer(str(write_labels(path, features)), name, "ogr")
    project.addMapLayer(layer)
    return layer


def _adapt(dialog, layer, out):
    dialog.open_adapt()
    adapt = dialog.adapt_dialog
    adapt.layer_combo.setLayer(layer)
    adapt.field_combo.setField("landcover")
    adapt.out_file.setFilePath(str(out))
    adapt.run()
    deadline = time.monotonic() + 120
    while adapt.task is not None:
        assert time.monotonic() < deadline, "the adapt did not end"
        QTest.qWait(50)
    return adapt


def test_class_field_defaults_to_the_class_not_the_fid(dialog, project, tmp_path):
    layer = _layer(project, tmp_path / "labels.gpkg", labelled_polygons())
    assert [f.name() for f in layer.fields()][0] == "fid"  # the field QGIS used to offer first
    assert suggest_class_field(layer) == "landcover"
    dialog.open_adapt()
    adapt = dialog.adapt_dialog
    adapt.layer_combo.setLayer(layer)
    assert adapt.field_combo.currentField() == "landcover"
    assert not adapt.field_hint.isVisibleTo(adapt)
    adapt.field_combo.setField("fid")
    assert adapt.field_hint.isVisibleTo(adapt)
    assert "'fid' has a different value on every polygon" in adapt.field_hint.text()


def test_a_field_with_a_value_per_polygon_is_an_identifier(dialog, project, tmp_path):
    path = write_labels(tmp_path / "ids.gpkg", labelled_polygons())
    layer = QgsVectorLayer(str(path), "ids", "ogr")
    layer.startEditing()
    from qgis.core import QgsField
    from qgis.PyQt.QtCore import QVariant

    layer.addAttribute(QgsField("code", QVariant.String))
    index = layer.fields().indexOf("code")
    for number, feature in enumerate(layer.getFeatures()):
        layer.changeAttributeValue(feature.id(), index, f"P{number}")
    assert layer.commitChanges()
    project.addMapLayer(layer)
    assert suggest_class_field(layer) == "landcover"  # "code" is text too, but unique per polygon


def test_one_polygon_class_says_its_accuracy_cannot_be_measured(dialog, project, tmp_path):
    meadows = [item for item in labelled_polygons() if item[0] == "meadow"]
    plastic = next(item for item in labelled_polygons() if item[0] == "plastic")
    layer = _layer(project, tmp_path / "one.gpkg", [*meadows, plastic])
    adapt = _adapt(dialog, layer, tmp_path / "one.onnx")
    assert adapt.result is not None, adapt.message.text()
    text = adapt.message.text()
    assert "The accuracy of 'plastic' cannot be measured" in text
    assert "Draw a second polygon of 'plastic'" in text
    assert "'meadow'" not in text.split("cannot be measured")[0].split("accuracy of")[-1]
    assert adapt.progress.value() == 100


def test_a_refusal_leaves_no_progress_standing(dialog, project, tmp_path):
    small = [labelled_polygons()[0], ("plastic", block_box(0, 1, inset_m=560))]
    layer = _layer(project, tmp_path / "small.gpkg", small)
    seen = []
    dialog.open_adapt()
    dialog.adapt_dialog.progress.valueChanged.connect(seen.append)
    adapt = _adapt(dialog, layer, tmp_path / "never.onnx")
    assert adapt.result is None and "at least 5 are needed" in adapt.message.text()
    assert max(seen) > 0  # the task did report progress before the refusal
    assert adapt.progress.value() == 0
    assert adapt.adapt_button.isEnabled() and not adapt.cancel_button.isEnabled()


def test_chip_step_speaks_of_the_stride_box(dialog):
    dialog.open_adapt()
    adapt = dialog.adapt_dialog
    tile = dialog.card.tile_size
    assert dialog.stride_spin.specialValueText() == "tile size (no overlap)" and dialog.stride_spin.value() == 0
    assert adapt.step_label.text().startswith(f"a chip every {tile // 4} px = {tile // 4 * dialog.card.gsd_m:g} m")
    assert "Stride says 'tile size'" in adapt.step_label.text()
    dialog.stride_spin.setValue(16)
    assert adapt.step_label.text().startswith(f"a chip every 16 px = {16 * dialog.card.gsd_m:g} m")
    assert "the Stride of the classify dialog" in adapt.step_label.text()


def _wheel(widget, steps: int = -3) -> None:
    centre = widget.rect().center()
    event = QWheelEvent(
        QPointF(centre),
        QPointF(widget.mapToGlobal(centre)),
        QPoint(0, 0),
        QPoint(0, 120 * steps),
        Qt.NoButton,
        Qt.NoModifier,
        Qt.ScrollUpdate,
        False,
    )
    QApplication.sendEvent(widget, event)


def test_the_wheel_does_not_change_boxes_it_scrolls_past(dialog):
    dialog.advanced_box.setCollapsed(False)
    dialog.show()
    for box in (dialog.product_combo, dialog.scaling_combo, dialog.stride_spin, dialog.area_combo):
        before = box.currentIndex() if hasattr(box, "currentIndex") else box.value()
        _wheel(box)
        after = box.currentIndex() if hasattr(box, "currentIndex") else box.value()
        assert after == before, f"{box} changed under the wheel"
    dialog.product_combo.setFocus()
    QApplication.processEvents()
    if dialog.product_combo.hasFocus():  # offscreen windows take focus on most platforms
        _wheel(dialog.product_combo, steps=-1)
        assert dialog.product_combo.currentIndex() == 1  # a clicked box still takes the wheel
    dialog.hide()


def test_a_map_view_elsewhere_asks_to_zoom_not_to_check_coordinates(dialog, qgis_iface, tmp_path):
    from qgis.core import QgsCoordinateReferenceSystem, QgsRectangle

    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:4326"))
    canvas.setExtent(QgsRectangle(100, 10, 110, 20))  # a view of Asia; the raster lies in Europe
    dialog.area_combo.setCurrentIndex(dialog.area_combo.findData("canvas"))
    dialog.folder_widget.setFilePath(str(tmp_path / "out"))
    dialog.start()
    text = dialog.message.text()
    assert dialog.task is None
    assert "The current map extent" in text and "Zoom or pan the map onto nir" in text, text
    assert "check its coordinates" not in text and "bounding box" not in text, text


def test_coarse_pixels_are_told_before_run(dialog, project, tmp_path):
    from tests.qgis.rasters import two_halves, write_geotiff

    coarse = QgsRasterLayer(str(write_geotiff(tmp_path / "coarse.tif", two_halves(), pixel=60.0)), "coarse")
    project.addMapLayer(coarse)
    dialog.select_layer(coarse)
    dialog.bands_edit.setText("1,2,3")
    dialog.scaling_combo.setCurrentIndex(dialog.scaling_combo.findData("none"))
    dialog.folder_widget.setFilePath(str(tmp_path / "out"))
    asked = []
    dialog.confirm_warnings = lambda texts: asked.extend(texts) or False
    dialog.confirm_scaling = lambda text: True
    dialog.start()
    assert dialog.task is None and "Not started" in dialog.message.text()
    assert any("60 m pixels, 6x coarser than the model's 10 m" in text for text in asked), asked


def test_model_panel_says_what_the_model_is_for_and_never_claims_a_teacher_it_lacks(dialog):
    import dataclasses

    from rs_ghost_qgis.core.model.card import ModelCard
    from rs_ghost_qgis.core.model.onnx_meta import read_metadata
    from rs_ghost_qgis.core.model.runtime import default_model_path
    from rs_ghost_qgis.ui.dialog import card_notes, card_purpose

    bundled = ModelCard.from_metadata(read_metadata(default_model_path().read_bytes()))
    assert bundled.training["distillation"]["method"] == "none"
    text = card_purpose(bundled)
    assert "one of the 10 classes" in text and "from the labels alone" in text and "distil" not in text
    taught = dataclasses.replace(
        bundled,
        training={
            **bundled.training,
            "distillation": {"method": "dkd"},
            "teacher": {"architecture": "vgg16_bn", "parameters": 134_301_514},
        },
    )
    assert "distilled, DKD" in card_purpose(taught) and "vgg16_bn" in card_purpose(taught)
    assert f"({134_301_514 / bundled.parameters:.1f}x this model's)" in card_purpose(taught)
    notes = card_notes(bundled)
    assert notes.startswith(text) and "images it did not learn from" in notes
    assert "What it does:" in dialog.model_info.text()


def test_help_opens_the_guide_shipped_in_the_zip(dialog):
    import importlib.util

    from rs_ghost_qgis.paths import help_path

    spec = importlib.util.spec_from_file_location("package", help_path().parents[2] / "scripts" / "package.py")
    package = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(package)
    assert "help/index.html" in [inside for _source, inside in package.plugin_files()]
    assert help_path().is_file() and "Adapt the model to your own classes" in help_path().read_text(encoding="utf-8")
    assert dialog.help_button.text() == "Help"


def test_dialog_adapt_takes_the_colours_of_the_polygons_categorized_style(dialog, project, tmp_path):
    from rs_ghost_qgis.core.model.runtime import load_model
    from tests.qgis.test_adapt_qgis import STYLE, _styled_labels

    layer = _styled_labels(tmp_path / "styled.gpkg", project)
    adapt = _adapt(dialog, layer, tmp_path / "styled.onnx")
    assert adapt.result is not None, adapt.message.text()
    card = load_model(tmp_path / "styled.onnx").card
    assert dict(zip(card.class_names, card.class_colors, strict=True)) == STYLE
