"""Training chips cut from a raster where they lie inside labelled polygons.

Chips of image_size x image_size pixels at ``gsd_m`` metres per pixel sit on a regular grid
(every ``chip_stride`` pixels) over the raster; a chip is kept when it lies entirely inside
the polygons of one class (polygons of one class are merged first) and holds no nodata.
- Polygons are read with OGR (first layer of a GeoPackage or Shapefile, by the plugin's
  ``core.sources.vector``) and reprojected to the raster's CRS (``core.crs``, edges densified);
  features without a geometry or a class value are skipped and counted.
- Geographic rasters (degrees) need ``gsd_m``; their chips are cut in the local UTM zone.
- When ``gsd_m`` differs from the raster's pixel size, the raster is resampled through a
  rasterio WarpedVRT (bilinear when enlarging, average when shrinking).
- Bands: the first three (one band is replicated to three). Rasters that are not uint8 are
  stretched to uint8 per band between the 2nd and 98th percentile of the whole raster; the
  percentiles are recorded in the summary so inference can apply the same stretch.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import shapely
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import RasterioError
from rasterio.transform import Affine
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from rs_ghost_qgis.core.crs import same_crs, transform_geometry, utm_epsg
from rs_ghost_qgis.core.options import OptionError
from rs_ghost_qgis.core.radiometry.sample import percentile_ranges, sample_values
from rs_ghost_qgis.core.sources.rasterio_source import RasterioSource
from rs_ghost_qgis.core.sources.vector import read_features, split_layer
from training.errors import DataError

from .images import stretch_to_uint8

METRES_PER_DEGREE_LATITUDE = 111_320.0


@dataclass
class Chips:
    """Chips cut from a raster, their labels, the class names (index = label) and a summary."""

    images: np.ndarray  # (N, size, size, 3) uint8
    labels: np.ndarray  # (N,) int64
    class_names: list[str]
    summary: dict


def cut_chips(
    raster: Path, polygons: Path, *, class_field: str, image_size: int, gsd_m: float | None, chip_stride: int | None
) -> Chips:
    """Cut labelled chips from ``raster`` inside the polygons of ``polygons`` (see the module doc)."""
    stride = chip_stride if chip_stride is not None else image_size
    if stride < 1:
        raise DataError(f"--chip-stride must be a positive number of pixels, not {chip_stride}.")
    try:
        src = rasterio.open(raster)
    except RasterioError as error:
        raise DataError(f"{raster} cannot be read as a raster ({error}). Give a GeoTIFF.") from error
    with src:
        bands = _bands(src, raster)
        work_crs, gsd, native_gsd = _working_grid(src, raster, gsd_m)
        shapes, class_names, polygon_summary = read_polygons(polygons, class_field, work_crs)
        stretch = _stretch(raster, src, bands)
        with _working_view(src, work_crs, gsd, native_gsd) as view:
            extent = shapely.box(*view.bounds)
            if not any(shape.intersects(extent) for shape, _ in shapes):
                raise DataError(
                    f"The polygons of {polygons.name} do not overlap the raster {raster.name}. Check that both "
                    "cover the same area and that the polygon layer's CRS is set correctly."
                )
            cells, ambiguous = _grid_cells(view, image_size, stride, shapes)
            physical = _band_scaling(src, bands)
            images, labels, nodata = _read_chips(view, cells, bands, image_size, stretch, physical)
        summary = {
            "raster_crs": src.crs.to_string(),
            "work_crs": work_crs.to_string(),
            "resampled": view is not src,
            "native_gsd_m": native_gsd,
            "gsd_m": gsd,
            "chip_stride": stride,
            "bands": bands,
            "stretch": _stretch_summary(stretch),
            "chips_skipped": {"nodata": nodata, "ambiguous": ambiguous},
            **polygon_summary,
        }
    empty = [name for label, name in enumerate(class_names) if not np.any(labels == label)]
    if empty:
        raise DataError(
            f"No {image_size} x {image_size} px chip at {gsd:g} m fits inside the polygons of class(es) "
            f"{', '.join(empty)} (or every such chip holds nodata). Draw larger polygons, or lower "
            "--image-size, --gsd or --chip-stride."
        )
    return Chips(images, labels, class_names, summary)


def _bands(src: rasterio.DatasetReader, raster: Path) -> list[int]:
    if src.count == 2:
        raise DataError(f"{raster} has 2 bands; give a raster with 1 band or with at least 3 (the first 3 are used).")
    return [1, 2, 3] if src.count >= 3 else [1, 1, 1]


def _working_grid(src: rasterio.DatasetReader, raster: Path, gsd_m: float | None) -> tuple[CRS, float, float | None]:
    """Return (CRS the chips are cut in, chip pixel size in metres, raster pixel size in metres or None)."""
    if src.crs is None:
        raise DataError(f"{raster} has no CRS. Assign one (e.g. gdal_edit.py -a_srs EPSG:...) and try again.")
    if src.transform.b != 0 or src.transform.d != 0:
        raise DataError(f"{raster} is rotated (its geotransform has rotation terms). Warp it north-up first.")
    if gsd_m is not None and gsd_m <= 0:
        raise DataError(f"--gsd must be a positive number of metres, not {gsd_m}.")
    if src.crs.is_projected:
        native = src.res[0] * src.crs.linear_units_factor[1]
        return src.crs, gsd_m or native, native
    if gsd_m is None:
        guess = src.res[1] * METRES_PER_DEGREE_LATITUDE
        raise DataError(
            f"{raster} is in a geographic CRS (degrees), so its pixel size in metres is not defined; "
            f"give --gsd METRES (its pixels are about {guess:.3g} m north-south)."
        )
    lon_min, lat_min, lon_max, lat_max = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    # The plugin's zone for the same raster, so its tiles fall where these chips were cut.
    return CRS.from_epsg(utm_epsg((lon_min + lon_max) / 2, (lat_min + lat_max) / 2)), gsd_m, None


@contextlib.contextmanager
def _working_view(
    src: rasterio.DatasetReader, work_crs: CRS, gsd: float, native_gsd: float | None
) -> Iterator[rasterio.DatasetReader | WarpedVRT]:
    """The raster itself when it is already on the chip grid, else a WarpedVRT that is."""
    unit = gsd / work_crs.linear_units_factor[1]
    if work_crs == src.crs and all(math.isclose(r, unit, rel_tol=1e-6) for r in src.res):
        yield src
        return
    left, bottom, right, top = transform_bounds(src.crs, work_crs, *src.bounds, densify_pts=21)
    shrinking = native_gsd is not None and gsd > native_gsd
    with WarpedVRT(
        src,
        crs=work_crs,
        transform=Affine(unit, 0, left, 0, -unit, top),
        width=math.ceil((right - left) / unit),
        height=math.ceil((top - bottom) / unit),
        resampling=Resampling.average if shrinking else Resampling.bilinear,
        # An alpha band marks where the warped grid lies outside the source, when nothing else does.
        add_alpha=src.nodata is None and ColorInterp.alpha not in src.colorinterp,
    ) as vrt:
        yield vrt


def read_polygons(path: Path, class_field: str, crs: CRS) -> tuple[list[tuple[shapely.Geometry, int]], list[str], dict]:
    """Return [(merged geometry of one class in ``crs``, label)], the class names and a summary."""
    if not Path(split_layer(path)[0]).exists():  # FILE|layername=NAME names one layer of a file
        raise DataError(f"Polygon layer {path} does not exist. Fix the path (a GeoPackage or Shapefile).")
    try:
        layer = read_features(path, [class_field])
    except OptionError as error:  # a file of several layers: training takes QGIS's FILE|layername=NAME, no --layer
        raise DataError(error.in_face("processing")) from None
    if layer is None:
        raise DataError(f"{path} cannot be opened as a polygon layer. Give a GeoPackage (.gpkg) or Shapefile (.shp).")
    if class_field not in layer.fields:
        raise DataError(
            f"Polygon layer {path.name} has no field {class_field!r}; its fields are: "
            f"{', '.join(layer.fields) or '(none)'}. Give --class-field <the field that holds the class>."
        )
    labels = [values[class_field] for values in layer.values]
    labelled = [i for i, label in enumerate(labels) if label is not None]
    geometries = [layer.geometries[i] for i in labelled]
    # Without a layer CRS the polygons are taken to be in the raster's CRS already.
    reproject = layer.crs_wkt is not None and not same_crs(layer.crs_wkt, crs.to_wkt())
    if reproject:
        geometries = transform_geometry(np.array(geometries, dtype=object), layer.crs_wkt, crs.to_wkt())
    by_class: dict[str, list[shapely.Geometry]] = {}
    for shape, i in zip(geometries, labelled, strict=True):
        by_class.setdefault(str(labels[i]), []).append(shapely.make_valid(shape))
    class_names = sorted(by_class, key=_natural_key)
    if len(class_names) < 2:
        raise DataError(
            f"Polygon layer {path.name} holds {len(class_names)} class(es) in field {class_field!r} "
            f"({', '.join(class_names) or 'no labelled polygons'}); a classifier needs at least two. "
            "Draw polygons of at least two classes."
        )
    shapes = [(shapely.union_all(by_class[name]), label) for label, name in enumerate(class_names)]
    summary = {
        "polygons": str(path),
        "class_field": class_field,
        "polygon_crs": CRS.from_wkt(layer.crs_wkt).to_string() if layer.crs_wkt else "none (taken as the raster's)",
        "polygons_reprojected": reproject,
        "features_skipped": layer.skipped + len(layer.geometries) - len(labelled),
    }
    return shapes, class_names, summary


def _natural_key(name: str) -> tuple:
    # Numeric class codes sort as numbers (2 before 10), names alphabetically after them.
    try:
        return (0, float(name), name)
    except ValueError:
        return (1, 0.0, name)


def _stretch(raster: Path, src: rasterio.DatasetReader, bands: list[int]) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-band 2nd and 98th percentiles, or None for uint8 rasters.

    Computed by the plugin's own sampling and percentiles, so a model trained on these chips
    sees the same mapping when the plugin classifies this raster with percentile-per-band scaling.
    """
    if all(src.dtypes[b - 1] == "uint8" for b in bands):
        return None
    with RasterioSource(raster) as source:
        low, high = percentile_ranges(sample_values(source, bands), common=False)
    return np.array(low, dtype=np.float32), np.array(high, dtype=np.float32)


