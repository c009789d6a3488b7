import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp
from rasterio.warp import transform_bounds

from rs_ghost_qgis.core.crs import to_wkt
from rs_ghost_qgis.core.errors import InputError
from rs_ghost_qgis.core.sources.rasterio_source import RasterioSource
from tests.core.engine_data import ORIGIN, write_raster

X0, Y0 = ORIGIN


def _ramp(bands=1, size=64, dtype=np.uint16):
    rows, cols = np.mgrid[0:size, 0:size]
    return np.stack([(rows * 100 + cols + 1 + 10000 * b) for b in range(bands)]).astype(dtype)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        RasterioSource(tmp_path / "nope.tif")


def test_not_a_raster(tmp_path):
    path = tmp_path / "notes.tif"
    path.write_text("this is text, not pixels")
    with pytest.raises(InputError, match="not a raster"):
        RasterioSource(path)


def test_no_crs(tmp_path):
    path = write_raster(tmp_path / "nocrs.tif", _ramp(), crs=None)
    with pytest.raises(InputError, match="no coordinate reference system.*gdal_edit"):
        RasterioSource(path)


def test_info(tmp_path):
    path = write_raster(tmp_path / "r.tif", _ramp(4), nodata=0, descriptions=["B4", "B3", "B2", "B8"])
    with RasterioSource(path) as source:
        info = source.info
    assert (info.name, info.width, info.height, info.band_count, info.dtype) == ("r", 64, 64, 4, "uint16")
    assert info.bounds == (X0, Y0 - 640, X0 + 640, Y0)
    assert info.pixel_size == (10.0, 10.0)
    assert info.nodata == (0.0,) * 4
    assert info.band_descriptions == ("B4", "B3", "B2", "B8")


def test_colour_interpretation_stands_in_for_missing_descriptions(tmp_path):
    data = np.ones((4, 16, 16), np.uint8)
    path = write_raster(tmp_path / "rgba.tif", data, photometric="RGB", alpha="YES")
    with RasterioSource(path) as source:
        assert source.info.band_descriptions == ("red", "green", "blue", "alpha")


def test_aligned_read_is_an_exact_copy(tmp_path):
    data = _ramp(2)
    with RasterioSource(write_raster(tmp_path / "r.tif", data)) as source:
        block = source.read((X0 + 100, Y0 - 300, X0 + 300, Y0 - 100), source.info.crs_wkt, 20, 20, [2, 1])
    np.testing.assert_array_equal(block.data, data[[1, 0], 10:30, 10:30])
    assert block.valid.all()


