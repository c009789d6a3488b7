import math

import numpy as np
import pytest
import shapely

from rs_ghost_qgis.core.classify.grid import build_grid
from rs_ghost_qgis.core.crs import describe, to_wkt, transform_geometry, transform_xy
from rs_ghost_qgis.core.errors import InputError
from rs_ghost_qgis.core.options import Area
from rs_ghost_qgis.core.sources.source import RasterInfo
from tests.tiny_model import tiny_card

UTM33 = to_wkt("EPSG:32633")
WGS84 = to_wkt("EPSG:4326")


def _info(bounds, crs_wkt=UTM33, pixel=(10.0, 10.0)):
    width = round((bounds[2] - bounds[0]) / pixel[0])
    height = round((bounds[3] - bounds[1]) / pixel[1])
    return RasterInfo("r", width, height, 3, "uint8", crs_wkt, bounds, pixel, (None,) * 3, ("",) * 3)


def _all_tiles(grid):
    boxes = []
    for row in grid.tile_rows():
        for start, end in grid.tile_runs(row):
            boxes.extend(grid.tile_boxes(row, np.arange(start, end)))
    return boxes


def test_projected_raster_grid_lies_on_its_pixels_and_covers_it():
    bounds = (500_000.0, 5_999_000.0, 501_000.0, 6_000_000.0)  # 100 x 100 px at 10 m
    grid = build_grid(_info(bounds), tiny_card())
    assert grid.crs_wkt == UTM33 and grid.cell == 320.0 and grid.tile_cells == 1
    assert (grid.rows, grid.cols) == ((0, 4), (0, 4))  # 1000 m / 320 m -> 4 tiles, the last padded
    assert grid.area is None  # the raster is a rectangle on the grid: no per-row geometry
    tiles = _all_tiles(grid)
    assert len(tiles) == 16
    for tile in tiles:
        xmin, ymin, xmax, ymax = tile.bounds
        assert (xmin - bounds[0]) % 320 == 0 and (bounds[3] - ymax) % 320 == 0  # exactly on the grid
        assert xmax - xmin == 320 and ymax - ymin == 320
        assert (xmin - bounds[0]) % 10 == 0  # on whole raster pixels
    union = shapely.union_all(tiles)
    assert union.contains(shapely.box(*bounds))
    assert math.isclose(union.area, sum(t.area for t in tiles))  # no overlap: areas add up
    assert grid.transform.a == 320 and (grid.transform.c, grid.transform.f) == (bounds[0], bounds[3])


def test_geographic_raster_gets_metric_tiles_in_local_utm():
    bounds = (13.176, 53.879, 13.232, 53.901)  # the Demmin scene, degrees
    grid = build_grid(_info(bounds, WGS84, (9e-5, 9e-5)), tiny_card(input_size=64, tile_size=64))
    assert describe(grid.crs_wkt).startswith("EPSG:32633")
    assert "geographic" in grid.crs_note
    assert grid.cell == 640.0 and grid.cell_m == 640.0
    for tile in _all_tiles(grid):
        xmin, ymin, xmax, ymax = tile.bounds
        assert math.isclose(xmax - xmin, 640.0) and math.isclose(ymax - ymin, 640.0)
    # The tiles cover the raster's footprint.
    footprint = transform_geometry(shapely.box(*bounds), WGS84, grid.crs_wkt)
    assert shapely.union_all(_all_tiles(grid)).contains(footprint)


def test_web_mercator_far_from_the_equator_uses_utm_but_not_at_the_equator():
    mercator = to_wkt("EPSG:3857")
    ((x, y),) = transform_xy([[13.2, 53.9]], WGS84, mercator)
    north = build_grid(_info((x, y, x + 5000, y + 5000), mercator), tiny_card())
    assert describe(north.crs_wkt).startswith("EPSG:32633") and "distorts" in north.crs_note
    ((x, y),) = transform_xy([[13.2, 0.1]], WGS84, mercator)
    equator = build_grid(_info((x, y, x + 5000, y + 5000), mercator), tiny_card())
    assert equator.crs_wkt == mercator and equator.cell == 320.0


