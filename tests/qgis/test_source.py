"""QgisLayerSource reads blocks through a cloned provider: CRS, reprojection, validity, XYZ."""

import numpy as np
import pytest
from qgis.core import QgsCoordinateReferenceSystem, QgsRasterLayer, QgsVectorLayer

from rs_ghost_qgis.core.errors import InputError
from rs_ghost_qgis.qgis_io.source import QgisLayerSource, check_raster_layer, crs_to_wkt
from tests.qgis.rasters import FOREST, WATER, tile_bounds_3857, two_halves, write_geotiff, write_xyz_tiles


def test_info_and_plain_read(qgis_app, tmp_path):
    path = write_geotiff(tmp_path / "a.tif", two_halves(), descriptions=["B4", "B3", "B2"])
    layer = QgsRasterLayer(str(path), "a")
    source = QgisLayerSource.from_layer(layer)
    info = source.info
    assert (info.width, info.height, info.band_count, info.dtype) == (128, 64, 3, "uint8")
    assert info.band_descriptions == ("B4", "B3", "B2")
    assert info.bounds == pytest.approx((500000, 5899360, 501280, 5900000))
    assert info.pixel_size == pytest.approx((10, 10))
    assert "32633" in info.crs_wkt
    block = source.read(info.bounds, info.crs_wkt, 64, 32, [3, 2, 1])
    assert block.data.shape == (3, 32, 64) and block.valid.all()
    assert tuple(block.data[:, 0, 0]) == FOREST[::-1]
    assert tuple(block.data[:, 0, -1]) == WATER[::-1]
    del layer


def test_nodata_outside_and_alpha(qgis_app, tmp_path):
    data = two_halves()
    data[:, :, :8] = 0
    alpha = np.full((64, 128), 255, dtype=np.uint8)
    alpha[:10] = 0
    path = write_geotiff(tmp_path / "b.tif", data, nodata=0, alpha=alpha)
    source = QgisLayerSource.from_layer(QgsRasterLayer(str(path), "b"))
    assert source.info.band_count == 3  # the alpha band is a mask, not a model input
    xmin, ymin, xmax, ymax = source.info.bounds
    # 100 m beyond the right edge: outside pixels are invalid too.
    block = source.read((xmin, ymin, xmax + 100, ymax), source.info.crs_wkt, 138, 64, [1, 2, 3])
    assert not block.valid[:, :8].any()  # nodata value
    assert not block.valid[:10].any()  # alpha 0
    assert not block.valid[:, 128:].any()  # outside the raster
    assert block.valid[10:, 8:128].all()


def test_reprojected_read(qgis_app, tmp_path):
    path = write_geotiff(tmp_path / "c.tif", two_halves())
    source = QgisLayerSource.from_layer(QgsRasterLayer(str(path), "c"))
    wgs84 = crs_to_wkt(QgsCoordinateReferenceSystem("EPSG:4326"))
    # The left (forest) half of the raster, in degrees (lon, lat order).
    block = source.read((15.0005, 53.2425, 15.0045, 53.2475), wgs84, 20, 20, [1, 2, 3])
    valid = block.data[:, block.valid]
    assert valid.size and tuple(np.median(valid, axis=1).astype(int)) == FOREST


def test_xyz_tiles_read_as_rgb(qgis_app, tmp_path):
    zoom, x0, y0 = 14, 8192, 8191  # just north-east of (0, 0)
    folder = write_xyz_tiles(tmp_path / "xyz", zoom, x0, y0, [[FOREST, WATER]])
    url = f"type=xyz&url=file://{folder.as_posix()}/{{z}}/{{x}}/{{y}}.png&zmin={zoom}&zmax={zoom}"
    layer = QgsRasterLayer(url, "xyz", "wms")
    assert layer.isValid()
    source = QgisLayerSource.from_layer(layer)
    assert source.info.band_count == 3 and source.info.dtype == "uint8"
    left = tile_bounds_3857(zoom, x0, y0)
    block = source.read(left, source.info.crs_wkt, 16, 16, [1, 2, 3])
    assert block.valid.all()
    assert tuple(block.data[:, 8, 8]) == FOREST


def test_bad_layers_give_messages(qgis_app, tmp_path):
    vector = QgsVectorLayer("Polygon?crs=EPSG:4326", "fields", "memory")
    with pytest.raises(InputError, match="'fields' is a vector layer; choose a raster layer"):
        check_raster_layer(vector)
    with pytest.raises(InputError, match="No input layer"):
        check_raster_layer(None)
    path = write_geotiff(tmp_path / "nocrs.tif", two_halves(), epsg=None)
    with pytest.raises(InputError, match="no coordinate reference system"):
        QgisLayerSource.from_layer(QgsRasterLayer(str(path), "nocrs"))


def test_nan_and_inf_are_nodata_and_the_file_is_known(qgis_app, tmp_path):
    # The engine's rule, as in the rasterio source: NaN or inf in any band is nodata, tag or not.
    data = np.full((3, 32, 32), 100.0, np.float32)
    data[0, :8] = np.nan
    data[2, 24:] = np.inf
    data[1, :, :4] = -np.inf
    path = write_geotiff(tmp_path / "nan.tif", data)
    layer = QgsRasterLayer(str(path), "nan")
    source = QgisLayerSource.from_layer(layer)
    assert source.info.path == str(path)  # so an output on the input can be refused
    block = source.read(source.info.bounds, source.info.crs_wkt, 32, 32, [1, 2, 3])
    expected = np.ones((32, 32), bool)
    expected[:8] = expected[24:] = False
    expected[:, :4] = False
    np.testing.assert_array_equal(block.valid, expected)
    del layer
