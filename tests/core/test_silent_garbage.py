"""Issue 24, "silent garbage": rasters that gave exit 0 and a meaningless map under ``--scale auto``.

8-bit imagery saved as UInt16, int8 rasters, band scale/offset metadata, and rasters of zeros:
each is now recognised, said in the scaling line, warned about or refused.
"""

import numpy as np
import pytest
import rasterio

from rs_ghost_qgis.cli.main import main
from rs_ghost_qgis.core.errors import InputError
from rs_ghost_qgis.core.radiometry.scaling import plan_radiometry
from rs_ghost_qgis.core.sources.rasterio_source import RasterioSource
from tests.core.engine_data import class_pattern, write_raster
from tests.core.test_radiometry import eurosat_card, eurosat_values, reflectance
from tests.tiny_model import tiny_card

PATTERN = np.array([[0, 1], [2, 0]])  # water, forest / crop, water (tiles of the tiny model's colours)


def _plan(path, card=None, **options):
    with RasterioSource(path) as source:
        return plan_radiometry(source, card or tiny_card(), **options)


def _scaled(path, data, scales, offsets, tags=None):
    """``data`` written with GDAL's per-band scale and offset (and dataset tags)."""
    write_raster(path, data)
    with rasterio.open(path, "r+") as ds:
        ds.scales, ds.offsets = scales, offsets
        ds.update_tags(**(tags or {}))
    return path


def _read_all(path):
    with RasterioSource(path) as source:
        info = source.info
        return info, source.read(info.bounds, info.crs_wkt, info.width, info.height, [1, 2, 3])


# --- 8-bit imagery in a 16-bit integer raster -------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.int32])
def test_8bit_imagery_saved_as_16bit_is_used_as_it_is(tmp_path, dtype):
    photo = class_pattern(PATTERN, 32, dtype=dtype)  # an RGB picture, 8-bit values
    path = write_raster(tmp_path / "photo.tif", photo, descriptions=["red", "green", "blue"])
    plan = _plan(path, eurosat_card())
    assert plan.scaling == "none", plan.scaling_note
    name = np.dtype(dtype).name
    assert plan.scaling_note.startswith(f"8-bit values in a {name} raster (all 0..255"), plan.scaling_note
    np.testing.assert_array_equal(plan.to_values(photo), photo.astype(np.float32))
    assert plan.warnings == ()


def test_8bit_imagery_saved_as_uint16_is_classified_like_the_uint8_original(tmp_path, tiny_model, capsys):
    photo = class_pattern(PATTERN, 32)
    codes = {}
    for dtype in (np.uint8, np.uint16):
        raster = write_raster(tmp_path / f"{np.dtype(dtype).name}.tif", photo.astype(dtype))
        out = tmp_path / f"{np.dtype(dtype).name}_classes.tif"
        assert main(["classify", str(raster), "--model", str(tiny_model), "--out-raster", str(out)]) == 0
        with rasterio.open(out) as ds:
            codes[dtype] = ds.read(1)
    assert "8-bit values in a uint16 raster" in capsys.readouterr().out
    np.testing.assert_array_equal(codes[np.uint16], codes[np.uint8])


def _water(seed=0):
    """Reflectance x 10,000 of clear water (Sentinel-2 L2A): every value below 255, dim and even."""
    rng = np.random.default_rng(seed)
    means, spread = (40, 120, 180), 12  # red, green, blue
    return np.stack([np.clip(rng.normal(m, spread, (64, 64)), 0, 255) for m in means]).astype(np.uint16)


def test_dark_reflectance_below_255_is_not_taken_for_8bit_but_warned_about(tmp_path):
    water = _water()
    assert water.max() <= 255 and np.percentile(water, 98) > 128  # 8-bit range, bright enough, but even
    plan = _plan(write_raster(tmp_path / "water.tif", water), eurosat_card())
    assert plan.scaling == "card" and plan.scaling_note.startswith("reflectance x 10,000 detected")
    np.testing.assert_allclose(plan.to_values(water), eurosat_values(water.astype(np.float64)), atol=0.05)
    (warning,) = plan.warnings
    assert "0..255" in warning and "8-bit" in warning and "set Scaling (--scale) to none" in warning


def test_dim_values_below_255_are_reflectance_however_spread(tmp_path):
    dim = np.random.default_rng(0).integers(0, 100, (3, 64, 64)).astype(np.uint16)  # under 1 % reflectance
    plan = _plan(write_raster(tmp_path / "dim.tif", dim), eurosat_card())
    assert plan.scaling == "card" and len(plan.warnings) == 1


def test_the_8bit_guess_never_overrides_a_chosen_scaling(tmp_path):
    photo = class_pattern(PATTERN, 32, dtype=np.uint16)
    plan = _plan(write_raster(tmp_path / "photo.tif", photo), eurosat_card(), scaling="card")
    assert plan.scaling == "card" and plan.scaling_note.startswith("Scaling card as chosen")


# --- int8 ---------------------------------------------------------------------------------------------


def test_int8_is_not_taken_for_reflectance(tmp_path):
    data = np.random.default_rng(0).integers(0, 128, (3, 64, 64)).astype(np.int8)
    plan = _plan(write_raster(tmp_path / "i8.tif", data), eurosat_card())
    assert plan.scaling == "percentile", plan.scaling_note
    assert plan.scaling_note.startswith("unknown units (int8 values 0..127"), plan.scaling_note
    (warning,) = plan.warnings
    assert "int8 cannot hold reflectance x 10,000" in warning and "Scaling (--scale)" in warning


# --- GDAL's band scale and offset ---------------------------------------------------------------------


