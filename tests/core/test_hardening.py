"""Issue 12, the rest: antimeridian, unreadable blocks, the poles, repaired masks, --bbox -x (evaluate's shape check:
tests/training/test_hardening_training.py).

Each test writes its own inputs and runs the command line as a user would (``main``), and
checks the one-line message, the exit code and that nothing was left behind.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from osgeo import gdal, ogr

from rs_ghost_qgis.cli.main import glue_bbox, main
from tests.core.engine_data import ORIGIN, class_pattern, write_mask, write_raster

PATTERN = np.array([[0, 1, 2], [2, 1, 0], [1, 1, 1]])
X0, Y0 = ORIGIN


def _error_line(capfd) -> str:
    """The last stderr line, checked to be the only error said (no traceback, no GDAL 'ERROR 1:' lines)."""
    err = capfd.readouterr().err
    assert "Traceback" not in err and "ERROR 1" not in err and "ERROR 4" not in err, err
    lines = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


def _classify(raster: Path, model: Path, out: Path, *extra: str) -> int:
    return main(
        ["classify", str(raster), "--model", str(model), "--out-vector", str(out / "t.gpkg")]
        + ["--out-raster", str(out / "c.tif"), "--threads", "1", *extra]
    )


def _geographic(path: Path, west: float, width_deg: float, lat: float = -16.0) -> Path:
    """A 4326 raster of coloured tiles from longitude ``west``, ``width_deg`` wide (about 10 m pixels)."""
    image = class_pattern(np.array([[0, 1, 2, 0, 1, 2]] * 2), 100)
    pixel = width_deg / image.shape[2]
    return write_raster(path, image, crs="EPSG:4326", res=(pixel, pixel), origin=(west, lat))


def _tile_widths(path: Path) -> list[float]:
    ds = ogr.Open(str(path))
    widths = []
    for feature in ds.GetLayer(0):
        xmin, xmax, _, _ = feature.GetGeometryRef().GetEnvelope()
        widths.append(xmax - xmin)
    return widths


# --- (3) the antimeridian ---------------------------------------------------------------------


def test_raster_across_the_antimeridian_is_refused_with_the_fix(tiny_model, tmp_path, capfd):
    raster = _geographic(tmp_path / "fiji.tif", 179.98, 0.06)  # 179.98 .. 180.04
    out = tmp_path / "out"
    assert _classify(raster, tiny_model, out) == 2
    line = _error_line(capfd)
    assert "crosses the antimeridian" in line and "179.98 to 180.04" in line
    assert "gdalwarp -t_srs EPSG:32760" in line  # its UTM zone, south
    assert not out.exists() or not any(out.iterdir())


def test_part_of_a_raster_across_the_antimeridian_west_of_it_classifies(tiny_model, tmp_path, capfd):
    # Only the area is checked: a box west of 180 (or a 0..360 raster's -180..180 part) reads fine.
    raster = _geographic(tmp_path / "fiji.tif", 179.98, 0.06)
    out = tmp_path / "out"
    assert _classify(raster, tiny_model, out, "--bbox", "179.98,-16.02,179.99,-16.0") == 0
    assert _classify(raster, tiny_model, tmp_path / "out2", "--bbox", "179.99,-16.02,180.03,-16.0") == 2
    assert "The area crosses the antimeridian" in _error_line(capfd)


@pytest.mark.parametrize("west", [179.94, -180.0])
def test_tiles_sticking_over_the_antimeridian_stay_small_squares(tiny_model, tmp_path, capfd, west):
    # The raster ends (or starts) at the antimeridian; edge tiles stick over it. Their polygons
    # used to come back around the globe (179.99 .. -179.99 read as 360 degrees wide).
    raster = _geographic(tmp_path / "edge.tif", west, 0.06)
    out = tmp_path / "out"
    assert _classify(raster, tiny_model, out) == 0
    widths = _tile_widths(out / "t.gpkg")
    assert widths and max(widths) < 0.01  # a 320 m tile is 0.003 degrees wide at 16 S


# --- (6) unreadable blocks ----------------------------------------------------------------------


def _truncated(tmp_path: Path) -> Path:
    """A tiled GeoTIFF cut to two thirds of its bytes, as an interrupted download leaves it."""
    whole = write_raster(
        tmp_path / "whole.tif",
        class_pattern(np.array([[0, 1, 2, 0]] * 4), 64),
        tiled=True,
        blockxsize=64,
        blockysize=64,
    )
    data = whole.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: len(data) * 2 // 3])
    return cut


def _orphan_vrt(tmp_path: Path) -> Path:
    """A VRT whose source file was deleted after it was built."""
    source = write_raster(tmp_path / "source.tif", class_pattern(PATTERN, 32))
    vrt = tmp_path / "mosaic.vrt"
    gdal.BuildVRT(str(vrt), [str(source)]).FlushCache()
    os.remove(source)
    return vrt


@pytest.mark.parametrize(
    "make, reason",
    [(_truncated, "TIFFReadEncodedTile"), (_orphan_vrt, "source.tif: No such file or directory")],
    ids=["truncated-geotiff", "vrt-source-gone"],
)
def test_unreadable_block_is_one_error_naming_file_and_block(tiny_model, tmp_path, capfd, make, reason):
    raster = make(tmp_path)
    out = tmp_path / "out"
    assert _classify(raster, tiny_model, out) == 2
    line = _error_line(capfd)
    assert f"Cannot read the block of {raster}" in line and "pixel columns" in line and reason in line
    assert "damaged or incomplete" in line
    assert not out.exists() or not any(out.iterdir())  # no output, no temporary


def _truncated_in_degrees(tmp_path: Path) -> Path:
    """A tiled EPSG:4326 GeoTIFF cut in half: its tiles are read through GDAL's warper, in UTM."""
    image = class_pattern(np.array([[0, 1, 2, 0]] * 4), 64)
    options = {"tiled": True, "blockxsize": 64, "blockysize": 64}
    whole = write_raster(tmp_path / "whole.tif", image, crs="EPSG:4326", res=1e-4, origin=(13.0, 54.0), **options)
    data = whole.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: len(data) // 2])
    return cut