def _stretch_summary(stretch: tuple[np.ndarray, np.ndarray] | None) -> dict | None:
    if stretch is None:
        return None
    low, high = stretch
    return {"method": "per-band 2-98 percentile over the raster", "low": low.tolist(), "high": high.tolist()}


def _grid_cells(view, image_size: int, stride: int, shapes: list) -> tuple[list[tuple[int, int, int]], int]:
    """Return the (row, col, label) of grid chips inside one class's polygons, and how many
    chips lay inside polygons of two classes (overlaps) and were dropped."""
    unit, x0, y0 = view.transform.a, view.transform.c, view.transform.f
    labels_at: dict[tuple[int, int], set[int]] = {}
    for shape, label in shapes:
        minx, miny, maxx, maxy = shape.bounds
        rows = _grid_range((y0 - maxy) / unit, (y0 - miny) / unit - image_size, stride, view.height - image_size)
        cols = _grid_range((minx - x0) / unit, (maxx - x0) / unit - image_size, stride, view.width - image_size)
        if not len(rows) or not len(cols):
            continue
        row_grid, col_grid = (a.ravel() for a in np.meshgrid(rows, cols, indexing="ij"))
        left, top = x0 + col_grid * unit, y0 - row_grid * unit
        boxes = shapely.box(left, top - image_size * unit, left + image_size * unit, top)
        shapely.prepare(shape)
        inside = shapely.contains(shape, boxes)
        for row, col in zip(row_grid[inside].tolist(), col_grid[inside].tolist(), strict=True):
            labels_at.setdefault((row, col), set()).add(label)
    cells = [(row, col, next(iter(labels))) for (row, col), labels in sorted(labels_at.items()) if len(labels) == 1]
    return cells, len(labels_at) - len(cells)


