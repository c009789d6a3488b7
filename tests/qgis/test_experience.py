"""Issue 14, the QGIS experience: run size, dialog geometry, overlapping tiles, the area table, trust."""

from types import SimpleNamespace

import numpy as np
import pytest
from qgis.core import (
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsProcessingFeedback,
    QgsRasterLayer,
    QgsRectangle,
    QgsSettings,
)

from rs_ghost_qgis.core.classify.pipeline import ClassifyOptions
from rs_ghost_qgis.core.options import Area
from rs_ghost_qgis.processing.provider import RsGhostProvider
from rs_ghost_qgis.qgis_io.source import QgisLayerSource
from rs_ghost_qgis.qgis_io.task import ClassifyTask
from rs_ghost_qgis.ui.dialog import SETTINGS_PREFIX, ClassifyDialog
from tests.qgis.conftest import run_task
from tests.qgis.rasters import FOREST, WATER, tile_bounds_3857, two_halves, write_geotiff, write_xyz_tiles
from tests.qgis.test_dialog import _raster, _use_model, _wait

COLLAPSED_STATE = "QgsCollapsibleGroupBox/" + SETTINGS_PREFIX.rstrip("/")  # where the group box saves it
LAPTOP = (1366, 768)
LAPTOP_FREE_HEIGHT = 768 - 80  # title bar and task bar


@pytest.fixture()
def dialog(qgis_app, qgis_iface, project, qgis_processing):
    QgsSettings().remove(SETTINGS_PREFIX.rstrip("/"))
    QgsSettings().remove(COLLAPSED_STATE)
    widget = ClassifyDialog(qgis_iface)
    yield widget
    widget.shutdown()
    widget.hide()
    widget.deleteLater()


def _settle(widget):
    widget.show()
    for _ in range(3):  # the scroll area lays out its contents in a second pass
        QgsApplication.processEvents()


def _fully_visible(widget) -> bool:
    return widget.isVisible() and widget.visibleRegion().boundingRect().height() == widget.height()


def _xyz(tmp_path, project, url=None):
    zoom, x0, y0 = 14, 8192, 8191
    if url is None:
        folder = write_xyz_tiles(tmp_path / "xyz", zoom, x0, y0, [[FOREST, WATER]])
        url = f"file://{folder.as_posix()}/{{z}}/{{x}}/{{y}}.png"
    layer = QgsRasterLayer(f"type=xyz&url={url}&zmin={zoom}&zmax={zoom}", "web tiles", "wms")
    project.addMapLayer(layer)
    return layer, tile_bounds_3857(zoom, x0, y0)


# --- 1. run size --------------------------------------------------------------------------------
def test_web_layer_at_the_world_view_is_refused_with_the_reason(dialog, tmp_path, project, tiny_model, qgis_iface):
    layer, _ = _xyz(tmp_path, project)
    dialog.select_layer(layer)
    _use_model(dialog, tiny_model)
    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3857"))
    half = 20037508.34
    canvas.setExtent(QgsRectangle(-half, -half, half, half))  # the view right after adding an XYZ layer
    dialog.area_combo.setCurrentIndex(dialog.area_combo.findData("canvas"))
    dialog.confirm_workload = lambda size: pytest.fail(f"asked to confirm a planet-sized web job: {size}")
    dialog.start()
    assert dialog.task is None, "a planet-sized web job was started"
    text = dialog.message.text()
    assert "web layer" in text and "2,500 km²" in text and "tiles" in text, text
    assert "Current map extent" in text and "GeoTIFF" in text


def test_a_long_run_is_estimated_and_asked_first(dialog, tmp_path, project, tiny_model):
    big = np.zeros((3, 1536, 1536), dtype=np.uint8)
    big[1] = 150
    layer = QgsRasterLayer(str(write_geotiff(tmp_path / "big.tif", big)), "big")
    project.addMapLayer(layer)
    dialog.select_layer(layer)
    _use_model(dialog, tiny_model)
    dialog.stride_spin.setValue(8)  # 48 x 48 cells of 4 x 4 tiles: (48 + 3)^2 = 2,601... per cell row
    dialog.folder_widget.setFilePath(str(tmp_path / "out"))
    asked = []
    dialog.confirm_workload = lambda size: asked.append(size) or False
    dialog.start()
    assert dialog.task is None and "Not started" in dialog.message.text()
    (size,) = asked
    assert size.tiles == (192 + 3) ** 2  # 192 x 192 cells of 8 px, tiles 4 x 4 cells
    assert size.tiles_per_s == 20.0 and "no measured speed" in size.describe()  # the tiny card has none


def test_unreachable_web_tiles_are_named_not_blamed_on_nodata(qgis_app, project, tmp_path, tiny_model):
    layer, (xmin, ymin, xmax, ymax) = _xyz(
        tmp_path, project, url=f"file://{tmp_path.as_posix()}/gone/{{z}}/{{x}}/{{y}}.png"
    )
    area = Area(bounds=(xmin, ymin, xmax, ymax), crs_wkt=QgsCoordinateReferenceSystem("EPSG:3857").toWkt())
    options = ClassifyOptions(model_path=str(tiny_model), area=area, out_vector=str(tmp_path / "t.gpkg"))
    task = run_task(ClassifyTask(QgisLayerSource.from_layer(layer, project), options, "tiny", project))
    assert "could not be fetched" in task.error and "web layer 'web tiles'" in task.error, task.error
    assert "valid pixels" not in task.error


