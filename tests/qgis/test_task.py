"""The classification task on real rasters: layers, fields, CRS, renderers, grouping, cancel."""

import re
import time

import numpy as np
from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsPalettedRasterRenderer,
    QgsRasterLayer,
    QgsTask,
    QgsVectorLayer,
)

from rs_ghost_qgis.core.classify.pipeline import ClassifyOptions
from rs_ghost_qgis.core.options import Area
from rs_ghost_qgis.qgis_io.source import QgisLayerSource
from rs_ghost_qgis.qgis_io.style import DOUBT_CATEGORY
from rs_ghost_qgis.qgis_io.task import ClassifyTask
from tests.qgis.conftest import run_task
from tests.qgis.rasters import two_halves, write_geotiff
from tests.tiny_model import TINY_CLASSES


def _task(tmp_path, tiny_model, project, **options):
    path = write_geotiff(tmp_path / "halves.tif", two_halves())
    layer = QgsRasterLayer(str(path), "halves")
    project.addMapLayer(layer)
    defaults = dict(
        model_path=str(tiny_model),
        area=Area(),
        out_vector=str(tmp_path / "out" / "tiles.gpkg"),
        out_raster=str(tmp_path / "out" / "classes.tif"),
    )
    defaults.update(options)
    return ClassifyTask(QgisLayerSource.from_layer(layer, project), ClassifyOptions(**defaults), "tiny", project)


def test_task_adds_styled_grouped_layers(qgis_app, project, tmp_path, tiny_model):
    task = run_task(_task(tmp_path, tiny_model, project))
    assert task.error == ""
    tiles, classes = task.layers
    assert isinstance(tiles, QgsVectorLayer) and isinstance(classes, QgsRasterLayer)
    # 1280 x 640 m at 320 m tiles: 4 x 2 tiles; the left half forest, the right half water.
    assert tiles.featureCount() == 8
    names = tiles.fields().names()
    for field in ("class_id", "class_name", "confidence"):
        assert field in names
    counts = {}
    for feature in tiles.getFeatures():
        counts[feature["class_name"]] = counts.get(feature["class_name"], 0) + 1
        assert 0.0 < feature["confidence"] <= 1.0
    assert counts == {"Forest": 4, "Water": 4}
    assert tiles.crs().authid() == "EPSG:32633" and classes.crs().authid() == "EPSG:32633"
    renderer = tiles.renderer()
    assert isinstance(renderer, QgsCategorizedSymbolRenderer) and renderer.classAttribute() == "class_name"
    assert [c.value() for c in renderer.categories()] == TINY_CLASSES + [DOUBT_CATEGORY]  # the hatch's legend
    assert renderer.categories()[0].symbol().color().name() == "#1f78b4"
    assert "Forest" in renderer.categories()[1].label() and "ha" in renderer.categories()[1].label()
    palette = classes.renderer()
    assert isinstance(palette, QgsPalettedRasterRenderer)
    assert [(c.value, c.color.name()) for c in palette.classes()] == [
        (0, "#1f78b4"),
        (1, "#33a02c"),
        (2, "#ffff99"),
    ]
    # Short names (raster, run, stride, output); the model and the time in the tooltip (abstract).
    assert (tiles.name(), classes.name()) == (
        "#1 tiles · 32 px",
        "#1 class raster · 32 px",
    )
    assert "Model: tiny" in tiles.abstract() and "32 model pixels = 320 m" in tiles.abstract()
    assert tiles.metadata().abstract() == tiles.abstract()
    group = project.layerTreeRoot().children()[0]
    assert group.name() == "halves · tiny"
    assert {child.layerId() for child in group.children()} == {tiles.id(), classes.id()}
    assert [row.class_name for row in task.result.areas if row.tiles] == ["Water", "Forest"]


def test_task_error_is_a_message(qgis_app, project, tmp_path, tiny_model):
    task = run_task(_task(tmp_path, tiny_model, project, area=Area(bounds=(0, 0, 10, 10))))
    assert task.result is None and task.layers == []
    assert "does not overlap" in task.error
    assert "Traceback" not in task.error
    assert _leftovers(tmp_path) == []


def test_cancel_queued_task_leaves_nothing(qgis_app, project, tmp_path, tiny_model):
    task = _task(tmp_path, tiny_model, project)
    task.hold()  # queued but not started, whatever the thread pool does
    run_task(task, on_start=lambda t: t.cancel())
    assert task.result is None and task.layers == []
    assert "Cancelled" in task.error
    assert _leftovers(tmp_path) == []
    assert len(project.mapLayers()) == 1  # only the input


