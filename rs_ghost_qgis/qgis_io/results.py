"""Turning an engine result into styled, grouped QGIS layers (main thread only)."""

from __future__ import annotations

from qgis.core import QgsProject, QgsRasterLayer, QgsVectorLayer

from ..core.errors import OutputError
from .style import add_output, next_run, shown_output, start_run, style_class_raster, style_tiles


def load_results(
    result, raster_name: str, model_name: str, project: QgsProject, stride_px: int, replace: bool = False
) -> list:
    """Open the run's outputs, style them with the model card, add them on top of their group; the layers.

    The run is numbered after the earlier runs of the same raster and model; the previous one
    is unticked, or with ``replace`` removed from the project.
    """
    layers = {}
    if result.out_vector:
        layers["tiles"] = QgsVectorLayer(str(result.out_vector), "tiles", "ogr")
        if not layers["tiles"].isValid():
            raise OutputError(f"The polygon output {result.out_vector} was written but cannot be opened.")
        style_tiles(layers["tiles"], result.card, result.areas, result.evidence)
    if result.out_raster:
        layers["raster"] = QgsRasterLayer(str(result.out_raster), "class raster", "gdal")
        if not layers["raster"].isValid():
            raise OutputError(f"The class raster {result.out_raster} was written but cannot be opened.")
        style_class_raster(layers["raster"], result.card, result.areas)
    if layers:
        run = next_run(project, raster_name, model_name, stride_px, result.card.gsd_m)
        group = start_run(project, run, replace)
        shown = shown_output("tiles" in layers, "raster" in layers, result.overlapping)
        for kind, layer in layers.items():
            add_output(project, group, layer, run, kind, shown=kind == shown)
    return list(layers.values())
