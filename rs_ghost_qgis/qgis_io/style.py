"""Styling and grouping of result layers: the legend reads as land cover in the model's colours."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsFillSymbol,
    QgsLayerTreeGroup,
    QgsMapLayer,
    QgsPalettedRasterRenderer,
    QgsProject,
    QgsRasterLayer,
    QgsRendererCategory,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QColor

from ..core.modelcard import ModelCard

CLASS_FIELD = "class_name"
# Both outputs are semi-transparent so the imagery shows through whichever one is switched on.
TILE_OPACITY = 0.65
RASTER_OPACITY = 0.65
# Marks the layers RS Ghost added, so that "replace the previous run" never removes the user's own.
OUTPUT_PROPERTY = "rs_ghost_qgis/output"


def layer_names(raster_name: str, model_name: str, detail: str = "") -> tuple[str, str]:
    """Names of the polygon and the raster output: which raster, which model, what sets this run apart."""
    stem = " · ".join(part for part in (raster_name, model_name, detail) if part)
    return f"{stem} · tiles", f"{stem} · class raster"


def run_detail(stride_px: int, when: datetime | None = None) -> str:
    """What tells reruns apart in the layer tree: the stride and the time the run ended."""
    return f"stride {stride_px} px · {(when or datetime.now()):%H:%M:%S}"


def group_name(raster_name: str, model_name: str) -> str:
    """Name of the layer tree group holding one run's outputs."""
    return f"RS Ghost: {raster_name} ({model_name})"


def class_labels(card: ModelCard, areas: Sequence | None = None) -> list[str]:
    """Legend labels: class names, with hectares and percent for the classes the run found."""
    by_id = {row.class_id: row for row in areas or ()}
    labels = []
    for class_id, name in enumerate(card.class_names):
        row = by_id.get(class_id)
        labels.append(f"{name}  {row.hectares:,.1f} ha ({row.percent:.1f} %)" if row and row.found else name)
    return labels


def style_tiles(layer: QgsVectorLayer, card: ModelCard, areas: Sequence | None = None) -> None:
    """Categorized renderer on class_name with the card's colours; confidence in map tips."""
    categories = []
    for name, color, label in zip(card.class_names, card.class_colors, class_labels(card, areas)):
        # A thin light outline shows each tile as a tile without hiding the class colour.
        symbol = QgsFillSymbol.createSimple(
            {"color": color, "outline_color": "255,255,255,160", "outline_width": "0.15", "outline_width_unit": "MM"}
        )
        categories.append(QgsRendererCategory(name, symbol, label))
    layer.setRenderer(QgsCategorizedSymbolRenderer(CLASS_FIELD, categories))
    layer.setOpacity(TILE_OPACITY)
    if layer.fields().lookupField("confidence") >= 0:
        layer.setDisplayExpression(f"\"{CLASS_FIELD}\" || ' (' || round(\"confidence\" * 100) || ' %)'")
        layer.setMapTipTemplate('[% "class_name" %]: [% round("confidence" * 100) %] % confidence')
    layer.triggerRepaint()


def style_class_raster(layer: QgsRasterLayer, card: ModelCard, areas: Sequence | None = None) -> None:
    """Paletted renderer on band 1 (class id) with the card's colours; other values transparent."""
    classes = [
        QgsPalettedRasterRenderer.Class(class_id, QColor(color), label)
        for class_id, (color, label) in enumerate(zip(card.class_colors, class_labels(card, areas)))
    ]
    renderer = QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes)
    # Cells as crisp land-cover patches: nearest neighbour at every zoom, no smoothing of class ids.
    layer.resampleFilter().setZoomedInResampler(None)
    layer.resampleFilter().setZoomedOutResampler(None)
    layer.setRenderer(renderer)
    layer.setOpacity(RASTER_OPACITY)
    layer.triggerRepaint()


def add_to_group(
    project: QgsProject, layers: Sequence[QgsMapLayer], name: str, replace: bool = False
) -> QgsLayerTreeGroup:
    """Add one run's ``layers`` on top of its group, the group on top of its parent, expanded.

    With ``replace`` the group's earlier RS Ghost outputs leave the project first (their files
    stay on disk); other layers the user put in the group are kept.
    """
    group = _group_on_top(project.layerTreeRoot(), name)
    if replace:
        remove_outputs(project, group)
    for index, layer in enumerate(layers):
        layer.setCustomProperty(OUTPUT_PROPERTY, True)
        project.addMapLayer(layer, False)
        group.insertLayer(index, layer)  # newest first: a rerun is never hidden under older results
    group.setExpanded(True)
    return group


def show_in_legend(
    group: QgsLayerTreeGroup, tiles: QgsMapLayer | None, classes: QgsMapLayer | None, overlapping: bool = False
) -> None:
    """One readable default layer on, legend open (hectares, percent); the other off.

    Two opaque-ish layers stacked would hide the imagery and each other. Without overlap the
    tiles are shown (each square one decision, the class raster is one click away). With
    overlapping tiles (stride below the tile size) the squares pile up into a muddy mesh, so
    the class raster's averaged cells are shown instead, like a land-cover map. A layer alone
    is always shown.
    """
    show_tiles = tiles is not None and (classes is None or not overlapping)
    if tiles is not None:
        _legend_node(group, tiles, visible=show_tiles, expanded=show_tiles)
    if classes is not None:
        _legend_node(group, classes, visible=not show_tiles, expanded=not show_tiles)


def remove_outputs(project: QgsProject, group: QgsLayerTreeGroup) -> list[str]:
    """Remove the RS Ghost outputs in ``group`` from the project; the ids removed."""
    layers = [node.layer() for node in group.findLayers()]
    ids = [layer.id() for layer in layers if layer is not None and layer.customProperty(OUTPUT_PROPERTY)]
    project.removeMapLayers(ids)
    return ids


def _legend_node(group: QgsLayerTreeGroup, layer: QgsMapLayer, visible: bool, expanded: bool) -> None:
    node = group.findLayer(layer.id())
    if node is not None:
        node.setItemVisibilityChecked(visible)
        node.setExpanded(expanded)


def _group_on_top(root: QgsLayerTreeGroup, name: str) -> QgsLayerTreeGroup:
    """The group called ``name``, moved to the top of its parent; a new group at the top if none."""
    group = root.findGroup(name)
    if group is None:
        return root.insertGroup(0, name)
    parent = group.parent()
    if parent.children()[0] is group:
        return group
    # The tree has no "move": insert a copy first so its layers never leave the tree (and the project).
    moved = group.clone()
    parent.insertChildNode(0, moved)
    parent.removeChildNode(group)
    return moved