def test_cancel_while_running_stops_within_a_second(qgis_app, project, tmp_path, tiny_model):
    big = np.zeros((3, 1536, 1536), dtype=np.uint8)
    big[1] = 150  # green: forest everywhere, 48 x 48 tiles
    path = write_geotiff(tmp_path / "big.tif", big)
    layer = QgsRasterLayer(str(path), "big")
    project.addMapLayer(layer)
    options = ClassifyOptions(
        model_path=str(tiny_model),
        stride=8,  # 4 x 4 overlapping tiles per cell: plenty of work to cancel
        out_vector=str(tmp_path / "out" / "tiles.gpkg"),
        out_raster=str(tmp_path / "out" / "classes.tif"),
    )
    task = ClassifyTask(QgisLayerSource.from_layer(layer, project), options, "tiny", project)
    asked = []

    def cancel_once(value):
        if not asked and value > 0:
            asked.append(time.perf_counter())
            task.cancel()

    task.progressChanged.connect(cancel_once)
    run_task(task)
    stopped = time.perf_counter()
    assert asked, "the task finished before any progress was reported"
    assert task.result is None and "Cancelled" in task.error
    assert stopped - asked[0] < 1.5
    # QGIS announces terminated tasks as "Task failed": a cancel ends as complete, and says so.
    assert task.cancelled and task.status() == QgsTask.Complete
    assert task.description() == "Cancelled: RS Ghost stopped classifying big; nothing was written"
    assert _leftovers(tmp_path) == []


def _leftovers(tmp_path):
    out = tmp_path / "out"
    return sorted(p.name for p in out.iterdir()) if out.exists() else []


def _run_on(layer, tiny_model, project, out, replace=False, **options):
    """One task run on ``layer`` writing into the folder ``out``; the finished task."""
    options = {"out_vector": str(out / "tiles.gpkg"), "out_raster": str(out / "c.tif"), **options}
    options = ClassifyOptions(model_path=str(tiny_model), **options)
    source = QgisLayerSource.from_layer(layer, project)
    extra = {"replace": True} if replace else {}  # the default must be the old behaviour: keep earlier runs
    task = run_task(ClassifyTask(source, options, "tiny", project, **extra))
    assert task.error == "", task.error
    return task


def _halves(tmp_path, project):
    layer = QgsRasterLayer(str(write_geotiff(tmp_path / "halves.tif", two_halves())), "halves")
    project.addMapLayer(layer)
    return layer


def test_rerun_goes_on_top_with_names_that_tell_runs_apart(qgis_app, project, tmp_path, tiny_model):
    layer = _halves(tmp_path, project)
    first = _run_on(layer, tiny_model, project, tmp_path / "a")
    root = project.layerTreeRoot()
    root.insertGroup(0, "my imagery")  # the user's own group above the results
    second = _run_on(layer, tiny_model, project, tmp_path / "b", stride=16)
    group = root.children()[0]
    assert group.name() == "halves · tiny", "the group of the newest run is not on top"
    assert [child.layerId() for child in group.children()] == [lyr.id() for lyr in second.layers + first.layers]
    assert {lyr.id() for lyr in first.layers + second.layers} <= set(project.mapLayers())  # moving kept them
    first_tiles, second_tiles = first.layers[0].name(), second.layers[0].name()
    assert first_tiles == "#1 tiles · 32 px" and second_tiles == "#2 tiles · 16 px"
    for tiles in (first.layers[0], second.layers[0]):
        assert "Model: tiny" in tiles.abstract() and re.search(r"\d\d:\d\d:\d\d", tiles.abstract())
    assert "16 model pixels = 160 m" in second.layers[0].abstract()
    names = [lyr.name() for lyr in first.layers + second.layers]
    assert len(set(names)) == 4, names


def _ticked(project, layers) -> list[bool]:
    return [project.layerTreeRoot().findLayer(lyr.id()).itemVisibilityChecked() for lyr in layers]


