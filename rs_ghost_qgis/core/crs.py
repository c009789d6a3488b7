"""Coordinate reference systems: parsing, metric units, local UTM zones, reprojecting shapes.

Everything goes through GDAL's osr with the traditional GIS axis order (x = easting or
longitude), so EPSG:4326 coordinates are (lon, lat) everywhere in this package.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import shapely
from osgeo import gdal, osr

from .errors import InputError

# A projected CRS whose scale on the ground is off by more than this is not used for the
# grid (Web Mercator at 54 deg N draws 1 m as 1.7 m); the local UTM zone is used instead.
MAX_SCALE_ERROR = 0.01
# UTM zones are defined from 80 S to 84 N; beyond, Universal Polar Stereographic takes over.
UTM_SOUTH, UTM_NORTH = -80.0, 84.0
UPS_EPSG = {"north": 32661, "south": 32761}

# osr objects must not be shared between threads (QGIS runs tasks and Processing batches in
# worker threads), so each thread keeps its own.
_local = threading.local()


def _per_thread(kind: str, key, make):
    cache = _local.__dict__.setdefault(kind, {})
    if key not in cache:
        cache[key] = make()
    return cache[key]


def srs_from_wkt(wkt: str) -> osr.SpatialReference:
    """A SpatialReference for ``wkt`` (or any string osr understands: 'EPSG:32633', PROJ)."""
    return _per_thread("srs", wkt, lambda: _new_srs(wkt))


def _new_srs(wkt: str) -> osr.SpatialReference:
    srs = osr.SpatialReference()
    # osgeo may or may not raise (its exception mode is process-wide; QGIS plugins share it).
    gdal.PushErrorHandler("CPLQuietErrorHandler")  # PROJ's 'crs not found' line: said below as one error
    try:
        failed = srs.SetFromUserInput(wkt) != 0
    except RuntimeError:
        failed = True
    finally:
        gdal.PopErrorHandler()
    if failed:
        raise InputError(f"Cannot read the coordinate reference system {wkt[:80]!r}.")
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


# A GeoPackage stores "no CRS" as srs_id 0 or -1; OGR and QGIS read these placeholders back.
_UNDEFINED_NAMES = ("Undefined geographic SRS", "Undefined Cartesian SRS")


def is_undefined(wkt: str | None) -> bool:
    """Whether ``wkt`` is missing, or a GeoPackage's placeholder for a layer without a CRS."""
    if not wkt:
        return True
    srs = srs_from_wkt(wkt)
    return srs.GetName() in _UNDEFINED_NAMES and not srs.GetAuthorityCode(None)


def to_wkt(text: str) -> str:
    """WKT for a CRS given as 'EPSG:4326', WKT or PROJ text."""
    return srs_from_wkt(text).ExportToWkt()


def same_crs(a_wkt: str, b_wkt: str) -> bool:
    """Whether two CRS definitions describe the same system."""
    return a_wkt == b_wkt or bool(srs_from_wkt(a_wkt).IsSame(srs_from_wkt(b_wkt)))


def describe(wkt: str) -> str:
    """A short label for messages: 'EPSG:32633 (WGS 84 / UTM zone 33N)'."""
    srs = srs_from_wkt(wkt)
    name = srs.GetName() or "unnamed CRS"
    code = srs.GetAuthorityCode(None)
    authority = srs.GetAuthorityName(None)
    return f"{authority}:{code} ({name})" if code and authority else name


def check_on_earth(wkt: str, what: str) -> None:
    """InputError unless ``wkt`` places coordinates on the Earth: a geographic or projected CRS.

    A local (engineering) CRS, a site grid or a survey in a plain x/y system, has no coordinate
    operation to any other CRS: neither the metric grid's UTM zone, nor a mask or box in
    another CRS, nor the tiles' size on the ground could be found. Refused up front, with the fix.
    """
    srs = srs_from_wkt(wkt)
    if srs.IsGeographic() or srs.IsProjected():
        return
    kind = "a local (engineering) coordinate system" if srs.IsLocal() else "a coordinate system"
    raise InputError(
        f"{what} is in {kind}, {describe(wkt)}, that is not tied to a place on the Earth, so its tiles cannot "
        "be placed on the ground; assign the raster's real CRS (e.g. `gdal_edit.py -a_srs EPSG:32633 FILE` "
        "or QGIS > Layer > Set CRS) or georeference it."
    )


