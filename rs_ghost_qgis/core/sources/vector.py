"""Polygon layers read with OGR outside QGIS: the command line's ``--mask`` and training's labels.

Coordinates come back as stored, x = easting or longitude (GIS order), and the layer's CRS as
WKT, so ``crs.transform_geometry`` reprojects them like everything else in this package.
Curved geometries (CURVEPOLYGON, MULTISURFACE, COMPOUNDCURVE, ...) come back as straight
segments (``linear_shape``), in every face: GEOS, and so shapely, has no curves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import shapely
from osgeo import gdal, ogr

from .. import crs
from ..errors import InputError
from ..options import OptionError

# Surfaces made of facets (3D data, CityGML, DXF): read as the multipolygon of their facets.
_FACETED = (ogr.wkbTriangle, ogr.wkbTIN, ogr.wkbPolyhedralSurface)


@dataclass(frozen=True)
class Features:
    """The features of one layer that have a geometry, in the layer's CRS."""

    geometries: list  # shapely geometries
    values: list[dict[str, object]]  # per feature, the requested fields the layer has
    fields: list[str]  # every field of the layer
    crs_wkt: str | None  # None: the layer declares no CRS
    skipped: int  # features without a geometry, or with an empty one


def linear_shape(wkb: bytes):
    """A shapely geometry for OGR or QGIS geometry bytes (WKB), curves made straight segments, in 2D.

    Arcs are approximated by OGR's default (a segment every 4 degrees of arc); triangles, TINs
    and polyhedral surfaces become multipolygons of their facets; measures (M) and heights (Z)
    are dropped, as the engine works on the ground plane only.
    """
    geometry = ogr.CreateGeometryFromWkb(bytes(wkb))
    if geometry is None:
        raise InputError("A geometry of the layer cannot be read (damaged WKB); repair the layer in QGIS.")
    if geometry.HasCurveGeometry():
        geometry = geometry.GetLinearGeometry()
    if ogr.GT_Flatten(geometry.GetGeometryType()) in _FACETED:  # surfaces of facets GEOS cannot read
        geometry = ogr.ForceTo(geometry, ogr.wkbMultiPolygon)
    geometry.FlattenTo2D()
    return shapely.from_wkb(bytes(geometry.ExportToIsoWkb()))


def split_layer(path: str | Path, layer: str | None = None) -> tuple[str, str | None]:
    """(file, layer name) from QGIS's ``FILE|layername=NAME`` or ``FILE|layerid=N``, or ``path`` and ``layer``.

    The name is None when no layer is chosen. Other ``|key=value`` parts (a subset, a geometry
    type) are left out here: ``unsupported_options`` says which a reader cannot honour.
    """
    text = str(path)
    file, *options = text.split("|")
    if not options or Path(text).exists():  # a file whose name holds '|' is a file
        return text, layer or None
    named = None
    for key, _, value in (option.partition("=") for option in options):
        if key == "layername":
            named = value
        elif key == "layerid" and Path(file).exists():  # a missing file is said by the caller
            named = _layer_by_id(file, value)
    if named is not None and layer and layer != named:
        raise InputError(f"Two layers were chosen for {file}: '{named}' in the path and '{layer}'; give one.")
    return file, named or layer or None


def unsupported_options(path: str | Path) -> list[str]:
    """The ``|key=value`` parts of ``path`` other than layername and layerid (e.g. ``subset=...``)."""
    text = str(path)
    if "|" not in text or Path(text).exists():
        return []
    return [option for option in text.split("|")[1:] if option.partition("=")[0] not in ("layername", "layerid")]


def _layer_by_id(file: str, value: str) -> str:
    """The name of layer number ``value`` (from 0, as QGIS counts) of ``file``; InputError listing the layers."""
    names = layer_names(file)
    if not value.isdigit() or int(value) >= len(names):
        listed = ", ".join(f"{i}: {name}" for i, name in enumerate(names)) or "none"
        raise InputError(f"{file} has no layer number {value}; its layers are {listed}.")
    return names[int(value)]