def _grid_range(first: float, last: float, stride: int, largest: int) -> np.ndarray:
    # Grid offsets k * stride with first <= offset <= last, inside the raster (0..largest).
    start = max(math.ceil(first / stride - 1e-9), 0)
    stop = min(math.floor(last / stride + 1e-9), largest // stride) if largest >= 0 else -1
    return np.arange(start, stop + 1) * stride


def _all_valid(view, window: Window) -> bool:
    # A WarpedVRT's added alpha band is not reflected in its masks, so alpha is read directly.
    if ColorInterp.alpha in view.colorinterp:
        return bool(view.read(view.colorinterp.index(ColorInterp.alpha) + 1, window=window).all())
    return bool(view.dataset_mask(window=window).all())


def _band_scaling(src: rasterio.DatasetReader, bands: list[int]) -> tuple[np.ndarray, np.ndarray] | None:
    """The bands' GDAL scale and offset, None when every band has none (1 and 0).

    The plugin reads values as ``raw * scale + offset`` (core.sources.rasterio_source), and the stretch is
    sampled through it, so the chips must be read in the same physical units.
    """
    scales = np.array([src.scales[b - 1] or 1.0 for b in bands], dtype=np.float64)
    offsets = np.array([src.offsets[b - 1] or 0.0 for b in bands], dtype=np.float64)
    return None if np.all(scales == 1.0) and np.all(offsets == 0.0) else (scales, offsets)


def _read_chips(
    view, cells: list, bands: list[int], image_size: int, stretch, physical=None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Read the chips at ``cells`` as uint8 RGB (in physical units first), dropping those that hold nodata."""
    images, labels = [], []
    for row, col, label in cells:
        window = Window(col, row, image_size, image_size)
        if not _all_valid(view, window):
            continue
        chip = np.moveaxis(view.read(bands, window=window), 0, -1)
        if physical is not None and stretch is not None:  # 8-bit chips stay as they are
            chip = (chip * physical[0] + physical[1]).astype(np.float32)
        images.append(chip if stretch is None else stretch_to_uint8(chip, *stretch))
        labels.append(label)
    array = np.stack(images) if images else np.zeros((0, image_size, image_size, 3), dtype=np.uint8)
    return array, np.array(labels, dtype=np.int64), len(cells) - len(images)
