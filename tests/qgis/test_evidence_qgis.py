"""Evidence from near infrared and doubt in QGIS (issue 32): the hatched styled layer and Processing's switch.

The raster: forest on the left, the tiny model's water colour on the right, and a near-infrared
band above green everywhere, so not one pixel is water (NDWI < 0): the network says Water on
the right half, the water rule must not.
"""

from __future__ import annotations

import numpy as np
from osgeo import gdal
from qgis.core import (
    QgsExpression,
    QgsExpressionContext,
    QgsExpressionContextUtils,
    QgsLinePatternFillSymbolLayer,
    QgsProcessingContext,
    QgsRasterLayer,
    QgsSymbolLayer,
    QgsVectorLayer,
)

from rs_ghost_qgis.core.classify.pipeline import ClassifyOptions
from rs_ghost_qgis.core.options import Area
from rs_ghost_qgis.qgis_io.source import QgisLayerSource
from rs_ghost_qgis.qgis_io.style import DOUBT_CATEGORY
from rs_ghost_qgis.qgis_io.task import ClassifyTask
from tests.qgis.conftest import run_task
from tests.qgis.rasters import two_halves, write_geotiff

NIR = 200  # above every band of both colours: vegetation-like, no water pixel


def dry_water_raster(tmp_path):
    data = np.concatenate([two_halves(), np.full((1, 64, 128), NIR, np.uint8)])
    path = write_geotiff(tmp_path / "dry.tif", data, descriptions=["red", "green", "blue", "nir"])
    dataset = gdal.Open(str(path), gdal.GA_Update)  # a 4-band byte GeoTIFF is RGBA unless told otherwise
    dataset.GetRasterBand(4).SetColorInterpretation(gdal.GCI_Undefined)
    dataset = None
    return path


def _classes(path) -> dict:
    layer = QgsVectorLayer(str(path), "t", "ogr")
    counts = {}
    for feature in layer.getFeatures():
        counts[feature["class_name"]] = counts.get(feature["class_name"], 0) + 1
    return counts


def _classify(raster, model, out, **extra):
    import processing

    out.mkdir()
    parameters = {"INPUT": str(raster), "MODEL": str(model), "OUTPUT_VECTOR": str(out / "tiles.gpkg")}
    return processing.run("rsghost:classify", {**parameters, **extra})


def test_processing_water_rule_parameter(qgis_app, provider, tmp_path, tiny_model):
    raster = dry_water_raster(tmp_path)
    ruled = _classify(raster, tiny_model, tmp_path / "on")
    assert "Water" not in _classes(ruled["OUTPUT_VECTOR"]) and ruled["TILES_WATER_RULE"] == 4
    assert "water rule changed 4 of 8 tiles" in ruled["SUMMARY"]
    network = _classify(raster, tiny_model, tmp_path / "off", WATER_RULE=False)
    assert _classes(network["OUTPUT_VECTOR"]) == {"Forest": 4, "Water": 4} and network["TILES_WATER_RULE"] == 0


def test_processing_refuses_a_near_infrared_band_beyond_the_raster(qgis_app, provider, tmp_path, tiny_model):
    from rs_ghost_qgis.processing.classify import ClassifyAlgorithm

    algorithm = ClassifyAlgorithm()
    algorithm.initAlgorithm()
    parameters = {"INPUT": str(dry_water_raster(tmp_path)), "MODEL": str(tiny_model), "NIR_BAND": 7}
    parameters["OUTPUT_VECTOR"] = str(tmp_path / "t.gpkg")
    ok, message = algorithm.checkParameterValues(parameters, QgsProcessingContext())
    assert not ok and message.startswith("NIR_BAND 7 is out of range") and not (tmp_path / "t.gpkg").exists()


