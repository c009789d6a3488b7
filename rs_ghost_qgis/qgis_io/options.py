"""QGIS inputs (layers, extents, fields of the dialog and of Processing) -> engine options.

The rules for each option's value (bands, offset, stride, which area) are core.options', the
same for every face; this module turns QGIS objects (extents, layers, geometries) into them.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from qgis.core import QgsCoordinateReferenceSystem, QgsGeometry, QgsRectangle, QgsWkbTypes

from ..core.errors import InputError, RsGhostError
from .source import crs_to_wkt

SAMPLE_SIDE = 256  # the scaling check reads the raster at most this many pixels across


def bundled_model_or_none() -> Path | None:
    """The bundled default model if it is installed, else None (never raises)."""
    try:
        from ..core.model.runtime import default_model_path

        path = Path(default_model_path())
    except Exception:  # the engine may be missing a dependency; the run will say which
        return None
    return path if path.is_file() else None


def model_name(model_path: str | Path | None) -> str:
    """A short model name for layer names: the file name without extension, or 'bundled model'."""
    path = Path(model_path) if model_path else bundled_model_or_none()
    return path.stem if path else "bundled model"


def number_value(algorithm, parameters: dict, name: str, context, integer: bool = False) -> float | int | None:
    """The number given for the Processing parameter ``name``; None when it is empty.

    Processing lets an optional number parameter take any text and reads text that is no
    number as 0, the default, and rounds 2.5 to 3 for a whole number: the run would go on with
    a value nobody gave. Text is parsed here instead, and refused with the parameter's name.
    An expression (a QgsProperty, from the modeler) is QGIS's to evaluate.
    """
    value = parameters.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        return (
            algorithm.parameterAsInt(parameters, name, context)
            if integer
            else algorithm.parameterAsDouble(parameters, name, context)
        )
    kind = "a whole number" if integer else "a number"
    try:
        number = float(value.strip()) if isinstance(value, str) else float(value)
    except ValueError:
        raise InputError(f"{name} must be {kind}, not '{value}'.") from None
    if not math.isfinite(number) or (integer and number != int(number)):
        raise InputError(f"{name} must be {kind}, not {value}.")
    return int(number) if integer else number


def check_vector_input(parameters: dict, name: str) -> None:
    """InputError for a vector parameter given as a file path that cannot be used as it is.

    A Shapefile without its .shx and a file OGR cannot read would be "not found" (QGIS's words,
    though the file is there); a file of several layers without a name would silently give its
    first layer. The command line refuses the same files with the same words (core.sources.vector). A
    layer of the project, or a path with ``|layername=NAME``, is a choice already.
    """
    from qgis.core import QgsProcessingFeatureSourceDefinition

    from ..core.sources.vector import check_one_layer, check_shapefile_parts, layer_names, split_layer

    value = parameters.get(name)
    if isinstance(value, QgsProcessingFeatureSourceDefinition):
        value = value.source.staticValue()
    if not isinstance(value, str) or not os.path.isfile(split_layer(value)[0]):
        return  # a layer, a layer id, or a missing file (QGIS says it is not found)
    file = split_layer(value)[0]
    check_shapefile_parts(file)
    if not layer_names(file):
        raise InputError(f"{name} {file} is not a vector file OGR can read (GeoPackage, Shapefile, GeoJSON, ...).")
    check_one_layer(value)


def check_raster_input(parameters: dict, name: str) -> None:
    """InputError for a raster parameter given as the path of a vector file (QGIS would say "not found")."""
    from ..core.sources.vector import vector_given_as_raster

    value = parameters.get(name)
    error = vector_given_as_raster(value) if isinstance(value, str) else None
    if error is not None:
        raise error


def area_from_extent(extent: QgsRectangle, crs: QgsCoordinateReferenceSystem):
    """An engine Area for a rectangle in ``crs`` (e.g. the map canvas extent)."""
    from ..core.options import Area

    if extent is None or extent.isNull() or extent.isEmpty():
        raise InputError("The extent is empty; draw or choose an extent, or classify the whole layer.")
    return Area(
        bounds=(extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum()),
        crs_wkt=crs_to_wkt(crs),
    )


def area_from_geometries(geometries: Iterable[QgsGeometry], crs: QgsCoordinateReferenceSystem, what: str):
    """An engine Area for mask polygons given as QGIS geometries in ``crs``."""
    from ..core.options import Area
    from ..core.sources.vector import linear_shape

    shapes = []
    for geometry in geometries:
        if geometry is None or geometry.isEmpty() or geometry.type() != QgsWkbTypes.PolygonGeometry:
            continue
        shapes.append(linear_shape(bytes(geometry.asWkb())))  # curves as segments
    if not shapes:
        raise InputError(f"{what} has no polygons to classify inside; choose polygons or another area.")
    return Area(geometries=shapes, crs_wkt=crs_to_wkt(crs))


def area_from_layer(layer, selected_only: bool):
    """An engine Area for all or the selected polygons of a vector layer."""
    if layer is None:
        raise InputError("Choose a polygon layer as mask, or another area.")
    if layer.geometryType() != QgsWkbTypes.PolygonGeometry:
        raise InputError(f"The mask '{layer.name()}' is not a polygon layer; choose polygons.")
    if selected_only:
        if layer.selectedFeatureCount() == 0:
            raise InputError(f"No polygon is selected in '{layer.name()}'; select some or use all polygons.")
        features = layer.getSelectedFeatures()
        what = f"The selection in '{layer.name()}'"
    else:
        features = layer.getFeatures()
        what = f"The mask '{layer.name()}'"
    return area_from_geometries((f.geometry() for f in features), layer.crs(), what)


def output_paths(
    folder: str, raster_name: str, model: str, polygons: bool, raster: bool
) -> tuple[str | None, str | None]:
    """Files for the outputs: in ``folder`` (new names, never overwriting) or temporary files."""
    from qgis.core import QgsProcessingUtils

    stem = re.sub(r"[^\w.-]+", "_", f"{raster_name}_{model}").strip("_") or "rs_ghost"
    paths = []
    for wanted, suffix in ((polygons, "_tiles.gpkg"), (raster, "_classes.tif")):
        if not wanted:
            paths.append(None)
        elif not folder:
            paths.append(QgsProcessingUtils.generateTempFilename(stem + suffix))
        else:
            paths.append(str(_unique(Path(folder) / (stem + suffix))))
    return paths[0], paths[1]


def _unique(path: Path) -> Path:
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}_{n}{path.suffix}")
    return candidate


def plan_or_none(source, card, bands: list[int] | None, scaling: str, offset: float | None, product: str = "auto"):
    """The engine's radiometry plan for the dialog's hints (None when the inputs are wrong: Run says why)."""
    from ..core.radiometry.scaling import plan_radiometry

    try:
        return plan_radiometry(source, card, bands, scaling, offset, product)
    except RsGhostError:
        return None


def scaling_warning(source, radiometry, label: str = "") -> str:
    """Why the planned scaling does not fit ``source``: most values outside the model's range ('' if it fits).

    With 'none' the model expects the card's ``value_range`` as it is; with 'card' values
    outside the raw values mapped onto it are clipped. A percentile stretch fits by
    construction. Reads a small overview: call it for local rasters, not for web services.
    """
    from ..core.radiometry.plan import share_outside
    from ..core.radiometry.scaling import MOSTLY_OUTSIDE

    if radiometry is None or radiometry.scaling not in ("none", "card"):
        return ""
    try:
        values = _overview_values(source, radiometry.bands)
    except RsGhostError:
        return ""  # wrong bands and the like: Run reports them
    if values.size == 0:
        return ""
    share = share_outside(radiometry, values)
    if share <= MOSTLY_OUTSIDE:
        return ""
    low, high = radiometry.raw_bounds()  # one range for all bands with 'none' and 'card'
    effect = "used as they are, far outside" if radiometry.scaling == "none" else "clipped to the ends of"
    return (
        f"Scaling '{label or radiometry.scaling}' expects values in {max(low, 0.0):.4g}–{high:.4g}, but {share:.0%} "
        f"of the values sampled from '{source.info.name}' (bands {', '.join(map(str, radiometry.bands))}) lie "
        f"outside: they range {values.min():g}–{values.max():g} and would be {effect} what the model was trained "
        "on. Choose another Scaling (Automatic or Percentile stretch) or check the bands."
    )


def _overview_values(source, bands: list[int]) -> np.ndarray:
    """The valid values of ``bands`` read over the whole raster at most SAMPLE_SIDE pixels across."""
    info = source.info
    scale = min(1.0, SAMPLE_SIDE / max(info.width, info.height))
    width, height = max(1, round(info.width * scale)), max(1, round(info.height * scale))
    block = source.read(info.bounds, info.crs_wkt, width, height, bands)
    return block.data[:, block.valid].astype(np.float64)
