"""The Sentinel-2 product level in the QGIS faces: the Processing parameter PRODUCT, the dialog's
"Product level" combo (kept per raster, like Scaling), and the layer source telling the level as
the command line's source does."""

import numpy as np
import pytest
from qgis.core import (
    QgsApplication,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingParameterEnum,
    QgsRasterLayer,
    QgsSettings,
)

from rs_ghost_qgis.core.options import PRODUCTS
from rs_ghost_qgis.core.radiometry.scaling import plan_radiometry
from rs_ghost_qgis.core.sources.rasterio_source import RasterioSource
from rs_ghost_qgis.qgis_io.source import QgisLayerSource
from rs_ghost_qgis.ui.dialog import PRODUCT_LABELS, SETTINGS_PREFIX, ClassifyDialog
from tests.core.test_product_level import curve_values, dark_blue, l2a_card, scene
from tests.qgis.rasters import write_geotiff
from tests.tiny_model import pooled_model


@pytest.fixture(scope="module")
def l2a_model(tmp_path_factory):
    """A pooled-colour classifier whose card carries L2A curves."""
    return pooled_model(tmp_path_factory.mktemp("model") / "l2a.onnx", l2a_card())


@pytest.fixture()
def dialog(qgis_app, qgis_iface, project, qgis_processing):
    QgsSettings().remove(SETTINGS_PREFIX.rstrip("/"))
    widget = ClassifyDialog(qgis_iface)
    yield widget
    widget.shutdown()
    widget.deleteLater()


def _scene_tif(path, kind):
    """A uint16 reflectance raster, bands described B4, B3, B2 (matched to red, green, blue)."""
    return write_geotiff(path, scene(kind).astype(np.uint16), descriptions=["B4", "B3", "B2"])


def _layer(project, path, name):
    layer = QgsRasterLayer(str(path), name)
    assert layer.isValid()
    project.addMapLayer(layer)
    return layer


# --- Processing -----------------------------------------------------------------------------------


def _algorithm():
    return QgsApplication.processingRegistry().createAlgorithmById("rsghost:classify")


def test_processing_has_a_product_enum(qgis_app, provider):
    algorithm = _algorithm()  # the parameter lives as long as its algorithm
    parameter = algorithm.parameterDefinition("PRODUCT")
    assert isinstance(parameter, QgsProcessingParameterEnum)
    assert parameter.options() == ["auto", "l1c", "l2a"] == list(PRODUCTS)
    assert parameter.defaultValue() == 0 and not parameter.allowMultiple()


@pytest.mark.parametrize(("given", "expected"), [(None, "auto"), (0, "auto"), (1, "l1c"), (2, "l2a")])
def test_processing_product_reaches_the_engine_options(qgis_app, provider, tmp_path, l2a_model, given, expected):
    raster = _scene_tif(tmp_path / "r.tif", "dark")
    parameters = {"INPUT": str(raster), "MODEL": str(l2a_model), "OUTPUT_VECTOR": "TEMPORARY_OUTPUT"}
    if given is not None:
        parameters["PRODUCT"] = given
    assert _algorithm().build_options(parameters, QgsProcessingContext()).product == expected


def test_processing_run_logs_the_level_and_warns_in_its_words(qgis_app, provider, tmp_path, l2a_model):
    import processing

    raster = _scene_tif(tmp_path / "dark.tif", "dark")
    base = {"INPUT": str(raster), "MODEL": str(l2a_model), "THREADS": 1}
    feedback = QgsProcessingFeedback()
    processing.run("rsghost:classify", {**base, "OUTPUT_VECTOR": str(tmp_path / "t1.gpkg")}, feedback=feedback)
    log = feedback.textLog()
    assert "Sentinel-2 L2A (from its values: darkest blue" in log
    assert "the model's own L2A curve per band (card)" in log and "taken as" not in log
    feedback = QgsProcessingFeedback()
    parameters = {**base, "PRODUCT": PRODUCTS.index("l1c"), "OUTPUT_VECTOR": str(tmp_path / "t2.gpkg")}
    processing.run("rsghost:classify", parameters, feedback=feedback)
    log = feedback.textLog()
    assert "Sentinel-2 L1C (as chosen)" in log
    assert "dark is taken as L1C" in log and "set PRODUCT to l2a" in log
    assert "--product" not in log and "Product level" not in log


# --- the dialog ------------------------------------------------------------------------------------