def test_doubtful_tiles_are_hatched_and_explained_in_the_legend(qgis_app, project, tmp_path, tiny_model):
    path = dry_water_raster(tmp_path)
    layer = QgsRasterLayer(str(path), "dry")
    project.addMapLayer(layer)
    # Between the water-ruled tiles' renormalised confidence (0.9985) and the forest's (1.0).
    options = ClassifyOptions(
        model_path=str(tiny_model), area=Area(), out_vector=str(tmp_path / "out" / "tiles.gpkg"), min_confidence=0.999
    )
    task = run_task(ClassifyTask(QgisLayerSource.from_layer(layer, project), options, "tiny", project))
    assert task.error == ""
    tiles = task.layers[0]
    doubtful = [f for f in tiles.getFeatures() if f["doubtful"] == 1]
    sure = [f for f in tiles.getFeatures() if f["doubtful"] == 0]
    assert doubtful and sure, "the threshold must split the tiles"
    assert all(f["confidence"] < 0.999 for f in doubtful) and all(f["confidence"] >= 0.999 for f in sure)
    categories = tiles.renderer().categories()
    legend = categories[-1]
    assert legend.value() == DOUBT_CATEGORY
    share = len(doubtful) / tiles.featureCount()
    assert legend.label() == f"doubtful {share:.1%}: below 99.9% ({len(doubtful)} tiles)"
    for category in categories[:-1]:
        hatch = category.symbol().symbolLayers()[-1]
        assert isinstance(hatch, QgsLinePatternFillSymbolLayer)
        enabled = hatch.dataDefinedProperties().property(QgsSymbolLayer.PropertyLayerEnabled)
        assert enabled.isActive()
        for feature, expected in [(doubtful[0], True), (sure[0], False)]:
            context = QgsExpressionContext()
            context.appendScope(QgsExpressionContextUtils.layerScope(tiles))
            context.setFeature(feature)
            assert enabled.valueAsBool(context, False)[0] is expected
    tips = []
    for feature in (doubtful[0], sure[0]):
        context = QgsExpressionContext()
        context.appendScope(QgsExpressionContextUtils.layerScope(tiles))
        context.setFeature(feature)
        tips.append(QgsExpression.replaceExpressionText(tiles.mapTipTemplate(), context))
    assert tips == [
        "Forest: 100 % confidence (the network said Water, but the tile has no water pixels); doubtful",
        "Forest: 100 % confidence",
    ]


def test_dialog_panel_switch_and_done_message(qgis_app, qgis_iface, project, qgis_processing, tmp_path):
    """The model panel shows the card's known limits and the rule; the checkbox turns the rule off in the run."""
    import onnx
    from qgis.core import QgsSettings
    from qgis.PyQt.QtCore import QEventLoop, QTimer

    from rs_ghost_qgis.ui.dialog import SETTINGS_PREFIX, ClassifyDialog
    from tests.tiny_model import export_tiny_model

    model = export_tiny_model(tmp_path / "limited.onnx")
    graph = onnx.load(str(model))
    graph.metadata_props.add(key="known_limits", value='["dark uniform crop fields in June can look like forest"]')
    onnx.save(graph, str(model))
    QgsSettings().remove(SETTINGS_PREFIX.rstrip("/"))
    dialog = ClassifyDialog(qgis_iface)
    try:
        layer = QgsRasterLayer(str(dry_water_raster(tmp_path)), "dry")
        project.addMapLayer(layer)
        dialog.select_layer(layer)
        dialog.file_radio.setChecked(True)
        dialog.model_file.setFilePath(str(model))
        panel = dialog.model_info.text()
        assert "Known limits" in panel and "dark uniform crop fields in June can look like forest" in panel
        assert "a physical rule, not the network" in panel
        assert dialog.collect().options.water_rule is True
        dialog.water_rule_check.setChecked(False)
        dialog.doubt_spin.setValue(80)
        options = dialog.collect().options
        assert options.water_rule is False and options.min_confidence == 0.8
        dialog.water_rule_check.setChecked(True)
        dialog.folder_widget.setFilePath(str(tmp_path / "dialog_out"))
        dialog.start()
        loop = QEventLoop()
        dialog.task.done.connect(lambda _: loop.quit())
        QTimer.singleShot(60_000, loop.quit)
        loop.exec_()
        done = dialog.message.text()
        assert "Near-infrared check: water rule changed 4 of 8 tiles" in done, done
        assert "Doubtful: 0 of 8 tiles (0.0%) below 80% confidence" in done, done
    finally:
        dialog.shutdown()
        dialog.deleteLater()