# --- 2. dialog geometry -------------------------------------------------------------------------
def test_dialog_fits_a_laptop_screen_with_the_essentials_and_run_in_view(dialog, tmp_path, project, tiny_model):
    dialog.select_layer(_raster(tmp_path, project))
    _use_model(dialog, tiny_model)
    _settle(dialog)
    minimum = dialog.minimumSizeHint()
    assert minimum.width() <= LAPTOP[0] and minimum.height() <= LAPTOP_FREE_HEIGHT, minimum
    assert dialog.width() <= LAPTOP[0] and dialog.height() <= LAPTOP_FREE_HEIGHT, dialog.size()
    assert dialog.advanced_box.isCollapsed(), "the advanced options start collapsed"
    for widget in (dialog.layer_combo, dialog.area_combo, dialog.bands_edit, dialog.polygons_check):
        assert _fully_visible(widget), (widget, widget.mapTo(dialog, widget.rect().topLeft()), dialog.size())
    assert _fully_visible(dialog.folder_widget), "Folder is below the fold"
    assert _fully_visible(dialog.run_button)
    dialog.resize(minimum)
    QgsApplication.processEvents()
    assert _fully_visible(dialog.run_button), "Run is not visible at the minimum size"


def test_geometry_stays_through_a_run_and_is_remembered(dialog, tmp_path, project, tiny_model):
    dialog.select_layer(_raster(tmp_path, project))
    _use_model(dialog, tiny_model)
    dialog.folder_widget.setFilePath(str(tmp_path / "out"))
    _settle(dialog)
    dialog.resize(760, 650)
    QgsApplication.processEvents()
    before, run_at = dialog.size(), dialog.run_button.mapTo(dialog, dialog.run_button.rect().topLeft())
    dialog.start()
    _wait(dialog)
    QgsApplication.processEvents()
    assert dialog.message.text().startswith("Done:") and not dialog.summary.isHidden()
    assert dialog.size() == before, "the dialog resized after the run"
    assert dialog.run_button.mapTo(dialog, dialog.run_button.rect().topLeft()) == run_at, "Run moved"
    dialog.advanced_box.setCollapsed(False)
    dialog.close()
    again = ClassifyDialog(dialog.iface)
    _settle(again)
    assert (again.width(), again.height()) == (760, 650)
    assert not again.advanced_box.isCollapsed(), "the advanced group forgot that it was open"
    again.hide()
    again.deleteLater()


# --- 3. overlapping tiles -----------------------------------------------------------------------
def _task(tmp_path, project, tiny_model, data, name="r", nodata=None, **options):
    layer = QgsRasterLayer(str(write_geotiff(tmp_path / f"{name}.tif", data, nodata=nodata)), name)
    project.addMapLayer(layer)
    defaults = {"out_vector": str(tmp_path / f"{name}.gpkg"), "out_raster": str(tmp_path / f"{name}.tif.out.tif")}
    options = ClassifyOptions(model_path=str(tiny_model), **{**defaults, **options})
    task = run_task(ClassifyTask(QgisLayerSource.from_layer(layer, project), options, "tiny", project))
    assert task.error == "", task.error
    return task


def test_overlapping_stride_shows_the_averaged_cells_not_the_mesh(qgis_app, project, tmp_path, tiny_model):
    task = _task(tmp_path, project, tiny_model, two_halves(), stride=16)
    tiles, classes = task.layers
    group = project.layerTreeRoot().children()[0]
    tiles_node, classes_node = group.findLayer(tiles.id()), group.findLayer(classes.id())
    assert classes_node.itemVisibilityChecked() and classes_node.isExpanded()
    assert not tiles_node.itemVisibilityChecked(), "the overlapping squares hide the map"
    assert "ha" in classes.renderer().classes()[1].label  # the legend reads as land cover
    assert classes.resampleFilter().zoomedInResampler() is None  # crisp cells, no smoothing


# --- 4. the area table --------------------------------------------------------------------------
def test_area_table_tells_outside_nodata_and_too_few_valid_apart(qgis_app, project, tmp_path, tiny_model):
    # 100 x 60 px at 10 m, tiles of 32 px: columns 0..3, rows 0..1. Column 0 is nodata, column 1
    # three quarters nodata, column 2 forest, column 3 mostly beyond the raster's edge.
    data = two_halves(60, 100, left=FOREST, right=FOREST)
    data[:, :, :56] = 0
    task = _task(tmp_path, project, tiny_model, data, nodata=0)
    result = task.result
    assert (result.tiles_outside, result.tiles_no_data, result.tiles_few_valid) == (2, 2, 2)
    line = "not classified: 6 of 8 tiles: 2 mostly outside the raster, 2 nodata, 2 below 50% valid pixels"
    assert line in result.summary_table()


