"""The tile grid: squares of the model's footprint on the ground, laid over the area to classify.

The grid is a lattice of square *cells* of ``stride`` model pixels; a *tile* is ``n x n``
cells (n = tile_size / stride) starting at a cell, so with the default stride a tile is one
cell. Cell (row, col) spans x in [x0 + col * cell, x0 + (col + 1) * cell) and y downwards
from y0 - row * cell. The raster output is the cell lattice; the vector output is the tiles.

Where the grid lies:
- a projected raster whose scale on the ground is true (within 1 %) at the centre of the
  classified area: in the raster's own CRS, anchored at its top-left corner, so tiles fall
  on whole pixels when the pixel size divides the tile (any linear unit, converted to metres);
- otherwise (degrees, or Web Mercator away from the equator): in the WGS 84 UTM zone of the
  centre of the classified area, anchored at the top-left of the raster's footprint there
  (or, for a layer too big for the zone such as a world XYZ layer, on round coordinates), so
  a tile measures the model's metres on the ground (640 m for 64 px at 10 m). An area wider
  than the zone is true to 1 % is refused with a message.

Edge policy (EDGE_POLICY, recorded in every output): pad. The grid covers every cell that
overlaps the area; tile pixels outside the raster or without data are invalid and filled
with the tile's mean, and tiles with less than ``min_valid_fraction`` valid pixels are not
classified (nodata).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import shapely
from affine import Affine

from .. import crs
from ..errors import InputError
from ..model.card import ModelCard
from ..options import Area, OptionError, OptionText, check_stride
from ..sources.source import Bounds, RasterInfo

EDGE_POLICY = (
    "pad: tiles cover every grid cell overlapping the area; pixels outside the raster or without data are "
    "invalid and filled with the tile mean; tiles below the valid fraction are nodata"
)
# Raster pixels this many times the model's or coarser get a warning (Landsat's 30 m on a 10 m model: 3x).
COARSE_PIXELS_FACTOR = 4.0
_EPS = 1e-6  # in cells: absorbs floating-point noise at cell boundaries


@dataclass
class Grid:
    """A cell lattice over the area, in ``crs_wkt``; see the module docstring."""

    crs_wkt: str
    crs_note: str
    x0: float
    y0: float
    cell: float  # cell side in CRS units
    cell_m: float  # cell side on the ground, metres
    tile_cells: int  # n: a tile is n x n cells
    cell_px: int  # pixels per cell side at the model's input resolution
    rows: tuple[int, int]  # [first, end) cell rows of the area
    cols: tuple[int, int]  # [first, end) cell columns of the area
    area: object | None  # shapely geometry of the area in crs_wkt; None when it is the rows x cols rectangle
    warnings: list[str] = field(default_factory=list)  # what the user should check (a repaired mask)
    _intervals: dict[int, list[tuple[int, int]]] = field(default_factory=dict, repr=False)

    @property
    def tile_px(self) -> int:
        """Pixels per tile side as read for the model (the card's input_size)."""
        return self.tile_cells * self.cell_px

    @property
    def width(self) -> int:
        """Cells per row of the output raster."""
        return self.cols[1] - self.cols[0]

    @property
    def height(self) -> int:
        """Cell rows of the output raster."""
        return self.rows[1] - self.rows[0]

    @property
    def transform(self) -> Affine:
        """Georeferencing of the output raster (one pixel per cell)."""
        return Affine(
            self.cell, 0.0, self.x0 + self.cols[0] * self.cell, 0.0, -self.cell, self.y0 - self.rows[0] * self.cell
        )

    @property
    def cell_hectares(self) -> float:
        """Ground area of one cell."""
        return self.cell_m * self.cell_m / 10_000.0

    def tile_rows(self) -> range:
        """Tile rows in reading order: every tile covering a cell of the area starts in one of them."""
        return range(self.rows[0] - self.tile_cells + 1, self.rows[1])

    def cell_intervals(self, row: int) -> list[tuple[int, int]]:
        """Runs [start, end) of the cells of ``row`` that overlap the area."""
        if self.area is None:
            return [self.cols] if self.rows[0] <= row < self.rows[1] else []
        if row not in self._intervals:
            self._intervals[row] = self._row_intervals(row)
        return self._intervals[row]

    def tile_runs(self, tile_row: int) -> list[tuple[int, int]]:
        """Runs [start, end) of the columns where tiles of ``tile_row`` start.

        A tile exists when it covers at least one cell of the area. Rows above ``tile_row``
        are forgotten: rows are read in order.
        """
        n = self.tile_cells
        for old in [r for r in self._intervals if r < tile_row]:
            del self._intervals[old]
        spans = [(a - n + 1, b) for r in range(tile_row, tile_row + n) for a, b in self.cell_intervals(r)]
        return _merge(spans)

    def run_bounds(self, tile_row: int, start: int, end: int) -> Bounds:
        """Bounds of the strip holding the tiles of ``tile_row`` starting at columns [start, end)."""
        top = self.y0 - tile_row * self.cell
        return (
            self.x0 + start * self.cell,
            top - self.tile_cells * self.cell,
            self.x0 + (end - 1 + self.tile_cells) * self.cell,
            top,
        )

    def reach(self) -> Bounds:
        """Bounds in the grid CRS of every tile the grid reads: its cells and a tile's side around them."""
        margin = self.tile_cells * self.cell
        left, top = self.x0 + self.cols[0] * self.cell, self.y0 - self.rows[0] * self.cell
        right, bottom = left + self.width * self.cell, top - self.height * self.cell
        return (left - margin, bottom - margin, right + margin, top + margin)

    def tile_boxes(self, tile_row: int, cols: np.ndarray) -> np.ndarray:
        """The tiles' squares (shapely polygons) in the grid CRS."""
        left = self.x0 + np.asarray(cols, dtype=np.float64) * self.cell
        top = self.y0 - tile_row * self.cell
        side = self.tile_cells * self.cell
        return shapely.box(left, top - side, left + side, np.full_like(left, top))

    def _row_intervals(self, row: int) -> list[tuple[int, int]]:
        if not self.rows[0] <= row < self.rows[1]:
            return []
        top = self.y0 - row * self.cell
        strip = shapely.box(
            self.x0 + self.cols[0] * self.cell, top - self.cell, self.x0 + self.cols[1] * self.cell, top
        )
        piece = shapely.intersection(self.area, strip)
        spans = []
        for part in shapely.get_parts(piece):
            # A connected piece with area crosses every cell column between its x extremes.
            if shapely.area(part) > (_EPS * self.cell) ** 2:
                xmin, _, xmax, _ = part.bounds
                spans.append(
                    (math.floor((xmin - self.x0) / self.cell + _EPS), math.ceil((xmax - self.x0) / self.cell - _EPS))
                )
        return _merge(spans)


def build_grid(info: RasterInfo, card: ModelCard, area: Area | None = None, stride: int | None = None) -> Grid:
    """Lay the model's tile grid over ``area`` of the raster described by ``info``.

    Raises InputError for a bad stride, a raster smaller than one tile, or an area that is
    empty or does not overlap the raster.
    """
    stride = card.tile_size if stride is None else int(stride)
    cell_px = check_stride(stride, card)
    footprint = shapely.box(*info.bounds)
    warnings: list[str] = []
    region = _area_in_raster_crs(area or Area(), info, footprint, warnings)
    whole = area is None or (area.bounds is None and area.geometries is None)
    _check_antimeridian(info, region.bounds, info.name if whole else "The area")
    xmin, ymin, xmax, ymax = region.bounds
    grid_wkt, metres_per_unit, note = choose_grid_crs(info, (xmin + xmax) / 2, (ymin + ymax) / 2)
    cell = stride * card.gsd_m / metres_per_unit
    warnings.extend(_coarse_pixels_warning(info, card, region.centroid, grid_wkt, metres_per_unit))
    if grid_wkt == info.crs_wkt:
        x0, y0 = info.bounds[0], info.bounds[3]  # tiles on whole pixels
        _check_size(info, footprint, card, metres_per_unit)
    else:
        what = info.name if whole else "The area"
        if crs.utm_scale_error(region, info.crs_wkt, grid_wkt) > crs.MAX_SCALE_ERROR:
            if crs.utm_scale_error(region, info.crs_wkt, grid_wkt, polar=True) <= crs.MAX_SCALE_ERROR:
                _check_utm_latitudes(region, info, what)  # narrow enough: the pole is the reason
            raise InputError(
                f"{what} spans too much of the globe for one metric grid: {crs.describe(grid_wkt)} is true to "
                f"{crs.MAX_SCALE_ERROR:.0%} only within about 8 degrees of longitude of its central meridian; "
                "classify a smaller bounding box or mask."
            )
        region = crs.transform_geometry(region, info.crs_wkt, grid_wkt)
        if crs.utm_scale_error(footprint, info.crs_wkt, grid_wkt) <= crs.MAX_SCALE_ERROR:
            # Anchored at the top-left of the raster's footprint, like a projected raster's grid.
            outline = crs.transform_geometry(footprint, info.crs_wkt, grid_wkt)
            _check_size(info, outline, card, metres_per_unit)
            x0, y0 = outline.bounds[0], outline.bounds[3]
        else:
            # A layer too big for the zone (a world XYZ layer): a lattice on round coordinates.
            x0 = math.floor(region.bounds[0] / cell) * cell
            y0 = math.ceil(region.bounds[3] / cell) * cell
    xmin, ymin, xmax, ymax = region.bounds
    rows = (math.floor((y0 - ymax) / cell + _EPS), math.ceil((y0 - ymin) / cell - _EPS))
    cols = (math.floor((xmin - x0) / cell + _EPS), math.ceil((xmax - x0) / cell - _EPS))
    # An axis-parallel rectangle (the whole raster in its own CRS, a box in the grid CRS)
    # overlaps every cell of its envelope: no per-row geometry needed.
    envelope = shapely.box(*region.bounds)
    rectangular = abs(shapely.area(region) - shapely.area(envelope)) <= 1e-9 * shapely.area(envelope)
    return Grid(
        crs_wkt=grid_wkt,
        crs_note=note,
        x0=x0,
        y0=y0,
        cell=cell,
        cell_m=stride * card.gsd_m,
        tile_cells=card.tile_size // stride,
        cell_px=cell_px,
        rows=rows,
        cols=cols,
        area=None if rectangular else region,
        warnings=warnings,
    )


def choose_grid_crs(info: RasterInfo, x: float, y: float) -> tuple[str, float, str]:
    """The CRS the grid is laid in, its metres per unit, and why it was chosen.

    (x, y), in the raster's CRS, is the centre of what is classified: where the scale is
    checked and whose UTM zone is taken.
    """
    metres_per_unit = crs.metres_per_unit(info.crs_wkt)
    raster_crs = crs.describe(info.crs_wkt)
    if metres_per_unit is not None:
        try:
            error = crs.scale_error(info.crs_wkt, x, y)
        except (InputError, RuntimeError):
            # A local (engineering) CRS has no link to the globe: trust its units.
            return info.crs_wkt, metres_per_unit, f"{raster_crs} (the raster's CRS; scale not checkable)"
        if error <= crs.MAX_SCALE_ERROR:
            return info.crs_wkt, metres_per_unit, f"{raster_crs} (the raster's CRS)"
        reason = f"distorts distances by {error:.0%} here"
    else:
        reason = "geographic (degrees)"
    lon, lat = crs.lonlat(x, y, info.crs_wkt)
    utm = crs.utm_wkt(lon, lat)
    return utm, 1.0, f"{crs.describe(utm)} (the raster's CRS {raster_crs} is {reason}; tiles measure true metres)"


def _check_antimeridian(info: RasterInfo, bounds: Bounds, what: str) -> None:
    """InputError when the area to classify (``bounds``, of a raster in degrees) reaches beyond longitude +-180.

    Readers fold longitudes into -180..180, so the part beyond the antimeridian would read
    as nodata (GDAL's warper and QGIS's projector alike); a raster in its UTM zone has no
    such seam. A 0..360 raster can still be classified west of 180 with a box or mask.
    """
    xmin, ymin, xmax, ymax = bounds
    if crs.metres_per_unit(info.crs_wkt) is not None or not crs.srs_from_wkt(info.crs_wkt).IsGeographic():
        return
    if xmin >= -180.0 - 1e-9 and xmax <= 180.0 + 1e-9:
        return
    edge = 180.0 if xmax > 180.0 else -180.0
    utm = crs.utm_epsg(edge, (ymin + ymax) / 2)
    raise InputError(
        f"{what} crosses the antimeridian (longitudes {xmin:.6g} to {xmax:.6g} in {crs.describe(info.crs_wkt)}): "
        f"the part beyond {edge:+g} degrees cannot be read in a metric grid; reproject it first, e.g. "
        f"`gdalwarp -t_srs EPSG:{utm} IN.tif OUT.tif` (QGIS: Raster > Projections > Warp), or split it at 180 degrees."
    )


def _check_utm_latitudes(region, info: RasterInfo, what: str) -> None:
    """InputError when the area reaches beyond 84 N or 80 S, where UTM zones are not defined."""
    try:
        _, lat0, _, lat1 = crs.lonlat_bounds(region, info.crs_wkt)
    except InputError:
        return  # no image in WGS 84: the scale check says what is wrong
    if lat1 > crs.UTM_NORTH:
        where, limit, ups = f"{lat1:.2f} N", f"{crs.UTM_NORTH:g} N", crs.UPS_EPSG["north"]
    elif lat0 < crs.UTM_SOUTH:
        where, limit, ups = f"{-lat0:.2f} S", f"{-crs.UTM_SOUTH:g} S", crs.UPS_EPSG["south"]
    else:
        return
    pole = "North" if ups == crs.UPS_EPSG["north"] else "South"
    raise InputError(
        f"{what} reaches {where}: its metric grid would be laid in a UTM zone, and UTM is not defined beyond "
        f"{limit}. Reproject the raster to UPS {pole}, true to scale near the pole (`gdalwarp -t_srs EPSG:{ups} "
        f"IN.tif OUT.tif`; QGIS: Raster > Projections > Warp), or classify a bounding box or mask short of {limit}."
    )


def _raster_pixel_m(info: RasterInfo, centre, grid_wkt: str, metres_per_unit: float) -> float:
    """The raster's larger pixel side in metres at ``centre`` (a point in the raster's CRS)."""
    (px, py), x, y = info.pixel_size, centre.x, centre.y
    corners = np.array([[x, y], [x + px, y], [x, y + py]])
    if grid_wkt != info.crs_wkt:
        corners = crs.transform_xy(corners, info.crs_wkt, grid_wkt)
    sides = np.hypot(*(corners[1:] - corners[0]).T) * metres_per_unit
    return float(sides.max())


def _coarse_pixels_warning(info: RasterInfo, card: ModelCard, centre, grid_wkt: str, metres_per_unit: float):
    """A warning when the raster's pixels are much coarser than the model's: its tiles are upsampled blur."""
    pixel_m = _raster_pixel_m(info, centre, grid_wkt, metres_per_unit)
    factor = pixel_m / card.gsd_m
    if not factor >= COARSE_PIXELS_FACTOR:
        return []
    across = card.tile_size_m / pixel_m
    return [
        f"{info.name} has {pixel_m:,.0f} m pixels, {factor:,.0f}x coarser than the model's {card.gsd_m:g} m: each "
        f"{card.tile_size_m:g} m tile holds only about {across:,.1f} x {across:,.1f} of them, upsampled, which the "
        f"model never saw in training, so the classes mean little. Use imagery near {card.gsd_m:g} m."
    ]


def _check_size(info: RasterInfo, footprint, card: ModelCard, metres_per_unit: float) -> None:
    xmin, ymin, xmax, ymax = footprint.bounds
    width_m, height_m = (xmax - xmin) * metres_per_unit, (ymax - ymin) * metres_per_unit
    if min(width_m, height_m) < card.tile_size_m * (1 - _EPS):
        raise InputError(
            f"{info.name} covers {width_m:,.0f} x {height_m:,.0f} m on the ground, smaller than one tile of the "
            f"model ({card.tile_size} px at {card.gsd_m:g} m = {card.tile_size_m:g} m): nothing to classify. "
            "Use a larger raster or a model with smaller tiles."
        )


def _area_in_raster_crs(area: Area, info: RasterInfo, footprint, warnings: list[str]):
    """The area in the raster's CRS, clipped to the raster; InputError when empty or outside.

    A repaired mask adds a line to ``warnings``.
    """
    if area.bounds is None and area.geometries is None:
        return footprint
    # No CRS (or a GeoPackage's 'Undefined' placeholder, as QGIS passes it on): the raster's.
    area_wkt = info.crs_wkt if crs.is_undefined(area.crs_wkt) else area.crs_wkt
    if area.geometries is not None:
        what = "mask"
        shape = _mask_shape(area.geometries, warnings)
    else:
        what = "bounding box"
        xmin, ymin, xmax, ymax = area.bounds
        if not all(math.isfinite(v) for v in area.bounds):
            raise OptionError(
                "bbox",
                "The bounding box ({bbox}) {bounds} has a coordinate that is not a finite number; give finite "
                "xmin, ymin, xmax, ymax.",
                bounds=area.bounds,
            )
        if not (xmin < xmax and ymin < ymax):
            raise InputError(f"The bounding box {area.bounds} is empty; give xmin < xmax and ymin < ymax.")
        shape = shapely.box(xmin, ymin, xmax, ymax)
    extent = ", ".join(f"{v:.6g}" for v in shape.bounds)
    region = _overlap(shape, area_wkt, info, footprint)
    if region is None:
        raise InputError(
            f"The {what} ({extent} in {crs.describe(area_wkt)}) cannot be placed over {info.name}; "
            "check its coordinates and CRS."
        )
    if shapely.area(region) <= 0:
        raster_extent = ", ".join(f"{v:.6g}" for v in info.bounds)
        raise InputError(
            f"The {what} ({extent} in {crs.describe(area_wkt)}) does not overlap {info.name} "
            f"({raster_extent} in {crs.describe(info.crs_wkt)}); check its coordinates and CRS."
        )
    return region


def _overlap(shape, area_wkt: str, info: RasterInfo, footprint):
    """``shape`` (in ``area_wkt``) in the raster's CRS, clipped to ``footprint``; None when it cannot be placed there.

    A mask or box far larger than the raster (the whole world, a hemisphere in EPSG:4326) has
    points with no place in the raster's projection, or folds over itself there. Such a shape
    is first cut to the raster's surroundings in its own CRS, which leaves the part that counts.
    """
    try:
        region = shapely.intersection(crs.transform_geometry(shape, area_wkt, info.crs_wkt), footprint)
    except InputError:
        region = None
    if region is not None and shapely.area(region) > 0:
        return region
    try:
        outline = crs.transform_geometry(footprint, info.crs_wkt, area_wkt)
        xmin, ymin, xmax, ymax = outline.bounds
        margin = 0.05 * max(xmax - xmin, ymax - ymin)
        near = shapely.intersection(shape, shapely.box(xmin - margin, ymin - margin, xmax + margin, ymax + margin))
        if shapely.area(near) <= 0:
            return region if region is not None else near  # truly apart: "does not overlap"
        return shapely.intersection(crs.transform_geometry(near, area_wkt, info.crs_wkt), footprint)
    except InputError:
        return region


def _mask_shape(geometries: list, warnings: list[str]):
    """The union of the mask's polygons, invalid ones (a self-intersecting ring) repaired first.

    A bow-tie ring has zero signed area, so it is repaired before polygons without area are
    dropped; the repair is reported because it may not be what was drawn.
    """
    shapes = np.asarray([g for g in geometries if g is not None and not g.is_empty], dtype=object)
    valid = shapely.is_valid(shapes)
    repaired = shapely.make_valid(shapes)
    kept = shapely.area(repaired) > 0
    polygons, invalid = list(repaired[kept]), int((kept & ~valid).sum())
    if not polygons:
        raise InputError("The mask is empty: it has no polygon with an area. Draw or select polygons to classify.")
    if invalid:
        warnings.append(
            OptionText(
                "{mask}: {count} invalid polygon{plural} (self-intersecting or badly nested rings) repaired "
                "with make_valid before use; check the tiles it selects, or fix the polygons (QGIS: Vector > "
                "Geometry Tools > Fix Geometries).",
                count=invalid,
                plural="s" if invalid > 1 else "",
            )
        )
    return shapely.union_all(polygons)


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged
