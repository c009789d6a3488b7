"""Issue 29: rsghost:assess names the model's classes as the model spells them, and says why the
reference polygons gave fewer samples than there are polygons."""

from __future__ import annotations

import pytest
from qgis.core import QgsProcessingContext, QgsProcessingException, QgsProcessingFeedback, QgsVectorLayer

from rs_ghost_qgis.core.model.runtime import load_model
from rs_ghost_qgis.qgis_io.style import style_tiles
from tests.qgis.rasters import two_halves, write_geotiff
from tests.qgis.test_processing import _classify, _polygons, _run


def _styled_tiles(tmp_path, tiny_model, project):
    raster = write_geotiff(tmp_path / "halves.tif", two_halves())
    path = _classify(raster, tiny_model, tmp_path, OUTPUT_RASTER=None)["OUTPUT_VECTOR"]
    layer = QgsVectorLayer(path, "tiles", "ogr")
    style_tiles(layer, load_model(tiny_model).card)  # as the dialog and Processing style them
    project.addMapLayer(layer)
    return layer


def test_unknown_reference_classes_are_listed_against_the_models_spelling(
    qgis_app, provider, project, tmp_path, tiny_model
):
    tiles = _styled_tiles(tmp_path, tiny_model, project)
    boxes = [((500000, 5899360, 500640, 5900000), "forest"), ((500640, 5899360, 501280, 5900000), "wheat")]
    parameters = {"INPUT": tiles, "REFERENCE": _polygons(tmp_path, boxes), "REFERENCE_FIELD": "class"}
    with pytest.raises(QgsProcessingException) as error:
        _run("rsghost:assess", {**parameters, "OUTPUT": str(tmp_path / "r.csv")})
    classes = str(error.value).split("The model's classes are ")[1].split(". Recode")[0].split(", ")
    assert sorted(classes) == sorted(load_model(tiny_model).card.class_names), classes  # one spelling, the card's


def test_the_log_says_why_polygons_gave_fewer_samples(qgis_app, provider, project, tmp_path, tiny_model):
    tiles = _styled_tiles(tmp_path, tiny_model, project)
    boxes = [
        ((500000, 5899360, 500640, 5900000), "forest"),  # a whole half: 4 tiles of 320 m
        ((500700, 5899700, 500800, 5899800), "water"),  # 100 m across: inside one tile, under half of it
        ((501000, 5899500, 501100, 5899600), "water"),
        ((500650, 5899400, 500750, 5899450), "water"),
        ((501200, 5899900, 501250, 5899950), "water"),
    ]
    feedback = QgsProcessingFeedback()
    infos = []
    feedback.pushInfo = infos.append
    parameters = {"INPUT": tiles, "REFERENCE": _polygons(tmp_path, boxes), "REFERENCE_FIELD": "class"}
    result = _run("rsghost:assess", {**parameters, "OUTPUT": str(tmp_path / "r.csv")}, QgsProcessingContext(), feedback)
    note = next(text for text in infos if "reference polygon(s) gave" in text)
    assert note.startswith(f"5 reference polygon(s) gave {result['SAMPLES']} sample(s)")
    assert "1 polygon(s) covered such a tile" in note and "MIN_COVERAGE" in note