def _use_model(dialog, path):
    dialog.file_radio.setChecked(True)
    dialog.model_file.setFilePath(str(path))


def _choose(dialog, product):
    dialog.product_combo.setCurrentIndex(dialog.product_combo.findData(product))


def test_dialog_offers_the_three_levels(dialog):
    combo = dialog.product_combo
    assert [combo.itemData(i) for i in range(combo.count())] == list(PRODUCTS)
    assert [combo.itemText(i) for i in range(combo.count())] == [PRODUCT_LABELS[key] for key in PRODUCTS]
    assert combo.currentData() == "auto"


def test_dialog_product_level_belongs_to_one_raster(dialog, tmp_path, project, l2a_model):
    first = _layer(project, _scene_tif(tmp_path / "first.tif", "dark"), "first")
    second = _layer(project, _scene_tif(tmp_path / "second.tif", "dark"), "second")
    dialog.select_layer(first)
    _use_model(dialog, l2a_model)
    _choose(dialog, "l2a")
    dialog.scaling_combo.setCurrentIndex(dialog.scaling_combo.findData("card"))
    assert dialog.collect().options.product == "l2a"
    dialog.select_layer(second)  # a new raster starts automatic
    assert dialog.product_combo.currentData() == "auto" and dialog.scaling_combo.currentData() == "auto"
    assert dialog.collect().options.product == "auto"
    _choose(dialog, "l1c")
    dialog.select_layer(first)  # its choices come back
    assert dialog.product_combo.currentData() == "l2a" and dialog.scaling_combo.currentData() == "card"
    dialog.select_layer(second)
    assert dialog.product_combo.currentData() == "l1c"
    assert dialog.collect().options.product == "l1c"


def test_dialog_hint_names_the_level_and_warns_in_its_words(dialog, tmp_path, project, l2a_model):
    path = _scene_tif(tmp_path / "dark.tif", "dark")
    layer = _layer(project, path, "dark")
    dialog.select_layer(layer)
    _use_model(dialog, l2a_model)
    dark = dark_blue(scene("dark"))
    hint = dialog.scaling_hint.text()
    assert f"Sentinel-2 L2A (from its values: darkest blue {dark:.0f} < 400)" in hint
    assert "the model's own L2A curve per band, as the model card says" in hint and "taken as" not in hint
    _choose(dialog, "l1c")  # the hint follows the combo at once
    hint = dialog.scaling_hint.text()
    assert "Sentinel-2 L1C (as chosen)" in hint and "dark is taken as L1C" in hint
    assert "set Product level to l2a" in hint and "--product" not in hint and "PRODUCT" not in hint
    _choose(dialog, "l2a")
    assert "taken as" not in dialog.scaling_hint.text() and "L2A (as chosen)" in dialog.scaling_hint.text()


# --- the layer source ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind", "expected"),
    [
        ("S2A_MSIL2A_20230603_x.tif", "middle", "l2a"),
        ("S2B_MSIL1C_20230603_x.tif", "dark", "l1c"),
        ("r.tif", "dark", "l2a"),
    ],
)
def test_qgis_and_rasterio_sources_tell_the_same_level(qgis_app, tmp_path, name, kind, expected):
    path = _scene_tif(tmp_path / name, kind)
    card = l2a_card()
    with RasterioSource(path) as source:
        cli = plan_radiometry(source, card)
    layer = QgsRasterLayer(str(path), path.stem)
    qgis = plan_radiometry(QgisLayerSource.from_layer(layer), card)
    assert qgis.product == cli.product == expected
    assert (qgis.scaling_note, qgis.warnings, qgis.curves) == (cli.scaling_note, cli.warnings, cli.curves)
    if expected == "l2a":
        dn = scene(kind)
        np.testing.assert_allclose(qgis.to_values(dn.astype(np.uint16)), curve_values(dn), atol=0.01)
    del layer


def test_qgis_source_reads_the_product_tag(qgis_app, tmp_path):
    from osgeo import gdal

    path = _scene_tif(tmp_path / "tagged.tif", "middle")
    dataset = gdal.Open(str(path), gdal.GA_Update)
    dataset.SetMetadataItem("PRODUCT_TYPE", "S2MSI2A")
    dataset = None
    layer = QgsRasterLayer(str(path), "tagged")
    plan = plan_radiometry(QgisLayerSource.from_layer(layer), l2a_card())
    assert plan.product == "l2a" and "PRODUCT_TYPE S2MSI2A in the metadata" in plan.scaling_note
    del layer
