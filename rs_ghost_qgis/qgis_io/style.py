"""Styling and grouping of result layers: the legend reads as land cover in the model's colours."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsFillSymbol,
    QgsLayerTree,
    QgsLayerTreeGroup,
    QgsLayerTreeNode,
    QgsLinePatternFillSymbolLayer,
    QgsMapLayer,
    QgsPalettedRasterRenderer,
    QgsProject,
    QgsProperty,
    QgsRasterLayer,
    QgsRendererCategory,
    QgsSymbolLayer,
    QgsUnitTypes,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QColor

from ..core.model.card import ModelCard
from .options import bundled_model_or_none

CLASS_FIELD = "class_name"
# Both outputs are semi-transparent so the imagery shows through whichever one is switched on.
TILE_OPACITY = 0.65
RASTER_OPACITY = 0.65
# Marks the layers RS Ghost added, so that "replace the previous run" never removes the user's own.
OUTPUT_PROPERTY = "rs_ghost_qgis/output"
# The run number of an output within its group: the previous run is the highest one there.
RUN_PROPERTY = "rs_ghost_qgis/run"
KIND_NAMES = {"tiles": "tiles", "raster": "class raster"}
# Doubtful tiles (core/classify/evidence.py: below the run's confidence threshold) are hatched over their
# class colour. The hatch's legend entry is a category of its own, on a class name no tile has.
DOUBT_FIELD = "doubtful"
DOUBT_CATEGORY = "<doubtful>"
# The map tip's words for a tile the water rule changed, or a doubtful one.
EVIDENCE_TIP = (
    '[% CASE WHEN "water_rule" = 1 THEN \' (the network said \' || "network_class" || \', but the tile has no '
    "water pixels)' ELSE '' END %][% CASE WHEN \"doubtful\" = 1 THEN '; doubtful' ELSE '' END %]"
)


@dataclass(frozen=True)
class Run:
    """One run of a model on a raster, numbered among the runs in its group: what names and tooltips say."""

    raster: str
    model: str
    number: int
    stride_px: int
    gsd_m: float
    when: datetime = field(default_factory=datetime.now)

    def layer_name(self, kind: str) -> str:
        """Short enough for the layer panel's default width: run number, kind of output, stride. The group
        above names the raster and the model, the tooltip (``details``) everything."""
        return f"#{self.number} {KIND_NAMES[kind]} · {self.stride_px} px"

    def details(self) -> str:
        """The layer's abstract (its tooltip in the layer panel): the full names, the time, the stride in metres."""
        return (
            f"Raster: {self.raster}\nModel: {self.model}\nRun {self.number}, finished {self.when:%Y-%m-%d %H:%M:%S}\n"
            f"Stride: {self.stride_px} model pixels = {self.stride_px * self.gsd_m:g} m on the ground"
        )


def group_name(raster_name: str, model_name: str) -> str:
    """Name of the layer tree group holding the runs of one model on one raster.

    The raster first and the model's short name after: the layer panel's default width shows
    about 40 characters of a group, and a prefix or a long file name would push the raster out.
    """
    bundled = bundled_model_or_none()
    return f"{raster_name} · {'bundled model' if bundled and model_name == bundled.stem else model_name}"


def next_run(project: QgsProject, raster_name: str, model_name: str, stride_px: int, gsd_m: float) -> Run:
    """The run after the last one in the group of ``raster_name`` and ``model_name`` (run 1 in a new group)."""
    group = project.layerTreeRoot().findGroup(group_name(raster_name, model_name))
    numbers = [_run_number(layer) for layer in outputs(group)] if group is not None else []
    return Run(raster_name, model_name, max(numbers, default=0) + 1, stride_px, gsd_m)


def class_labels(card: ModelCard, areas: Sequence | None = None) -> list[str]:
    """Legend labels: class names, with hectares and percent for the classes the run found."""
    by_id = {row.class_id: row for row in areas or ()}
    labels = []
    for class_id, name in enumerate(card.class_names):
        row = by_id.get(class_id)
        # The percent first: a narrow layer panel cuts the end of the line, and the hectares matter less.
        labels.append(f"{name}  {row.percent:.1f} % ({row.hectares:,.1f} ha)" if row and row.found else name)
    return labels