def read_features(path: str | Path, fields: Sequence[str] = (), layer: str | None = None) -> Features | None:
    """The features of one layer of an OGR vector file, or None when OGR cannot open the file.

    ``path`` may name the layer as ``FILE|layername=NAME``; ``layer`` names it too. A file of
    several layers with none chosen is refused with its layer names (reading the first one would
    silently use a layer the user did not mean). Each caller words the None for its own users
    (a mask, training labels).
    """
    file, layer = split_layer(path, layer)
    extra = unsupported_options(path)
    if extra:  # a subset ignored would read features the user filtered out
        raise InputError(
            f"{path}: '|{'|'.join(extra)}' is not understood here, only |layername=NAME; save the filtered "
            "features as a layer of their own (e.g. QGIS > Export > Save Selected Features As...) and give that."
        )
    check_shapefile_parts(file)
    dataset = _open(file)
    if dataset is None or dataset.GetLayerCount() == 0:
        return None
    chosen = _choose_layer(dataset, file, layer)
    definition = chosen.GetLayerDefn()
    names = [definition.GetFieldDefn(i).GetName() for i in range(definition.GetFieldCount())]
    wanted = [name for name in fields if name in names]
    geometries, values, skipped = [], [], 0
    for feature in chosen:
        geometry = feature.GetGeometryRef()
        if geometry is None or geometry.IsEmpty():
            skipped += 1
            continue
        geometries.append(linear_shape(geometry.ExportToIsoWkb()))
        values.append({name: feature.GetField(name) for name in wanted})
    srs = chosen.GetSpatialRef()
    # The WKT carries no axis mapping: crs.py reads it back in GIS order, the order OGR stores.
    wkt = srs.ExportToWkt() if srs is not None else None
    return Features(geometries, values, names, None if crs.is_undefined(wkt) else wkt, skipped)


def layer_names(path: str | Path) -> list[str]:
    """The names of the vector layers of the file ``path``; [] when OGR cannot open it."""
    dataset = _open(str(path))
    if dataset is None:
        return []
    return [dataset.GetLayer(i).GetName() for i in range(dataset.GetLayerCount())]


def check_one_layer(path: str | Path) -> None:
    """InputError for a file of several vector layers named without choosing one (``FILE|layername=NAME``)."""
    file, layer = split_layer(path)
    if layer is None:
        _several_layers(file, layer_names(file))


def vector_given_as_raster(path: str | Path) -> InputError | None:
    """The error for a vector file given where a raster belongs; None when ``path`` is no such file.

    Without it a GeoPackage of polygons is "not a raster GDAL can read" (the command line) or
    "not found" (Processing), though it is there; a file GDAL reads as a raster too is no error.
    """
    file = split_layer(path)[0]
    if not Path(file).is_file():
        return None
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        raster = gdal.OpenEx(file, gdal.OF_RASTER)
    except RuntimeError:  # osgeo raises or returns None, by its process-wide exception mode
        raster = None
    finally:
        gdal.PopErrorHandler()
    names = layer_names(file) if raster is None else []
    if not names:
        return None
    return InputError(
        f"{file} is a vector file ({'layer' if len(names) == 1 else 'layers'} {', '.join(names[:5])}"
        f"{', ...' if len(names) > 5 else ''}), not a raster: "
        "give a raster (GeoTIFF, JP2, VRT, ...) as the input."
    )


def check_shapefile_parts(path: str | Path) -> None:
    """InputError for a Shapefile without its .shx index beside it (OGR only says it is unreadable).

    A Shapefile is several files (.shp, .shx, .dbf, .prj); copying the .shp alone is a common slip.
    """
    shp = Path(path)
    if shp.suffix.lower() != ".shp" or not shp.is_file():
        return
    siblings = {p.name.lower() for p in shp.parent.iterdir() if p.stem == shp.stem}
    if f"{shp.stem}.shx".lower() not in siblings:
        raise InputError(
            f"The Shapefile {shp} has no {shp.stem}.shx beside it: a Shapefile is several files (.shp, .shx, .dbf, "
            ".prj) kept together. Copy its .shx with it, or recreate the layer (e.g. save it as a GeoPackage in QGIS)."
        )


def _open(file: str):
    """The OGR dataset of ``file`` read-only, or None; OGR's own error lines stay quiet (callers word it)."""
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        return ogr.Open(file)
    except RuntimeError:  # osgeo raises or returns None, by its process-wide exception mode
        return None
    finally:
        gdal.PopErrorHandler()


def _choose_layer(dataset, file: str, layer: str | None):
    """The layer named ``layer``; the only one when none is named; InputError otherwise, listing the layers."""
    names = [dataset.GetLayer(i).GetName() for i in range(dataset.GetLayerCount())]
    if layer is None:
        _several_layers(file, names)
        return dataset.GetLayer(0)
    if layer not in names:
        raise InputError(f"{file} has no layer '{layer}'; its layers are: {', '.join(names)}.")
    return dataset.GetLayerByName(layer)


def _several_layers(file: str, names: list[str]) -> None:
    """InputError when ``names`` (the layers of ``file``) are more than one: which one is not said."""
    if len(names) <= 1:
        return
    raise OptionError(
        "layer",
        "{file} holds {count} layers ({names}); choose one with {layer}, e.g. '{file}|layername={first}'.",
        file=file,
        count=len(names),
        names=", ".join(names),
        first=names[0],
    )