def _transformation(src_wkt: str, dst_wkt: str) -> osr.CoordinateTransformation:
    """The thread's transformation between two CRSs; InputError when PROJ knows no operation between them."""
    found = _per_thread("transformation", (src_wkt, dst_wkt), lambda: _new_transformation(src_wkt, dst_wkt))
    if found is None:
        raise InputError(
            f"No coordinate operation is known from {describe(src_wkt)} to {describe(dst_wkt)}: positions cannot "
            "be carried from one to the other. Check the CRS of the raster and of the area or mask."
        )
    return found


def _new_transformation(src_wkt: str, dst_wkt: str) -> osr.CoordinateTransformation | None:
    """A transformation, or None where there is none (GDAL returns an empty proxy, or raises in exception mode)."""
    gdal.PushErrorHandler("CPLQuietErrorHandler")  # its 'ERROR 6' line is said as one clear error instead
    try:
        made = osr.CoordinateTransformation(srs_from_wkt(src_wkt), srs_from_wkt(dst_wkt))
    except (RuntimeError, ValueError):
        return None
    finally:
        gdal.PopErrorHandler()
    return made if getattr(made, "this", None) is not None else None


def transform_xy(xy: np.ndarray, src_wkt: str, dst_wkt: str) -> np.ndarray:
    """Transform an (N, 2) array of points; raises InputError where a point has no image."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if same_crs(src_wkt, dst_wkt) or len(xy) == 0:
        return xy.copy()
    transformation = _transformation(src_wkt, dst_wkt)
    # PROJ's 'ERROR 1: Point outside of projection domain' lines are said once, below, or the
    # caller copes (a mask cut to the raster first); on stderr they would follow a run that succeeds.
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        out = np.asarray(transformation.TransformPoints(xy), dtype=np.float64)[:, :2]
    except RuntimeError:
        out = np.full_like(xy, np.inf)
    finally:
        gdal.PopErrorHandler()
    if not np.all(np.isfinite(out)):
        raise InputError(
            f"Some coordinates cannot be transformed from {describe(src_wkt)} to {describe(dst_wkt)}; "
            "check that the area or mask lies where the raster is."
        )
    return _unwrap_longitudes(out, src_wkt, dst_wkt)


def _unwrap_longitudes(lonlat: np.ndarray, src_wkt: str, dst_wkt: str) -> np.ndarray:
    """Longitudes from a projection kept within 180 degrees of its central meridian.

    PROJ folds longitudes into -180..180, so a UTM zone 60 tile that straddles the
    antimeridian would come back from 179.99 to -179.99: a polygon around the globe. Kept
    continuous (179.99 to 180.01) it stays the small square it is.
    """
    dst, src = srs_from_wkt(dst_wkt), srs_from_wkt(src_wkt)
    if not (dst.IsGeographic() and src.IsProjected()) or abs(dst.GetAngularUnits() - math.pi / 180) > 1e-12:
        return lonlat
    meridian = src.GetProjParm(osr.SRS_PP_CENTRAL_MERIDIAN, 0.0)
    offset = lonlat[:, 0] - meridian
    # Whole turns away from the meridian; +-180 itself (a world extent, give or take rounding) stays.
    lonlat[:, 0] -= np.where(np.abs(offset) > 180.0 + 1e-9, 360.0 * np.round(offset / 360.0), 0.0)
    return lonlat


def transform_geometry(geometry, src_wkt: str, dst_wkt: str, max_segment: float | None = None):
    """Reproject shapely geometries (one or an array), densifying edges so curves stay true.

    Edges are split into pieces of at most ``max_segment`` source units (default: 1/16 of
    the geometries' larger extent) before transforming.
    """
    if same_crs(src_wkt, dst_wkt):
        return geometry
    xmin, ymin, xmax, ymax = shapely.total_bounds(geometry)
    step = max(xmax - xmin, ymax - ymin) / 16 if max_segment is None else max_segment
    if step > 0:
        geometry = shapely.segmentize(geometry, step)
    return shapely.transform(geometry, lambda xy: transform_xy(xy, src_wkt, dst_wkt))


def metres_per_unit(wkt: str) -> float | None:
    """Linear unit of a projected CRS in metres; None for a geographic CRS."""
    srs = srs_from_wkt(wkt)
    if srs.IsGeographic() or not srs.IsProjected():
        return None
    return float(srs.GetLinearUnits())


def utm_epsg(lon: float, lat: float) -> int:
    """The EPSG code of the WGS 84 UTM zone around a point: 326zz north, 327zz south."""
    zone = min(60, max(1, int(math.floor((lon + 180.0) / 6.0)) + 1))
    return (32600 if lat >= 0 else 32700) + zone


def utm_wkt(lon: float, lat: float) -> str:
    """The WGS 84 UTM zone around a point, as WKT."""
    return to_wkt(f"EPSG:{utm_epsg(lon, lat)}")


def utm_scale_error(geometry, wkt: str, utm: str, polar: bool = False) -> float:
    """The worst scale error of the UTM zone ``utm`` over ``geometry`` (in ``wkt``); inf where UTM is undefined.

    Transverse Mercator's scale grows with the distance from the central meridian:
    k = 0.9996 (1 + (dlon cos lat)^2 / 2). UTM is not used beyond 84 N and 80 S (``polar``
    True ignores that limit: is the area narrow enough, were the zone defined there?).
    """
    try:
        lon0, lat0, lon1, lat1 = transform_geometry(geometry, wkt, to_wkt("EPSG:4326")).bounds
    except InputError:
        return math.inf
    if not polar and (lat0 < UTM_SOUTH or lat1 > UTM_NORTH):
        return math.inf
    meridian = srs_from_wkt(utm).GetProjParm(osr.SRS_PP_CENTRAL_MERIDIAN)
    dlon = math.radians(max(abs(lon0 - meridian), abs(lon1 - meridian)))
    lat = 0.0 if lat0 <= 0.0 <= lat1 else min(abs(lat0), abs(lat1))
    k = 0.9996 * (1.0 + (dlon * math.cos(math.radians(lat))) ** 2 / 2.0)
    return abs(k - 1.0)


def lonlat_bounds(geometry, wkt: str) -> tuple[float, float, float, float]:
    """WGS 84 (lon_min, lat_min, lon_max, lat_max) of ``geometry`` given in ``wkt``."""
    return tuple(float(v) for v in transform_geometry(geometry, wkt, to_wkt("EPSG:4326")).bounds)


def lonlat(x: float, y: float, wkt: str) -> tuple[float, float]:
    """A point's WGS 84 longitude and latitude."""
    lon, lat = transform_xy([[x, y]], wkt, to_wkt("EPSG:4326"))[0]
    return float(lon), float(lat)


def scale_error(wkt: str, x: float, y: float) -> float:
    """How far a projected CRS's scale on the ground is from 1 at (x, y): max(|k - 1|).

    Measures a short step north and east in the CRS against the ellipsoid's true ground
    distance, after converting the CRS unit to metres.
    """
    srs = srs_from_wkt(wkt)
    geographic = srs.CloneGeogCS()
    geographic.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    geo_wkt = geographic.ExportToWkt()
    lon, lat = transform_xy([[x, y]], wkt, geo_wkt)[0]
    step = 1e-3  # degrees: about 100 m, short enough for the scale to be constant
    points = transform_xy([[lon, lat], [lon, lat + step], [lon + step, lat]], geo_wkt, wkt)
    unit = metres_per_unit(wkt) or 1.0
    a = geographic.GetSemiMajor()
    e2 = 1.0 - (1.0 - 1.0 / geographic.GetInvFlattening()) ** 2 if geographic.GetInvFlattening() else 0.0
    phi = math.radians(lat)
    w = 1.0 - e2 * math.sin(phi) ** 2
    meridian = a * (1.0 - e2) / w**1.5  # radius of curvature north-south
    normal = a / math.sqrt(w)  # radius of curvature east-west
    north = math.radians(step) * meridian
    east = math.radians(step) * normal * math.cos(phi)
    k_north = np.hypot(*(points[1] - points[0])) * unit / north
    k_east = np.hypot(*(points[2] - points[0])) * unit / east
    return float(max(abs(k_north - 1.0), abs(k_east - 1.0)))