def style_tiles(layer: QgsVectorLayer, card: ModelCard, areas: Sequence | None = None, evidence=None) -> None:
    """Categorized renderer on class_name with the card's colours; confidence in map tips.

    Tiles marked doubtful are hatched, explained by the legend's last entry with their share
    (``evidence``: the run's core.classify.evidence.Evidence, when known).
    """
    doubt = layer.fields().lookupField(DOUBT_FIELD) >= 0
    categories = []
    for name, rgb, label in zip(card.class_names, card.class_rgb, class_labels(card, areas)):
        # A thin light outline shows each tile as a tile without hiding the class colour.
        outline = {"outline_color": "255,255,255,160", "outline_width": "0.15", "outline_width_unit": "MM"}
        symbol = QgsFillSymbol.createSimple({"color": ",".join(map(str, rgb)), **outline})
        if doubt:
            symbol.appendSymbolLayer(_doubt_hatch(only_doubtful=True))
        categories.append(QgsRendererCategory(name, symbol, label))
    if doubt:
        hatch = QgsFillSymbol.createSimple({"color": "0,0,0,0", "outline_color": "255,255,255,160"})
        hatch.appendSymbolLayer(_doubt_hatch(only_doubtful=False))
        categories.append(QgsRendererCategory(DOUBT_CATEGORY, hatch, doubt_label(evidence)))
    layer.setRenderer(QgsCategorizedSymbolRenderer(CLASS_FIELD, categories))
    layer.setOpacity(TILE_OPACITY)
    if layer.fields().lookupField("confidence") >= 0:
        layer.setDisplayExpression(f"\"{CLASS_FIELD}\" || ' (' || round(\"confidence\" * 100) || ' %)'")
        tip = '[% "class_name" %]: [% round("confidence" * 100) %] % confidence'
        layer.setMapTipTemplate(tip + (EVIDENCE_TIP if doubt else ""))
    layer.triggerRepaint()


def doubt_label(evidence=None) -> str:
    """The hatch's legend entry: what it marks, and how many tiles when the run is known."""
    if evidence is None:
        return "doubtful: below the run's confidence threshold"
    # Short: the legend sits two levels deep in the layer panel, and the share is what matters.
    share = f"{evidence.doubtful_share:.1%}"
    return f"doubtful {share}: below {evidence.threshold_text} ({evidence.tiles_doubtful:,} tiles)"


def _doubt_hatch(only_doubtful: bool) -> QgsLinePatternFillSymbolLayer:
    """Diagonal dark lines; ``only_doubtful``: drawn only on tiles whose doubtful field is 1."""
    hatch = QgsLinePatternFillSymbolLayer()
    hatch.setLineAngle(45)
    hatch.setDistance(1.6)
    hatch.setDistanceUnit(QgsUnitTypes.RenderMillimeters)
    hatch.setLineWidth(0.3)
    hatch.setColor(QColor(30, 30, 30, 200))
    if only_doubtful:
        enabled = QgsProperty.fromExpression(f'coalesce("{DOUBT_FIELD}", 0) = 1')
        hatch.setDataDefinedProperty(QgsSymbolLayer.PropertyLayerEnabled, enabled)
    return hatch


def style_class_raster(layer: QgsRasterLayer, card: ModelCard, areas: Sequence | None = None) -> None:
    """Paletted renderer on band 1 (class id) with the card's colours; other values transparent."""
    classes = [
        QgsPalettedRasterRenderer.Class(class_id, QColor(*rgb), label)
        for class_id, (rgb, label) in enumerate(zip(card.class_rgb, class_labels(card, areas)))
    ]
    renderer = QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes)
    # Cells as crisp land-cover patches: nearest neighbour at every zoom, no smoothing of class ids.
    layer.resampleFilter().setZoomedInResampler(None)
    layer.resampleFilter().setZoomedOutResampler(None)
    layer.setRenderer(renderer)
    layer.setOpacity(RASTER_OPACITY)
    layer.triggerRepaint()


def start_run(project: QgsProject, run: Run, replace: bool = False) -> QgsLayerTreeGroup:
    """The group of ``run`` on top of its parent, expanded, with the previous run unticked (or removed).

    Only the previous run (the highest run number in the group) is touched: two runs ticked at
    once blend into colours that match neither legend and hide the imagery. Older runs keep the
    visibility the user gave them, the user's own layers in the group are never touched, and
    ``replace`` removes the previous run from the project (its files stay on disk).
    """
    group = _group_on_top(project.layerTreeRoot(), group_name(run.raster, run.model))
    previous = _last_run(group)
    if replace:
        project.removeMapLayers([layer.id() for layer in previous])
    else:
        for layer in previous:
            group.findLayer(layer.id()).setItemVisibilityChecked(False)
    group.setExpanded(True)
    return group