def test_feet_are_converted():
    feet = to_wkt("EPSG:2263")  # NY Long Island, US survey feet
    ((x, y),) = transform_xy([[-73.9, 40.7]], WGS84, feet)
    grid = build_grid(_info((x, y, x + 10_000, y + 10_000), feet, (3.0, 3.0)), tiny_card())
    assert grid.crs_wkt == feet
    assert math.isclose(grid.cell * 0.3048006096, 320.0, rel_tol=1e-9)


def test_stride_makes_a_finer_cell_lattice_with_leading_tiles():
    bounds = (500_000.0, 5_999_360.0, 500_640.0, 6_000_000.0)  # 2 x 2 tiles
    grid = build_grid(_info(bounds), tiny_card(), stride=16)
    assert grid.tile_cells == 2 and grid.cell == 160.0 and grid.cell_px == 16
    assert (grid.rows, grid.cols) == ((0, 4), (0, 4))
    assert list(grid.tile_rows()) == [-1, 0, 1, 2, 3]
    assert grid.tile_runs(0) == [(-1, 4)]  # every cell gets all 2 x 2 tiles covering it
    assert len(_all_tiles(grid)) == 25


@pytest.mark.parametrize("stride", [0, 5, 33, 64])
def test_bad_stride(stride):
    with pytest.raises(InputError, match="choose one of 1, 2, 4, 8, 16, 32"):
        build_grid(_info((0.0, 0.0, 1000.0, 1000.0)), tiny_card(), stride=stride)


def test_bbox_in_another_crs_selects_the_tiles_it_overlaps():
    bounds = (500_000.0, 5_997_440.0, 502_560.0, 6_000_000.0)  # 8 x 8 tiles
    box_utm = (500_400.0, 5_998_500.0, 501_000.0, 5_999_000.0)
    ring = transform_geometry(shapely.box(*box_utm), UTM33, WGS84)
    grid = build_grid(_info(bounds), tiny_card(), Area(bounds=ring.bounds, crs_wkt=WGS84))
    # The lon/lat box is a little larger than the UTM box it came from: 3 to 4 tiles a side.
    assert grid.cols[0] == 1 and grid.cols[1] in (4, 5) and grid.rows[0] in (3, 4) and grid.rows[1] == 5
    tiles = _all_tiles(grid)
    area = transform_geometry(shapely.box(*ring.bounds), WGS84, UTM33)
    assert all(shapely.intersection(t, area).area > 0 for t in tiles)
    assert shapely.union_all(tiles).contains(area)


def test_mask_polygons_select_only_their_tiles():
    bounds = (500_000.0, 5_997_440.0, 502_560.0, 6_000_000.0)  # 8 x 8 tiles
    # Two small squares far apart, given in WGS 84.
    squares = [shapely.box(500_050, 5_999_800, 500_100, 5_999_850), shapely.box(502_000, 5_997_500, 502_100, 5_997_600)]
    mask = [transform_geometry(s, UTM33, WGS84) for s in squares]
    grid = build_grid(_info(bounds), tiny_card(), Area(geometries=mask, crs_wkt=WGS84))
    tiles = _all_tiles(grid)
    assert len(tiles) == 2
    assert {(t.bounds[0], t.bounds[3]) for t in tiles} == {(500_000.0, 6_000_000.0), (501_920.0, 5_997_760.0)}


def test_empty_mask():
    with pytest.raises(InputError, match="mask is empty"):
        build_grid(_info((0.0, 0.0, 1000.0, 1000.0)), tiny_card(), Area(geometries=[]))
    with pytest.raises(InputError, match="mask is empty"):
        build_grid(_info((0.0, 0.0, 1000.0, 1000.0)), tiny_card(), Area(geometries=[shapely.Point(5, 5)]))