def test_replace_removes_only_the_previous_run(qgis_app, project, tmp_path, tiny_model):
    layer = _halves(tmp_path, project)
    first = _run_on(layer, tiny_model, project, tmp_path / "a")
    group = project.layerTreeRoot().children()[0]
    mine = QgsVectorLayer("Polygon?crs=EPSG:32633", "my notes", "memory")
    project.addMapLayer(mine, False)
    group.addLayer(mine)
    second = _run_on(layer, tiny_model, project, tmp_path / "b", stride=16)
    second_ids = [lyr.id() for lyr in second.layers]
    third = _run_on(layer, tiny_model, project, tmp_path / "c", replace=True)
    assert not set(second_ids) & set(project.mapLayers()), "the previous run's layers are still there"
    assert {lyr.id() for lyr in first.layers} <= set(project.mapLayers()), "an older run was removed too"
    assert mine.id() in project.mapLayers() and layer.id() in project.mapLayers()
    group = project.layerTreeRoot().children()[0]
    expected = [lyr.id() for lyr in third.layers + first.layers] + [mine.id()]
    assert [child.layerId() for child in group.children()] == expected
    assert third.layers[0].name() == "#3 tiles · 32 px"  # numbers are never reused
    assert (tmp_path / "b" / "tiles.gpkg").is_file()  # files stay on disk


def test_a_rerun_unticks_only_the_previous_run_of_its_raster_and_model(qgis_app, project, tmp_path, tiny_model):
    layer = _halves(tmp_path, project)
    other = QgsRasterLayer(str(write_geotiff(tmp_path / "other.tif", two_halves())), "other")
    project.addMapLayer(other)
    first = _run_on(layer, tiny_model, project, tmp_path / "a")
    elsewhere = _run_on(other, tiny_model, project, tmp_path / "o")
    second = _run_on(layer, tiny_model, project, tmp_path / "b", stride=16)
    # Stride 16 overlaps: the class raster is shown, the tiles' mesh is not; run 1 no longer blends in.
    assert _ticked(project, second.layers) == [False, True]
    assert _ticked(project, first.layers) == [False, False]
    # The other raster lies under this one: its run would blend in too (issue 29), so it is unticked.
    assert _ticked(project, elsewhere.layers) == [False, False], "another raster's run still blends in"
    root = project.layerTreeRoot()
    assert [group.name() for group in root.children()[:2]] == ["halves · tiny", "other · tiny"]
    assert all(group.isExpanded() for group in root.children()[:2])
    # A layer of an older run that the user ticks again stays ticked: only the previous run is unticked.
    root.findLayer(first.layers[0].id()).setItemVisibilityChecked(True)
    third = _run_on(layer, tiny_model, project, tmp_path / "c")
    assert _ticked(project, third.layers) == [True, False]
    assert _ticked(project, second.layers) == [False, False]
    assert _ticked(project, first.layers) == [True, False]


def test_layer_names_fit_the_panel_and_the_tooltip_has_the_details(qgis_app, project, tmp_path, tiny_model):
    from qgis.core import QgsLayerTreeModel
    from qgis.PyQt.QtCore import Qt

    name = "sentinel2_demmin_germany_20230603"
    layer = QgsRasterLayer(str(write_geotiff(tmp_path / "long.tif", two_halves())), name)
    project.addMapLayer(layer)
    tiles, classes = _run_on(layer, tiny_model, project, tmp_path / "a").layers
    assert tiles.name() == "#1 tiles · 32 px"
    assert project.layerTreeRoot().children()[0].name() == f"{name} · tiny"
    model = QgsLayerTreeModel(project.layerTreeRoot())
    tooltip = model.data(model.node2index(project.layerTreeRoot().findLayer(classes.id())), Qt.ToolTipRole)
    for expected in (f"Raster: {name}", "Model: tiny", "Run 1, finished", "32 model pixels = 320 m"):
        assert expected in tooltip, tooltip


def test_legend_default_shows_imagery_and_areas(qgis_app, project, tmp_path, tiny_model):
    layer = _halves(tmp_path, project)
    tiles, classes = _run_on(layer, tiny_model, project, tmp_path / "a").layers
    group = project.layerTreeRoot().children()[0]
    assert group.isExpanded()
    tiles_node, classes_node = group.findLayer(tiles.id()), group.findLayer(classes.id())
    assert group.children().index(tiles_node) < group.children().index(classes_node)
    assert tiles_node.itemVisibilityChecked() and tiles_node.isExpanded()
    assert not classes_node.itemVisibilityChecked(), "the class raster hides the tiles' imagery view"
    assert 0 < tiles.opacity() < 1 and 0 < classes.opacity() < 1
    # Alone, the class raster is what the user asked for: shown.
    alone = _run_on(layer, tiny_model, project, tmp_path / "b", out_vector=None)
    node = project.layerTreeRoot().children()[0].findLayer(alone.layers[0].id())
    assert node.itemVisibilityChecked() and node.isExpanded()
