"""A QGIS vector layer's labelled polygons as the engine's ``adapt.Labels``, with its style's colours."""

from __future__ import annotations

from qgis.core import QgsFeatureRequest, QgsVectorLayer

from ..core.adapt.adapt import Labels, missing_field
from ..core.options import OptionError
from ..core.sources.vector import linear_shape
from .source import crs_to_wkt


def labels_from_layer(layer: QgsVectorLayer | None, class_field: str, selected_only: bool = False) -> Labels:
    """The features of ``layer`` (all, or the selected ones) with their ``class_field`` values.

    Geometry types are checked by the engine (points or lines get its one message). A layer
    styled by categories of ``class_field`` lends its colours to the adapted model's classes.
    """
    if layer is None or not isinstance(layer, QgsVectorLayer):
        raise OptionError("polygons", "Choose a polygon layer with labelled polygons for {polygons}.")
    names = [field.name() for field in layer.fields()]
    if class_field not in names:
        raise missing_field(class_field, f"The layer '{layer.name()}'", names)
    features = layer.getSelectedFeatures() if selected_only else layer.getFeatures(QgsFeatureRequest())
    geometries, classes, ids, without_geometry = [], [], [], 0
    for feature in features:
        geometry = feature.geometry()
        if geometry is None or geometry.isEmpty():
            without_geometry += 1
            continue
        geometries.append(linear_shape(bytes(geometry.asWkb())))  # curves as segments
        value = feature[class_field]
        classes.append(None if value is None or _is_null(value) else str(value))
        ids.append(int(feature.id()))
    crs = crs_to_wkt(layer.crs()) if layer.crs().isValid() else None
    colors = category_colors(layer, class_field)
    return Labels(geometries, classes, crs, layer.name(), class_field, colors, ids, without_geometry=without_geometry)


def category_colors(layer: QgsVectorLayer, class_field: str) -> dict[str, str]:
    """Class value -> '#rrggbb' from a categorized renderer on ``class_field``; {} for any other style."""
    renderer = layer.renderer()
    if renderer is None or renderer.type() != "categorizedSymbol" or renderer.classAttribute() != class_field:
        return {}
    colors = {}
    for category in renderer.categories():
        symbol = category.symbol()
        if symbol is not None and category.value() is not None and not _is_null(category.value()):
            colors[str(category.value())] = symbol.color().name()
    return colors


def _is_null(value) -> bool:
    """QGIS gives NULL as a QVariant that is null, or as None."""
    return bool(getattr(value, "isNull", lambda: False)())
