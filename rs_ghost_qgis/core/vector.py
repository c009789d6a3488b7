"""Polygon layers read with OGR outside QGIS: the command line's ``--mask`` and training's labels.

Coordinates come back as stored, x = easting or longitude (GIS order), and the layer's CRS as
WKT, so ``crs.transform_geometry`` reprojects them like everything else in this package.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import shapely
from osgeo import ogr

from . import crs


@dataclass(frozen=True)
class Features:
    """The features of one layer that have a geometry, in the layer's CRS."""

    geometries: list  # shapely geometries
    values: list[dict[str, object]]  # per feature, the requested fields the layer has
    fields: list[str]  # every field of the layer
    crs_wkt: str | None  # None: the layer declares no CRS
    skipped: int  # features without a geometry, or with an empty one


def read_features(path: str | Path, fields: Sequence[str] = ()) -> Features | None:
    """The first layer of an OGR vector file, or None when OGR cannot open one.

    Each caller words the None for its own users (a mask, training labels).
    """
    try:
        dataset = ogr.Open(str(path))
    except RuntimeError:  # osgeo raises or returns None, by its process-wide exception mode
        dataset = None
    if dataset is None or dataset.GetLayerCount() == 0:
        return None
    layer = dataset.GetLayer(0)
    definition = layer.GetLayerDefn()
    names = [definition.GetFieldDefn(i).GetName() for i in range(definition.GetFieldCount())]
    wanted = [name for name in fields if name in names]
    geometries, values, skipped = [], [], 0
    for feature in layer:
        geometry = feature.GetGeometryRef()
        if geometry is None or geometry.IsEmpty():
            skipped += 1
            continue
        geometries.append(shapely.from_wkb(bytes(geometry.ExportToIsoWkb())))
        values.append({name: feature.GetField(name) for name in wanted})
    srs = layer.GetSpatialRef()
    # The WKT carries no axis mapping: crs.py reads it back in GIS order, the order OGR stores.
    wkt = srs.ExportToWkt() if srs is not None else None
    return Features(geometries, values, names, None if crs.is_undefined(wkt) else wkt, skipped)