def test_downsampling_averages(tmp_path):
    data = _ramp(1).astype(np.float32)
    with RasterioSource(write_raster(tmp_path / "r.tif", data)) as source:
        block = source.read((X0, Y0 - 640, X0 + 640, Y0), source.info.crs_wkt, 32, 32, [1])
    expected = data[0].reshape(32, 2, 32, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(block.data[0], expected, rtol=1e-6)


def test_outside_the_raster_is_invalid(tmp_path):
    data = _ramp(1)
    with RasterioSource(write_raster(tmp_path / "r.tif", data)) as source:
        # 10 px hang over the left edge and 10 over the top.
        block = source.read((X0 - 100, Y0 - 100, X0 + 100, Y0 + 100), source.info.crs_wkt, 20, 20, [1])
    assert not block.valid[:10].any() and not block.valid[:, :10].any()
    assert block.valid[10:, 10:].all()
    np.testing.assert_array_equal(block.data[0, 10:, 10:], data[0, :10, :10])


def test_nodata_alpha_and_mask_are_invalid(tmp_path):
    data = np.full((3, 32, 32), 100, np.uint8)
    hole = np.zeros((32, 32), bool)
    hole[:8] = True
    nodata_data = data.copy()
    nodata_data[:, hole] = 0
    rgba = np.concatenate([data, np.where(hole, 0, 255)[None].astype(np.uint8)])
    paths = [
        write_raster(tmp_path / "nodata.tif", nodata_data, nodata=0),
        write_raster(tmp_path / "alpha.tif", rgba, photometric="RGB", alpha="YES"),
        write_raster(tmp_path / "mask.tif", data, mask=~hole),
    ]
    for path in paths:
        with RasterioSource(path) as source:
            bounds = source.info.bounds
            direct = source.read(bounds, source.info.crs_wkt, 32, 32, [1, 2, 3])
            mercator = to_wkt("EPSG:3857")
            warped = source.read(transform_bounds(source.info.crs_wkt, mercator, *bounds), mercator, 32, 32, [1, 2, 3])
        np.testing.assert_array_equal(direct.valid, ~hole, err_msg=path.name)
        # The top quarter is the hole; the warped view shows it (give or take a row at the edge).
        assert not warped.valid[:7].any() and warped.valid[9:30, 2:30].all(), path.name


def test_a_pixel_is_nodata_only_when_every_band_is(tmp_path):
    data = np.full((3, 16, 16), 50, np.uint8)
    data[0, :4] = 0  # dark red, but green and blue have data: valid
    data[:, -4:] = 0  # nodata in every band
    with RasterioSource(write_raster(tmp_path / "r.tif", data, nodata=0)) as source:
        block = source.read(source.info.bounds, source.info.crs_wkt, 16, 16, [1, 2, 3])
    assert block.valid[:12].all() and not block.valid[12:].any()


def test_read_in_another_crs_reprojects(tmp_path):
    data = _ramp(1)
    with RasterioSource(write_raster(tmp_path / "r.tif", data)) as source:
        wkt = to_wkt("EPSG:4326")
        from rs_ghost_qgis.core.crs import transform_xy

        (lon0, lat0), (lon1, lat1) = transform_xy(
            [[X0 + 200, Y0 - 400], [X0 + 400, Y0 - 200]], source.info.crs_wkt, wkt
        )
        block = source.read((lon0, lat0, lon1, lat1), wkt, 20, 20, [1])
    assert block.valid.all()
    # The centre of the box is pixel (row 30, col 30) of the ramp, give or take a pixel.
    assert abs(float(block.data[0, 10, 10]) - float(data[0, 30, 30])) <= 101 + 1


def test_colorinterp_alpha_raster_warps(tmp_path):
    data = np.full((4, 16, 16), 200, np.uint8)
    path = write_raster(tmp_path / "rgba.tif", data, photometric="RGB", alpha="YES")
    with rasterio.open(path) as ds:
        assert ds.colorinterp[3] == ColorInterp.alpha
    with RasterioSource(path) as source:
        mercator = to_wkt("EPSG:3857")
        block = source.read(
            transform_bounds(source.info.crs_wkt, mercator, *source.info.bounds), mercator, 16, 16, [1, 2, 3]
        )
    assert block.data.shape == (3, 16, 16) and block.valid.any()


def test_nan_and_inf_pixels_are_nodata_without_a_nodata_tag(tmp_path):
    data = np.full((3, 32, 32), 100.0, np.float32)
    data[0, :8] = np.nan  # one band is enough: the model cannot use the pixel
    data[2, 24:] = np.inf
    data[1, :, :4] = -np.inf
    expected = np.ones((32, 32), bool)
    expected[:8] = expected[24:] = False
    expected[:, :4] = False
    with RasterioSource(write_raster(tmp_path / "nan.tif", data)) as source:
        assert source.info.nodata == (None, None, None)
        bounds = source.info.bounds
        direct = source.read(bounds, source.info.crs_wkt, 32, 32, [1, 2, 3])
        halved = source.read(bounds, source.info.crs_wkt, 16, 16, [1, 2, 3])
        mercator = to_wkt("EPSG:3857")
        warped = source.read(transform_bounds(source.info.crs_wkt, mercator, *bounds), mercator, 32, 32, [1, 2, 3])
    np.testing.assert_array_equal(direct.valid, expected)
    np.testing.assert_array_equal(halved.valid, expected[::2, ::2])  # averaging never hides a NaN
    assert not warped.valid[:7].any() and warped.valid[9:22, 6:30].all()
    for block in (direct, halved, warped):
        assert np.isfinite(block.data[:, block.valid]).all()


def test_crs_without_geotransform_is_refused_in_one_message(tmp_path, recwarn):
    path = tmp_path / "nogeo.tif"
    with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=1, dtype="uint8", crs="EPSG:32633") as ds:
        ds.write(np.zeros((1, 64, 64), np.uint8))
    recwarn.clear()
    with pytest.raises(InputError, match="has a coordinate reference system but no geotransform.*gdal_edit"):
        RasterioSource(path)
    assert not [w for w in recwarn if "geotransform" in str(w.message)]  # no NotGeoreferencedWarning on stderr
