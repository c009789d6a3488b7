"""Issue 29: a new run's layers are the only RS Ghost layers ticked, in an expanded group, with short names."""

from __future__ import annotations

from qgis.core import QgsRasterLayer

from tests.qgis.rasters import FOREST, WATER, two_halves, write_geotiff
from tests.qgis.test_task import _run_on


def _ticked(project) -> list[str]:
    return [node.name() for node in project.layerTreeRoot().findLayers() if node.isVisible()]


def test_a_run_unticks_overlapping_runs_of_other_rasters_and_keeps_the_users_layers(
    qgis_app, project, tmp_path, tiny_model
):
    first = QgsRasterLayer(str(write_geotiff(tmp_path / "a.tif", two_halves())), "first")
    second = QgsRasterLayer(str(write_geotiff(tmp_path / "b.tif", two_halves(left=WATER, right=FOREST))), "second")
    project.addMapLayers([first, second])
    _run_on(first, tiny_model, project, tmp_path / "one")
    assert "#1 tiles · 32 px" in _ticked(project)
    tiles, _classes = _run_on(second, tiny_model, project, tmp_path / "two").layers
    root = project.layerTreeRoot()
    first_group = root.findGroup("first · tiny")
    second_group = root.findGroup("second · tiny")
    assert not any(node.isVisible() for node in first_group.findLayers())  # no blending with the new run
    assert root.findLayer(tiles.id()).isVisible() and second_group.isExpanded()
    assert root.findLayer(first.id()).isVisible() and root.findLayer(second.id()).isVisible()  # the user's own
    far = QgsRasterLayer(str(write_geotiff(tmp_path / "far.tif", two_halves(), origin=(600000.0, 5800000.0))), "far")
    project.addMapLayer(far)
    far_tiles, _ = _run_on(far, tiny_model, project, tmp_path / "three").layers
    assert root.findLayer(tiles.id()).isVisible() and root.findLayer(far_tiles.id()).isVisible()  # apart: both shown
    assert all(len(node.name()) <= 25 for group in (first_group, second_group) for node in group.findLayers())


def test_the_group_of_the_bundled_model_leads_with_the_raster_and_fits_the_panel(qgis_app):
    from rs_ghost_qgis.qgis_io.options import bundled_model_or_none, model_name
    from rs_ghost_qgis.qgis_io.style import group_name

    name = group_name("Sentinel-2 Demmin 2023-06-03", model_name(bundled_model_or_none()))
    assert name == "Sentinel-2 Demmin 2023-06-03 · bundled model"  # was 70 characters, cut after 40
    assert group_name("Demmin", "my_adapted") == "Demmin · my_adapted"
