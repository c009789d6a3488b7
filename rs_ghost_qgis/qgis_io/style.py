"""Styling and grouping of result layers: the legend reads as land cover in the model's colours."""

from __future__ import annotations

from collections.abc import Sequence

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
TILE_OPACITY = 0.65  # the imagery stays visible under the tiles


def layer_names(raster_name: str, model_name: str) -> tuple[str, str]:
    """Names of the polygon and the raster output: which raster, which model."""
    return f"{raster_name} · {model_name} · tiles", f"{raster_name} · {model_name} · class raster"


def group_name(raster_name: str, model_name: str) -> str:
    """Name of the layer tree group holding one run's outputs."""
    return f"RS Ghost: {raster_name} ({model_name})"


def class_labels(card: ModelCard, areas: Sequence | None = None) -> list[str]:
    """Legend labels: class names, with hectares and percent for the classes the run found."""
    by_id = {row.class_id: row for row in areas or ()}
    labels = []
    for class_id, name in enumerate(card.class_names):
        row = by_id.get(class_id)
        labels.append(f"{name}  {row.hectares:,.1f} ha ({row.percent:.1f} %)" if row and row.tiles else name)
    return labels


def style_tiles(layer: QgsVectorLayer, card: ModelCard, areas: Sequence | None = None) -> None:
    """Categorized renderer on class_name with the card's colours; confidence in map tips."""
    categories = []
    for name, color, label in zip(card.class_names, card.class_colors, class_labels(card, areas), strict=True):
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
        for class_id, (color, label) in enumerate(zip(card.class_colors, class_labels(card, areas), strict=True))
    ]
    layer.setRenderer(QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes))
    layer.triggerRepaint()


def add_to_group(project: QgsProject, layers: Sequence[QgsMapLayer], name: str) -> QgsLayerTreeGroup:
    """Add ``layers`` to the project inside a group at the top of the layer tree."""
    root = project.layerTreeRoot()
    group = root.findGroup(name) or root.insertGroup(0, name)
    for layer in layers:
        project.addMapLayer(layer, False)
        group.addLayer(layer)
    return group