def test_edge_tiles_of_a_raster_without_nodata_are_outside_not_nodata(qgis_app, project, tmp_path, tiny_model):
    task = _task(tmp_path, project, tiny_model, two_halves(60, 100), stride=16)
    result = task.result
    assert result.tiles_nodata > 0 and result.tiles_nodata == result.tiles_outside
    assert result.tiles_no_data == 0 and result.tiles_few_valid == 0
    table = result.summary_table()
    assert "cells" in table.splitlines()[0]  # overlapping tiles: the cells the hectares count
    for row in result.areas:
        assert (row.cells > 0) == (row.hectares > 0), row


def test_processing_log_keeps_the_table_aligned(qgis_app, qgis_processing, tmp_path, tiny_model):
    import processing

    registry = QgsApplication.processingRegistry()
    provider = RsGhostProvider()
    registry.addProvider(provider)

    class Capture(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.commands, self.infos = [], []

        def pushCommandInfo(self, info):  # noqa: N802 (QGIS API)
            self.commands.append(info)

        def pushInfo(self, info):  # noqa: N802 (QGIS API)
            self.infos.append(info)

    feedback = Capture()
    raster = write_geotiff(tmp_path / "halves.tif", two_halves())
    try:
        parameters = {"INPUT": str(raster), "MODEL": str(tiny_model), "OUTPUT_VECTOR": str(tmp_path / "t.gpkg")}
        processing.run("rsghost:classify", parameters, feedback=feedback)
    finally:
        registry.removeProvider(provider)
    tables = [text for text in feedback.commands if "hectares" in text]
    assert tables, feedback.commands
    lines = tables[0].splitlines()
    assert " " not in tables[0], "plain spaces collapse in the log's HTML"
    table = lines[: next(i for i, line in enumerate(lines) if line.startswith("total")) + 1]
    widths = {len(line) for line in table}  # class rows and total share the columns; notes follow
    assert len(widths) == 1, lines
    assert any(text.startswith("Size: about 8 tiles") for text in feedback.infos), feedback.infos


# --- 5. trust -----------------------------------------------------------------------------------
def test_model_panel_gives_the_status_and_what_the_accuracy_was_measured_on(dialog):
    dialog.bundled_radio.setChecked(True)
    text, notes = dialog.model_info.text(), dialog.model_info.toolTip()
    # The trainer's notes in the tooltip; the panel in plain words, without the trainer's jargon.
    assert "CPU recipe" in notes and "below the paper's 98.5% target" in notes, notes
    assert "trainer's notes on this model are in the tooltip" in text, text
    assert "Interim model." not in text, "the bundled model is not marked interim"
    assert "measured on the validation split (validation.csv), 5,400 images of eurosat_rgb" in text, text
    assert "of the images classified right" in text and "at worst with the brightness, haze or colours shifted" in text
    for jargon in ("top-1", "robust", "DKD", "soft labels", "AdamW", "beta"):
        assert jargon not in text, (jargon, text)


def test_model_panel_shows_an_interim_model_in_the_warning_colour():
    from rs_ghost_qgis.ui.dialog import _status_html

    card = SimpleNamespace(status="INTERIM: 6 epochs only", interim=True)
    assert _status_html(card).startswith('<span style="color:#b35900;"><b>Interim model.</b>'), _status_html(card)
    assert "6 epochs" not in _status_html(card), "the trainer's notes belong in the tooltip"


def test_assess_refuses_reference_classes_the_model_does_not_have(qgis_app, qgis_processing, tmp_path, tiny_model):
    import processing
    from qgis.core import QgsProcessingException

    from tests.qgis.test_processing import _polygons

    registry = QgsApplication.processingRegistry()
    provider = RsGhostProvider()
    registry.addProvider(provider)
    try:
        raster = write_geotiff(tmp_path / "halves.tif", two_halves())
        parameters = {"INPUT": str(raster), "MODEL": str(tiny_model), "OUTPUT_VECTOR": str(tmp_path / "t.gpkg")}
        tiles = processing.run("rsghost:classify", parameters)["OUTPUT_VECTOR"]
        boxes = [((500000, 5899360, 500640, 5900000), "forest"), ((500640, 5899360, 501280, 5900000), "wheat")]
        reference = _polygons(tmp_path, boxes)
        report = {"INPUT": tiles, "REFERENCE": reference, "REFERENCE_FIELD": "class", "OUTPUT": str(tmp_path / "r.csv")}
        with pytest.raises(QgsProcessingException) as error:
            processing.run("rsghost:assess", report)
    finally:
        registry.removeProvider(provider)
    message = str(error.value)
    unknown, classes = message.split("The model's classes are ")
    assert unknown.endswith("does not have: wheat. "), "a class differing in case only is the model's"
    assert all(name.lower() in classes.lower() for name in ("Water", "Forest", "Crop")), message
    assert not (tmp_path / "r.csv").exists()