def test_percent_reflectance_with_scale_100_is_reflectance(tmp_path):
    dn = reflectance()
    percent = (dn / 100).astype(np.float32)  # 0.5..27: taken as dark reflectance x 10,000 without the scale
    path = _scaled(tmp_path / "percent.tif", percent, [100.0] * 3, [0.0] * 3)
    info, block = _read_all(path)
    assert info.dtype == "float32" and info.scales == (100.0,) * 3 and info.offsets == (0.0,) * 3
    np.testing.assert_allclose(block.data, dn, rtol=1e-5)  # the source reads physical values
    plan = _plan(path, eurosat_card())
    assert plan.scaling == "card" and plan.warnings == ()
    assert plan.scaling_note.startswith("band scale 100 applied (GDAL metadata); reflectance x 10,000 detected")
    np.testing.assert_allclose(plan.to_values(block.data), eurosat_values(dn), atol=0.05)


def test_landsat_collection2_scale_and_offset_give_reflectance(tmp_path):
    dn = reflectance()
    raw = np.round((dn / 10_000 + 0.2) / 2.75e-5).astype(np.uint16)  # Landsat C2 L2 surface reflectance
    path = _scaled(tmp_path / "LC09_L2SP.tif", raw, [2.75e-5] * 3, [-0.2] * 3)
    info, block = _read_all(path)
    assert info.dtype == "float32"
    np.testing.assert_allclose(block.data, dn / 10_000, atol=2e-5)
    plan = _plan(path, eurosat_card())
    assert plan.scaling == "card" and plan.warnings == ()
    assert plan.scaling_note.startswith(
        "band scale 2.75e-05 and offset -0.2 applied (GDAL metadata); reflectance 0..1 detected (x 10,000 first)"
    )
    np.testing.assert_allclose(plan.to_values(block.data), eurosat_values(dn), atol=0.1)


def test_a_band_offset_is_not_removed_twice_with_the_sentinel2_tag(tmp_path):
    dn = reflectance()
    # Processing baseline 04.00 as GDAL's SENTINEL2 driver may present it: the +1000 in the band
    # offset (reflectance = DN / 10,000 - 0.1) and in the BOA_ADD_OFFSET tag as well.
    path = _scaled(
        tmp_path / "s2.tif", (dn + 1000).astype(np.uint16), [1e-4] * 3, [-0.1] * 3, {"BOA_ADD_OFFSET": "-1000"}
    )
    plan = _plan(path, eurosat_card())
    assert plan.offset == 0 and "removed" not in plan.scaling_note, plan.scaling_note
    _, block = _read_all(path)
    np.testing.assert_allclose(plan.to_values(block.data), eurosat_values(dn), atol=0.05)


def test_different_scales_per_band_are_listed(tmp_path):
    dn = reflectance()
    path = _scaled(tmp_path / "mixed.tif", (dn / [[[1]], [[2]], [[4]]]).astype(np.float32), [1.0, 2.0, 4.0], [0.0] * 3)
    plan = _plan(path, eurosat_card())
    assert plan.scaling_note.startswith("band scales 1: 1, 2: 2, 3: 4 applied (GDAL metadata); reflectance x 10,000")
    _, block = _read_all(path)
    np.testing.assert_allclose(block.data, dn, rtol=1e-5)


def test_a_raster_without_scale_or_offset_reads_as_before(tmp_path):
    info, block = _read_all(write_raster(tmp_path / "plain.tif", reflectance().astype(np.uint16)))
    assert info.dtype == "uint16" and block.data.dtype == np.uint16
    assert info.scales == (1.0,) * 3 and info.offsets == (0.0,) * 3


# --- zeros and constants -----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.float32])
def test_zero_in_every_band_is_refused(tmp_path, dtype):
    path = write_raster(tmp_path / "zeros.tif", np.zeros((3, 64, 64), dtype))
    with pytest.raises(InputError, match=r"zeros has the value 0 in every valid pixel of bands 1,2,3") as error:
        _plan(path)
    assert "no image" in str(error.value) and "nodata" in str(error.value)


def test_zeros_are_refused_on_the_command_line_with_nothing_written(tmp_path, tiny_model, capsys):
    path = write_raster(tmp_path / "zeros.tif", np.zeros((3, 96, 96), np.uint16))
    out = tmp_path / "classes.tif"
    assert main(["classify", str(path), "--model", str(tiny_model), "--out-raster", str(out)]) == 2
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert "value 0 in every valid pixel" in line and not out.exists()


def test_zeros_in_some_pixels_or_bands_are_fine(tmp_path):
    data = reflectance().astype(np.uint16)
    data[:, :32] = 0  # an undeclared gap: half the raster
    data[2] = 0  # and an empty band
    assert _plan(write_raster(tmp_path / "gap.tif", data)).scaling == "card"


def test_an_all_nodata_uint8_raster_is_left_to_the_run(tmp_path):
    # A classify-many block may be all nodata: the run marks its tiles, the plan must not fail first.
    path = write_raster(tmp_path / "empty.tif", np.zeros((3, 64, 64), np.uint8), nodata=0)
    assert _plan(path).scaling == "none"


@pytest.mark.parametrize(("dtype", "value"), [(np.uint16, 1200), (np.float32, 0.3), (np.float32, 1e30)])
def test_a_constant_raster_is_warned_about(tmp_path, dtype, value):
    path = write_raster(tmp_path / "flat.tif", np.full((3, 64, 64), value, dtype))
    plan = _plan(path)
    flat = [w for w in plan.warnings if "the same value" in w]
    assert len(flat) == 1 and "every tile gets the same class" in flat[0] and "Bands (--bands)" in flat[0]