def _untick_overlapping_runs(project: QgsProject, group: QgsLayerTreeGroup, shown: QgsMapLayer) -> None:
    """Untick the RS Ghost outputs of other rasters and models that overlap ``shown``: left ticked under
    it, their colours blend with the new run's into colours that no legend shows. Runs elsewhere on the
    map, and the user's own layers, are left as they are."""
    from qgis.core import QgsCoordinateTransform, QgsCsException

    crs = project.crs() if project.crs().isValid() else shown.crs()
    try:
        area = QgsCoordinateTransform(shown.crs(), crs, project).transformBoundingBox(shown.extent())
        for node in project.layerTreeRoot().findLayers():
            layer = node.layer()
            if layer is None or not layer.customProperty(OUTPUT_PROPERTY) or group.findLayer(layer.id()):
                continue
            other = QgsCoordinateTransform(layer.crs(), crs, project).transformBoundingBox(layer.extent())
            if other.intersects(area):
                node.setItemVisibilityChecked(False)
    except QgsCsException:  # an extent that cannot be carried over: leave the other runs as they are
        return


def add_output(project: QgsProject, group: QgsLayerTreeGroup, layer: QgsMapLayer, run: Run, kind: str, shown: bool):
    """Put ``layer``, the ``kind`` output of ``run``, on top of ``group``: named, described, ticked if ``shown``.

    The tiles go above the class raster of their run. A layer already in the project (a
    Processing output) is moved into the group.
    """
    layer.setName(run.layer_name(kind))
    layer.setAbstract(run.details())  # the layer panel's tooltip
    metadata = layer.metadata()
    metadata.setAbstract(run.details())  # Layer Properties > Metadata
    layer.setMetadata(metadata)
    layer.setCustomProperty(OUTPUT_PROPERTY, True)
    layer.setCustomProperty(RUN_PROPERTY, run.number)
    position = 0 if kind == "tiles" else len(_leading_run(group, run.number))
    node = project.layerTreeRoot().findLayer(layer.id())
    if node is None:
        project.addMapLayer(layer, False)
        node = group.insertLayer(position, layer)
    else:
        node = _move(node, group, position)
    node.setItemVisibilityChecked(shown)
    node.setExpanded(shown)  # the legend with hectares and percent, for the layer that is shown
    if shown:
        _untick_overlapping_runs(project, group, layer)
    # Collapsed, then expanded, now that the group holds the layer: the layer panel does not expand a
    # group that was empty when it was told to, and an unchanged node sends it no news.
    group.setExpanded(False)
    group.setExpanded(True)


def shown_output(tiles: bool, raster: bool, overlapping: bool) -> str:
    """Which output a run shows ("tiles" or "raster"); the other one stays unticked.

    Two opaque-ish layers stacked would hide the imagery and each other. Without overlap the
    tiles are shown (each square one decision, the class raster is one click away). With
    overlapping tiles (stride below the tile size) the squares pile up into a muddy mesh, so
    the class raster's averaged cells are shown instead, like a land-cover map. A layer alone
    is always shown.
    """
    return "tiles" if tiles and (not raster or not overlapping) else "raster"


def outputs(group: QgsLayerTreeGroup) -> list[QgsMapLayer]:
    """The RS Ghost outputs in ``group``, top to bottom."""
    layers = [node.layer() for node in group.findLayers()]
    return [layer for layer in layers if layer is not None and layer.customProperty(OUTPUT_PROPERTY)]


def _run_number(layer: QgsMapLayer) -> int:
    """The run number of an output; 0 for an output of a plugin version that did not number runs."""
    try:
        return int(layer.customProperty(RUN_PROPERTY, 0))
    except (TypeError, ValueError):
        return 0


def _last_run(group: QgsLayerTreeGroup) -> list[QgsMapLayer]:
    """The outputs of the highest-numbered run in ``group``."""
    found = outputs(group)
    last = max((_run_number(layer) for layer in found), default=None)
    return [layer for layer in found if _run_number(layer) == last]


def _leading_run(group: QgsLayerTreeGroup, number: int) -> list:
    """The nodes at the top of ``group`` that hold outputs of run ``number``."""
    leading = []
    for node in group.children():
        layer = node.layer() if QgsLayerTree.isLayer(node) else None
        if layer is None or not layer.customProperty(OUTPUT_PROPERTY) or _run_number(layer) != number:
            break
        leading.append(node)
    return leading


def _move(node: QgsLayerTreeNode, group: QgsLayerTreeGroup, position: int) -> QgsLayerTreeNode:
    """``node`` moved to ``position`` in ``group``; the tree has no move: insert a copy, then remove it."""
    moved = node.clone()
    group.insertChildNode(position, moved)
    node.parent().removeChildNode(node)
    return moved


def _group_on_top(root: QgsLayerTreeGroup, name: str) -> QgsLayerTreeGroup:
    """The group called ``name``, moved to the top of its parent; a new group at the top if none."""
    group = root.findGroup(name)
    if group is None:
        return root.insertGroup(0, name)
    parent = group.parent()
    if parent.children()[0] is group:
        return group
    # Inserting the copy first keeps its layers in the tree (and the project) all along.
    return _move(group, parent, 0)
