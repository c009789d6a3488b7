"""Issue 30, output safety in Processing: assess and adapt write by the rule of core/outputs.py."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from qgis.core import QgsProcessingException, QgsVectorLayer

from tests.core.adapt_data import labelled_polygons, nir_scene, write_labels
from tests.qgis.rasters import two_halves, write_geotiff
from tests.qgis.test_processing import _classify, _polygons, _run

REFERENCE = [((500000, 5899360, 500640, 5900000), "forest"), ((500640, 5899360, 501280, 5900000), "Crop")]


@pytest.fixture()
def tiles(qgis_app, provider, tmp_path, tiny_model) -> str:
    raster = write_geotiff(tmp_path / "halves.tif", two_halves())
    return _classify(raster, tiny_model, tmp_path, OUTPUT_RASTER=None)["OUTPUT_VECTOR"]


def _assess(tiles: str, reference, report: Path) -> dict:
    parameters = {"INPUT": tiles, "REFERENCE": reference, "REFERENCE_FIELD": "class", "OUTPUT": str(report)}
    return _run("rsghost:assess", parameters)


def test_assess_on_a_read_only_file_system_is_one_line(tiles, tmp_path, monkeypatch):
    # rsghost:assess into a read-only folder crashed deleting its own temporary file: on a
    # read-only mount even unlinking a file that is not there fails (EROFS), as creating one does.
    reference = _polygons(tmp_path, REFERENCE)
    folder = tmp_path / "read_only"
    folder.mkdir()

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(Path, "write_text", read_only)
    monkeypatch.setattr(Path, "unlink", read_only)
    with pytest.raises(QgsProcessingException) as failure:
        _assess(tiles, reference, folder / "report.html")
    message = str(failure.value)
    assert f"Cannot write the report (OUTPUT) {folder / 'report.html'}: Read-only file system." in message, message
    assert len(message.splitlines()) == 1 and "Traceback" not in message
    assert list(folder.iterdir()) == []


def test_assess_never_writes_its_report_over_an_input(tiles, tmp_path):
    # Processing asks before it replaces a file, but a report that resolves to the tiles it
    # reads would destroy them whatever the answer.
    reference = _polygons(tmp_path, REFERENCE)
    before = Path(tiles).read_bytes()
    link = tmp_path / "report.html"
    link.symlink_to(tiles)
    with pytest.raises(QgsProcessingException) as failure:
        _assess(tiles, reference, link)
    message = str(failure.value)
    assert "is the same file as the classified tiles (INPUT)" in message, message
    assert "Choose another file name for the report (OUTPUT)" in message
    assert Path(tiles).read_bytes() == before and link.is_symlink()


def test_processing_adapt_never_writes_over_its_base_model(qgis_app, provider, project, tmp_path, tiny_model):
    # Processing hands over a destination it may replace (overwrite on): the base model is still never one.
    model = tmp_path / "model.onnx"
    model.write_bytes(tiny_model.read_bytes())
    labels = QgsVectorLayer(str(write_labels(tmp_path / "labels.gpkg", labelled_polygons())), "labels", "ogr")
    project.addMapLayer(labels)  # owned by the project, as in QGIS: a layer Python owns was freed twice at exit
    parameters = {"INPUT": str(nir_scene(tmp_path / "nir.tif")), "POLYGONS": labels, "CLASS_FIELD": "landcover"}
    with pytest.raises(QgsProcessingException) as failure:
        _run("rsghost:adapt", {**parameters, "MODEL": str(model), "OUTPUT": str(model)})
    message = str(failure.value)
    assert "is the same file as the base model (MODEL)" in message and "never replaces an input" in message, message
    assert model.read_bytes() == tiny_model.read_bytes()


def test_processing_classify_never_writes_over_its_mask(tiles, tmp_path, tiny_model):
    # A previous run's tiles as the MASK of the next, into the same OUTPUT_VECTOR: Processing replaced the mask.
    raster = tmp_path / "halves.tif"  # written by the tiles fixture
    before = Path(tiles).read_bytes()
    with pytest.raises(QgsProcessingException) as failure:
        _classify(raster, tiny_model, tmp_path, OUTPUT_RASTER=None, MASK=tiles, OUTPUT_VECTOR=tiles)
    message = str(failure.value)
    assert "The output (OUTPUT_VECTOR)" in message and "the same file as the mask (MASK)" in message, message
    assert Path(tiles).read_bytes() == before


def test_processing_classify_never_writes_over_its_raster(tiles, tmp_path, tiny_model):
    raster = tmp_path / "halves.tif"
    before = raster.read_bytes()
    link = tmp_path / "classes.tif"
    link.symlink_to(raster)
    with pytest.raises(QgsProcessingException) as failure:
        _classify(raster, tiny_model, tmp_path, OUTPUT_RASTER=str(link))
    assert "the same file as the raster (INPUT)" in str(failure.value) or "is the input raster" in str(failure.value)
    assert raster.read_bytes() == before