def test_mask_or_bbox_outside_the_raster():
    info = _info((500_000.0, 5_999_000.0, 501_000.0, 6_000_000.0))
    far = shapely.box(600_000, 5_000_000, 601_000, 5_001_000)
    with pytest.raises(InputError, match="does not overlap r"):
        build_grid(info, tiny_card(), Area(geometries=[far]))
    with pytest.raises(InputError, match="bounding box .* does not overlap"):
        build_grid(info, tiny_card(), Area(bounds=(10.0, 40.0, 10.1, 40.1), crs_wkt=WGS84))


def test_empty_bbox():
    with pytest.raises(InputError, match="is empty"):
        build_grid(_info((0.0, 0.0, 1000.0, 1000.0)), tiny_card(), Area(bounds=(5.0, 5.0, 5.0, 9.0)))


def test_raster_smaller_than_one_tile():
    with pytest.raises(InputError, match="smaller than one tile"):
        build_grid(_info((500_000.0, 5_999_800.0, 500_200.0, 6_000_000.0)), tiny_card())


def test_world_layer_uses_the_zone_and_scale_of_the_classified_area():
    """XYZ / WMS layers cover the world; what matters is where the classified box is."""
    mercator = to_wkt("EPSG:3857")
    world = _info((-20037508.34, -20037508.34, 20037508.34, 20037508.34), mercator, (2.4, 2.4))
    demmin = Area(bounds=(13.18, 53.88, 13.23, 53.90), crs_wkt=WGS84)
    grid = build_grid(world, tiny_card(), demmin)
    assert describe(grid.crs_wkt).startswith("EPSG:32633") and "distorts distances by 70%" in grid.crs_note
    assert grid.cell == 320.0 and (grid.x0 % 320, grid.y0 % 320) == (0.0, 0.0)  # round lattice
    tiles = _all_tiles(grid)
    assert 80 <= len(tiles) <= 100  # about 3.3 x 2.2 km: 11-12 x 8 tiles of 320 m
    assert all(math.isclose(t.area, 320 * 320) for t in tiles)


def test_whole_world_in_degrees_asks_for_an_area():
    world = _info((-180.0, -90.0, 180.0, 90.0), WGS84, (0.01, 0.01))
    with pytest.raises(InputError, match="r spans too much of the globe.*smaller bounding box or mask"):
        build_grid(world, tiny_card())
    with pytest.raises(InputError, match="The area spans too much of the globe"):
        build_grid(world, tiny_card(), Area(bounds=(0.0, 40.0, 30.0, 50.0)))
    grid = build_grid(world, tiny_card(), Area(bounds=(13.18, 53.88, 13.23, 53.90)))
    assert describe(grid.crs_wkt).startswith("EPSG:32633")


@pytest.mark.parametrize(
    ("crs_wkt", "bounds", "pixel", "factor"),
    [
        (UTM33, (500_000.0, 5_970_000.0, 530_000.0, 6_000_000.0), (300.0, 300.0), "30x"),  # Landsat browse
        (WGS84, (13.0, 53.5, 13.5, 54.0), (0.01, 0.01), "111x"),  # 0.01 deg: the larger side, 1,113 m north-south
    ],
)
def test_pixels_far_coarser_than_the_model_s_are_a_warning_with_the_factor(crs_wkt, bounds, pixel, factor):
    grid = build_grid(_info(bounds, crs_wkt, pixel), tiny_card())
    [warning] = [w for w in grid.warnings if "coarser" in w]
    assert f"{factor} coarser than the model's 10 m" in warning and "Use imagery near 10 m" in warning


@pytest.mark.parametrize("pixel", [10.0, 30.0])  # the model's own, and Landsat's 3x: fine
def test_pixels_near_the_model_s_give_no_coarseness_warning(pixel):
    grid = build_grid(_info((500_000.0, 5_990_000.0, 510_000.0, 6_000_000.0), pixel=(pixel, pixel)), tiny_card())
    assert not [w for w in grid.warnings if "coarser" in w]
