"""Adapting in QGIS: Processing ``rsghost:adapt`` and the dialog's "Adapt to my polygons...".

The scene is the near-infrared oracle of tests/core/adapt_data.py: classes that RGB cannot
tell apart, so the held-out blocks come out right only through band 4.
"""

import time

import pytest
from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsProcessingException,
    QgsRasterLayer,
    QgsRendererCategory,
    QgsSettings,
    QgsSymbol,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtTest import QTest

from rs_ghost_qgis.core.model.runtime import load_model
from rs_ghost_qgis.ui.dialog import SETTINGS_PREFIX, ClassifyDialog
from tests.core.adapt_data import NAMES, block_box, held_out_truth, labelled_polygons, nir_scene, write_labels
from tests.qgis.subprocess_qgis import packaged_plugins, run_in_fresh_qgis

STYLE = {"meadow": "#12ab34", "plastic": "#cd0e0f"}


def _run(algorithm, parameters):
    import processing

    return processing.run(algorithm, parameters)


def _styled_labels(path, project):
    layer = QgsVectorLayer(str(write_labels(path, labelled_polygons())), "labels", "ogr")
    categories = []
    for name, colour in STYLE.items():
        symbol = QgsSymbol.defaultSymbol(QgsWkbTypes.PolygonGeometry)
        symbol.setColor(QColor(colour))
        categories.append(QgsRendererCategory(name, symbol, name))
    layer.setRenderer(QgsCategorizedSymbolRenderer("landcover", categories))
    project.addMapLayer(layer)
    return layer


def _wait_for(adapt, timeout_s: float = 120.0) -> None:
    """Turn the event loop until the dialog's adapt task has ended (it runs as a QgsTask)."""
    deadline = time.monotonic() + timeout_s
    while adapt.task is not None:
        assert time.monotonic() < deadline, "the adapt task did not end"
        QTest.qWait(50)


def _held_out_accuracy(tiles_path) -> float:
    layer = QgsVectorLayer(str(tiles_path), "tiles", "ogr")
    right = total = 0
    for feature in layer.getFeatures():
        truth = held_out_truth(feature["tile_row"], feature["tile_col"])
        if truth is not None:
            total += 1
            right += feature["class_name"] == NAMES[truth]
    assert total == 128
    return right / total


def test_processing_adapt_then_classify(qgis_app, provider, project, tmp_path, tiny_model):
    scene = nir_scene(tmp_path / "nir.tif")
    labels = _styled_labels(tmp_path / "labels.gpkg", project)
    out = tmp_path / "adapted.onnx"
    result = _run(
        "rsghost:adapt",
        {
            "INPUT": str(scene),
            "POLYGONS": labels,
            "CLASS_FIELD": "landcover",
            "MODEL": str(tiny_model),
            "OUTPUT": str(out),
        },
    )
    assert result["OUTPUT"] == str(out) and result["CV_ACCURACY"] >= 0.9
    assert "held-out recall" in result["SUMMARY"]
    card = load_model(out).card
    assert dict(zip(card.class_names, card.class_colors, strict=True)) == STYLE  # the layer's categorized style
    assert card.training["polygons"] == "labels"
    classified = _run(
        "rsghost:classify",
        {"INPUT": str(scene), "MODEL": str(out), "OUTPUT_VECTOR": str(tmp_path / "tiles.gpkg")},
    )
    assert _held_out_accuracy(classified["OUTPUT_VECTOR"]) >= 0.9


def test_processing_refuses_points(qgis_app, provider, project, tmp_path, tiny_model):
    scene = nir_scene(tmp_path / "nir.tif")
    points = write_labels(tmp_path / "points.gpkg", [(name, shape.centroid) for name, shape in labelled_polygons()])
    with pytest.raises(QgsProcessingException, match="must hold polygons"):
        _run(
            "rsghost:adapt",
            {
                "INPUT": str(scene),
                "POLYGONS": str(points),
                "CLASS_FIELD": "landcover",
                "MODEL": str(tiny_model),
                "OUTPUT": str(tmp_path / "never.onnx"),
            },
        )
    assert not (tmp_path / "never.onnx").exists()


@pytest.fixture()
def dialog(qgis_app, qgis_iface, project, qgis_processing):
    QgsSettings().remove(SETTINGS_PREFIX.rstrip("/"))
    widget = ClassifyDialog(qgis_iface)
    yield widget
    widget.shutdown()
    widget.deleteLater()


def test_dialog_adapts_and_shows_the_new_card(dialog, project, tmp_path, tiny_model):
    raster = QgsRasterLayer(str(nir_scene(tmp_path / "nir.tif")), "nir")
    project.addMapLayer(raster)
    dialog.select_layer(raster)
    dialog.file_radio.setChecked(True)
    dialog.model_file.setFilePath(str(tiny_model))
    labels = _styled_labels(tmp_path / "labels.gpkg", project)
    dialog.open_adapt()
    adapt = dialog.adapt_dialog
    adapt.layer_combo.setLayer(labels)
    adapt.field_combo.setField("landcover")
    adapt.out_file.setFilePath(str(tmp_path / "mine"))
    adapt.run()
    _wait_for(adapt)
    assert adapt.result is not None, adapt.message.text()
    assert (tmp_path / "mine.onnx").is_file()
    assert dialog.model_path() == str(tmp_path / "mine.onnx")
    shown = dialog.model_info.text()
    assert "meadow" in shown and "plastic" in shown and "of the chips classified right" in shown
    assert "whole polygons held out" in adapt.message.text()
    adapt.close()


def test_dialog_names_the_class_with_too_few_chips(dialog, project, tmp_path, tiny_model):
    raster = QgsRasterLayer(str(nir_scene(tmp_path / "nir.tif")), "nir")
    project.addMapLayer(raster)
    dialog.select_layer(raster)
    dialog.file_radio.setChecked(True)
    dialog.model_file.setFilePath(str(tiny_model))
    small = [labelled_polygons()[0], ("plastic", block_box(0, 1, inset_m=560))]
    layer = QgsVectorLayer(str(write_labels(tmp_path / "small.gpkg", small)), "small", "ogr")
    project.addMapLayer(layer)
    dialog.open_adapt()
    adapt = dialog.adapt_dialog
    adapt.layer_combo.setLayer(layer)
    adapt.field_combo.setField("landcover")
    adapt.out_file.setFilePath(str(tmp_path / "never.onnx"))
    adapt.run()
    _wait_for(adapt)
    text = adapt.message.text()
    assert "Class 'plastic' has 1 chip(s); at least 5 are needed" in text and "Stride" in text
    assert not (tmp_path / "never.onnx").exists()
    adapt.close()


# The packages a stock QGIS lacks.
NOT_IN_QGIS = {"rasterio", "onnx", "torch", "google", "sklearn", "scipy"}

ADAPT_AND_CLASSIFY = """
assert started, "the plugin did not start"
import processing
import rs_ghost_qgis
adapted = processing.run("rsghost:adapt", ADAPT)
classified = processing.run("rsghost:classify", {**CLASSIFY, "MODEL": adapted["OUTPUT"]})
result = {"cv": adapted["CV_ACCURACY"], "tiles": classified["TILES_CLASSIFIED"], "plugin": rs_ghost_qgis.__file__}
qgis.utils.unloadPlugin("rs_ghost_qgis")
"""


def test_plugin_zip_adapts_without_torch_onnx_protobuf_or_rasterio(tmp_path, tiny_model):
    plugins = packaged_plugins(tmp_path / "package")
    scene = nir_scene(tmp_path / "nir.tif")
    labels = write_labels(tmp_path / "labels.gpkg", labelled_polygons())
    adapt = {
        "INPUT": str(scene),
        "POLYGONS": str(labels),
        "CLASS_FIELD": "landcover",
        "MODEL": str(tiny_model),
        "OUTPUT": str(tmp_path / "adapted.onnx"),
    }
    classify = {"INPUT": str(scene), "OUTPUT_VECTOR": str(tmp_path / "tiles.gpkg")}
    result = run_in_fresh_qgis(plugins, NOT_IN_QGIS, ADAPT_AND_CLASSIFY, tmp_path, ADAPT=adapt, CLASSIFY=classify)
    assert result["plugin"] == str(plugins / "rs_ghost_qgis" / "__init__.py")
    assert result["loaded"] == []  # no torch, onnx, protobuf, sklearn, scipy or rasterio was used
    assert result["cv"] >= 0.9 and result["tiles"] == 256
    assert _held_out_accuracy(tmp_path / "tiles.gpkg") >= 0.9