def test_unreadable_block_in_a_reprojected_read(tiny_model, tmp_path, capfd):
    raster = _truncated_in_degrees(tmp_path)
    out = tmp_path / "out"
    assert _classify(raster, tiny_model, out) == 2
    line = _error_line(capfd)
    assert f"Cannot read the block of {raster} at x " in line and "in EPSG:32633" in line
    assert "TIFFReadEncodedTile" in line
    assert not out.exists() or not any(out.iterdir())


# --- (11) the poles, a self-intersecting mask, --bbox -x -------------------------------------------


@pytest.mark.parametrize("lat, words", [(85.5, ("85.50 N", "84 N", "EPSG:32661")), (-81.0, ("80 S", "EPSG:32761"))])
def test_polar_raster_says_utm_is_undefined_and_how_to_reproject(tiny_model, tmp_path, capfd, lat, words):
    image = class_pattern(np.array([[0, 1, 2, 0, 1, 2]] * 2), 100)
    raster = write_raster(tmp_path / "polar.tif", image, crs="EPSG:4326", res=(5e-4, 1e-4), origin=(10.0, lat))
    assert _classify(raster, tiny_model, tmp_path / "out") == 2
    line = _error_line(capfd)
    assert "UTM is not defined beyond" in line and "spans too much" not in line
    assert all(word in line for word in words), line


def test_raster_in_ups_near_the_pole_classifies(tiny_model, tmp_path, capfd):
    # What the polar message proposes works: UPS North is true to 1 % there, the raster's own grid.
    raster = write_raster(tmp_path / "ups.tif", class_pattern(PATTERN, 32), crs="EPSG:32661", origin=(2.0e6, 2.5e6))
    out = tmp_path / "out"
    assert _classify(raster, tiny_model, out) == 0
    with rasterio.open(out / "c.tif") as ds:
        np.testing.assert_array_equal(ds.read(1), PATTERN)


def test_self_intersecting_mask_is_repaired_with_a_warning(tiny_model, tmp_path, capfd):
    raster = write_raster(tmp_path / "scene.tif", class_pattern(PATTERN, 32))
    # A bow tie over the 3 x 3 tiles: its signed area is 0, so it used to be "empty".
    x1, y1 = X0 + 960, Y0 - 960
    mask = write_mask(tmp_path / "bowtie.gpkg", f"POLYGON(({X0} {Y0}, {x1} {y1}, {x1} {Y0}, {X0} {y1}, {X0} {Y0}))")
    out = tmp_path / "out"
    assert _classify(raster, tiny_model, out, "--mask", str(mask)) == 0
    err = capfd.readouterr().err
    assert "warning: --mask: 1 invalid polygon" in err and "make_valid" in err
    with rasterio.open(out / "c.tif") as ds:
        classes = ds.read(1)
    assert (classes != 255).sum() >= 5  # the two triangles' tiles: the diagonals and more


def test_bbox_starting_with_a_minus_sign_is_taken_as_its_value(tiny_model, tmp_path, capfd):
    # West of Greenwich, near the equator: Web Mercator is true to scale there, the raster's own grid.
    origin = (-1_500_000.0, 100_000.0)
    raster = write_raster(tmp_path / "west.tif", class_pattern(PATTERN, 32), crs="EPSG:3857", origin=origin)
    box = f"{origin[0]},{origin[1] - 640},{origin[0] + 640},{origin[1]}"  # the top-left 2 x 2 tiles
    out = tmp_path / "out"
    assert _classify(raster, tiny_model, out, "--bbox", box) == 0
    with rasterio.open(out / "c.tif") as ds:
        np.testing.assert_array_equal(ds.read(1), PATTERN[:2, :2])
    assert glue_bbox(["--bbox", "-1,2,3,4", "--bands", ""]) == ["--bbox=-1,2,3,4", "--bands", ""]
    assert glue_bbox(["--bbox", "--overwrite"]) == ["--bbox", "--overwrite"]  # argparse says what is missing


def test_geopackage_mask_without_crs_is_in_the_rasters_crs(tiny_model, tmp_path, capfd):
    # GDAL writes "no CRS" as srs_id 0, read back as 'Undefined geographic SRS': the mask was
    # then placed in degrees and refused ("cannot be placed over"), against the documented rule.
    raster = write_raster(tmp_path / "scene.tif", class_pattern(PATTERN, 32))
    path = tmp_path / "nocrs.gpkg"
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = ds.CreateLayer("mask", None, ogr.wkbPolygon)
    feature = ogr.Feature(layer.GetLayerDefn())
    x1, y1 = X0 + 300, Y0 - 300
    feature.SetGeometry(ogr.CreateGeometryFromWkt(f"POLYGON(({X0} {Y0}, {x1} {Y0}, {x1} {y1}, {X0} {y1}, {X0} {Y0}))"))
    layer.CreateFeature(feature)
    ds = None
    out = tmp_path / "out"
    assert _classify(raster, tiny_model, out, "--mask", str(path)) == 0
    with rasterio.open(out / "c.tif") as classes:
        assert classes.read(1).tolist() == [[PATTERN[0, 0]]]
