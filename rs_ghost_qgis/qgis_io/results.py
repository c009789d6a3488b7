"""Turning an engine result into styled, grouped QGIS layers (main thread only)."""

from __future__ import annotations

from qgis.core import QgsProject, QgsRasterLayer, QgsVectorLayer

from ..core.errors import OutputError
from .style import add_to_group, group_name, layer_names, show_in_legend, style_class_raster, style_tiles


def load_results(
    result, raster_name: str, model_name: str, project: QgsProject, detail: str = "", replace: bool = False
) -> list:
    """Open the run's outputs, style them with the model card, add them on top of a group; the layers.

    ``detail`` goes into the layer names (what sets this run apart from earlier ones); with
    ``replace`` the group's earlier RS Ghost outputs are removed from the project.
    """
    tiles_name, raster_layer_name = layer_names(raster_name, model_name, detail)
    tiles = classes = None
    if result.out_vector:
        tiles = QgsVectorLayer(str(result.out_vector), tiles_name, "ogr")
        if not tiles.isValid():
            raise OutputError(f"The polygon output {result.out_vector} was written but cannot be opened.")
        style_tiles(tiles, result.card, result.areas)
    if result.out_raster:
        classes = QgsRasterLayer(str(result.out_raster), raster_layer_name, "gdal")
        if not classes.isValid():
            raise OutputError(f"The class raster {result.out_raster} was written but cannot be opened.")
        style_class_raster(classes, result.card, result.areas)
    layers = [layer for layer in (tiles, classes) if layer is not None]
    if layers:
        group = add_to_group(project, layers, group_name(raster_name, model_name), replace)
        show_in_legend(group, tiles, classes, result.overlapping)
    return layers
