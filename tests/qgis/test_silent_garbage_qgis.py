"""Issue 24, "silent garbage": the QGIS layer source and the rasterio source agree on the new kinds.

QGIS's GDAL provider applies a band's scale and offset itself (and reads int8 as Byte before
QGIS 3.30); the rasterio source reads them the same way, so both faces plan and feed the same.
"""

import numpy as np
import pytest
import rasterio
from qgis.core import QgsRasterLayer

from rs_ghost_qgis.core.errors import InputError
from rs_ghost_qgis.core.radiometry.scaling import plan_radiometry
from rs_ghost_qgis.core.sources.rasterio_source import RasterioSource
from rs_ghost_qgis.qgis_io.source import QgisLayerSource
from tests.core.engine_data import class_pattern, write_raster
from tests.core.test_radiometry import eurosat_card, reflectance


def _scaled(data, scales, offsets, tags=None):
    return data, {"scales": scales, "offsets": offsets, "tags": tags or {}}


def _kinds():
    dn = reflectance()
    rng = np.random.default_rng(0)
    water = np.stack([np.clip(rng.normal(m, 12, (64, 64)), 0, 255) for m in (40, 120, 180)])
    return {
        "8-bit in uint16": (class_pattern(np.array([[0, 1], [2, 0]]), 32, dtype=np.uint16), {}),
        "dark water": (water.astype(np.uint16), {}),
        "int8": (rng.integers(0, 128, (3, 64, 64)).astype(np.int8), {}),
        "percent, scale 100": _scaled((dn / 100).astype(np.float32), [100.0] * 3, [0.0] * 3),
        "landsat c2": _scaled(np.round((dn / 1e4 + 0.2) / 2.75e-5).astype(np.uint16), [2.75e-5] * 3, [-0.2] * 3),
        "s2 band offset and tag": _scaled(
            (dn + 1000).astype(np.uint16), [1e-4] * 3, [-0.1] * 3, {"BOA_ADD_OFFSET": "-1000"}
        ),
        "scale on one band": _scaled((dn * [[[1]], [[1]], [[0.5]]]).astype(np.uint16), [1.0, 1.0, 2.0], [0.0] * 3),
        "constant": (np.full((3, 64, 64), 1200, np.uint16), {}),
    }


def _write(path, data, extra):
    write_raster(path, data)
    if extra:
        with rasterio.open(path, "r+") as ds:
            ds.scales, ds.offsets = extra["scales"], extra["offsets"]
            ds.update_tags(**extra["tags"])
    return path


def _whole(source, bands):
    info = source.info
    return source.read(info.bounds, info.crs_wkt, info.width, info.height, bands)


@pytest.mark.parametrize("kind", list(_kinds()))
def test_both_sources_read_plan_and_feed_alike(qgis_app, tmp_path, kind):
    path = _write(tmp_path / "r.tif", *_kinds()[kind])
    card = eurosat_card()
    with RasterioSource(path) as source:
        cli_info, cli = source.info, plan_radiometry(source, card)
        cli_block = _whole(source, [1, 2, 3])
    source = QgisLayerSource.from_layer(QgsRasterLayer(str(path), "r"))
    info, plan = source.info, plan_radiometry(source, card)
    assert (info.dtype, info.scales, info.offsets) == (cli_info.dtype, cli_info.scales, cli_info.offsets)
    assert (plan.scaling_note, plan.warnings, plan.bands) == (cli.scaling_note, cli.warnings, cli.bands)
    block = _whole(source, [1, 2, 3])
    assert block.data.dtype == cli_block.data.dtype and (block.valid == cli_block.valid).all()
    np.testing.assert_allclose(block.data, cli_block.data, rtol=1e-6)
    np.testing.assert_allclose(plan.normalise(block.data), cli.normalise(cli_block.data), atol=1e-5)


def test_both_sources_refuse_zeros_alike(qgis_app, tmp_path):
    path = write_raster(tmp_path / "r.tif", np.zeros((3, 64, 64), np.uint16))
    with RasterioSource(path) as source, pytest.raises(InputError) as cli:
        plan_radiometry(source, eurosat_card())
    source = QgisLayerSource.from_layer(QgsRasterLayer(str(path), "r"))
    with pytest.raises(InputError) as qgis:
        plan_radiometry(source, eurosat_card())
    assert str(qgis.value) == str(cli.value) and "value 0 in every valid pixel" in str(cli.value)
