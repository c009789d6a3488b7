"""Turning an engine result into styled, grouped QGIS layers (main thread only)."""

from __future__ import annotations

from qgis.core import QgsProject, QgsRasterLayer, QgsVectorLayer

from ..core.errors import OutputError
from .style import add_to_group, group_name, layer_names, style_class_raster, style_tiles


def load_results(result, raster_name: str, model_name: str, project: QgsProject) -> list:
    """Open the run's outputs, style them with the model card, add them to a group; the layers."""
    tiles_name, raster_layer_name = layer_names(raster_name, model_name)
    layers = []
    if result.out_vector:
        tiles = QgsVectorLayer(str(result.out_vector), tiles_name, "ogr")
        if not tiles.isValid():
            raise OutputError(f"The polygon output {result.out_vector} was written but cannot be opened.")
        style_tiles(tiles, result.card, result.areas)
        layers.append(tiles)
    if result.out_raster:
        classes = QgsRasterLayer(str(result.out_raster), raster_layer_name, "gdal")
        if not classes.isValid():
            raise OutputError(f"The class raster {result.out_raster} was written but cannot be opened.")
        style_class_raster(classes, result.card, result.areas)
        layers.append(classes)
    if layers:
        add_to_group(project, layers, group_name(raster_name, model_name))
    return layers
