"""Issue 29: in one QGIS, the dialog's "Adapt to my polygons..." then the dialog's classify.

The raster is in Web Mercator, so every chip and tile is read through QGIS's reprojection
(the model's grid is in the local UTM zone). Adapting on the main thread after a classify broke
every later classify of the session, once the classify's worker thread ended, with "QGIS's
reprojection returned no pixels" (qgis_io/adapt_task.py says why).
"""

from __future__ import annotations

import time

import pytest
from osgeo import gdal
from qgis.core import QgsApplication, QgsCoordinateReferenceSystem, QgsRasterLayer, QgsSettings, QgsVectorLayer
from qgis.PyQt.QtCore import QThreadPool
from qgis.PyQt.QtTest import QTest

from rs_ghost_qgis.qgis_io.source import crs_to_wkt, whole_crs
from rs_ghost_qgis.ui.dialog import SETTINGS_PREFIX, ClassifyDialog
from tests.core.adapt_data import labelled_polygons, nir_scene, write_labels

THREAD_EXPIRY_MS = 4000  # longer than the adapt takes, so the first classify's thread outlives it


def _web_mercator(path, tmp_path):
    """The adapt scene warped to EPSG:3857 (a raster QGIS must reproject for the UTM grid)."""
    warped = gdal.Warp(str(path), str(nir_scene(tmp_path / "utm.tif")), dstSRS="EPSG:3857")
    warped = None  # noqa: F841 (closes the file)
    return path


def _wait(condition, timeout_s: float = 120.0) -> None:
    """Turn the event loop until ``condition()`` holds (tasks finish on the main thread)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        QTest.qWait(50)


@pytest.fixture()
def dialog(qgis_app, qgis_iface, project, qgis_processing):
    QgsSettings().remove(SETTINGS_PREFIX.rstrip("/"))
    widget = ClassifyDialog(qgis_iface)
    yield widget
    widget.shutdown()
    _wait(lambda: widget.task is None)
    widget.deleteLater()


def _adapt_in_dialog(dialog, labels, out):
    dialog.open_adapt()
    adapt = dialog.adapt_dialog
    adapt.layer_combo.setLayer(labels)
    adapt.field_combo.setField("landcover")
    adapt.out_file.setFilePath(str(out))
    adapt.run()
    _wait(lambda: adapt.adapt_button.isEnabled() and QgsApplication.taskManager().countActiveTasks() == 0)
    assert adapt.result is not None, adapt.message.text()
    adapt.close()


def _classify_in_dialog(dialog, folder):
    dialog.folder_widget.setFilePath(str(folder))
    dialog.start()
    assert dialog.task is not None, dialog.message.text()
    task = dialog.task
    _wait(lambda: dialog.task is None)
    return task


def test_dialog_adapt_then_dialog_classify_on_a_reprojected_raster(dialog, project, tmp_path, tiny_model):
    """The walk's session: classify, adapt in the dialog, the classify's worker thread ends, classify again."""
    pool = QThreadPool.globalInstance()
    expiry = pool.expiryTimeout()
    pool.setExpiryTimeout(THREAD_EXPIRY_MS)  # an idle task thread ends after this (QGIS: 30 s)
    try:
        raster = QgsRasterLayer(str(_web_mercator(tmp_path / "mercator.tif", tmp_path)), "mercator")
        assert raster.isValid()
        project.addMapLayer(raster)
        labels = QgsVectorLayer(str(write_labels(tmp_path / "labels.gpkg", labelled_polygons())), "labels", "ogr")
        project.addMapLayer(labels)
        dialog.select_layer(raster)
        dialog.file_radio.setChecked(True)
        dialog.model_file.setFilePath(str(tiny_model))
        first = _classify_in_dialog(dialog, tmp_path / "first")
        assert first.result is not None, first.error

        _adapt_in_dialog(dialog, labels, tmp_path / "mine.onnx")
        assert dialog.model_path() == str(tmp_path / "mine.onnx")
        QTest.qWait(THREAD_EXPIRY_MS + 2000)  # the first classify's thread ends
        for run, model in (("adapted", tmp_path / "mine.onnx"), ("base", tiny_model)):
            dialog.model_file.setFilePath(str(model))
            task = _classify_in_dialog(dialog, tmp_path / run)
            assert task.result is not None and not task.error, f"{run}: {task.error}"
            assert task.result.tiles_classified > 0
    finally:
        pool.setExpiryTimeout(expiry)


class _LostCrs:
    """A CRS as QGIS 3.22 leaves it when the worker thread that built it has ended: valid, no WKT."""

    def isValid(self):  # noqa: N802 (QGIS's name)
        return True

    def toWkt(self, *flavour):  # noqa: N802
        return ""

    def authid(self):
        return "EPSG:3857"


def test_a_crs_that_lost_its_definition_is_built_again_from_its_code(qgis_app):
    repaired = whole_crs(_LostCrs())
    assert repaired.authid() == "EPSG:3857" and "Pseudo-Mercator" in crs_to_wkt(repaired)
    assert "Pseudo-Mercator" in crs_to_wkt(_LostCrs())
    kept = QgsCoordinateReferenceSystem("EPSG:32633")
    assert whole_crs(kept) is kept
