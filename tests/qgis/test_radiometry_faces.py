"""The command line (rasterio) and the QGIS faces (layer provider) feed the model the same values."""

import numpy as np
import pytest
from qgis.core import QgsRasterLayer

from rs_ghost_qgis.core.radiometry.scaling import plan_radiometry
from rs_ghost_qgis.core.sources.rasterio_source import RasterioSource
from rs_ghost_qgis.qgis_io.source import QgisLayerSource
from tests.core.test_radiometry import eurosat_card, write_kind

KINDS = [
    "uint16",
    "float 0..1",
    "float x 10,000",
    "offset, tagged",
    "offset, band tag",
    "offset, no tag",
    "uint8",
    "int16 with negatives",
]


def _whole(source, bands):
    info = source.info
    return source.read(info.bounds, info.crs_wkt, info.width, info.height, bands)


@pytest.mark.parametrize("kind", KINDS)
def test_cli_and_qgis_feed_the_model_the_same_values(qgis_app, tmp_path, kind):
    path, _, _ = write_kind(tmp_path / "r.tif", kind)
    card = eurosat_card()
    with RasterioSource(path) as source:
        cli = plan_radiometry(source, card)
        cli_input = cli.normalise(_whole(source, cli.bands).data)
    layer = QgsRasterLayer(str(path), "r")
    source = QgisLayerSource.from_layer(layer)
    qgis = plan_radiometry(source, card)
    assert (qgis.scaling_note, qgis.warnings, qgis.bands) == (cli.scaling_note, cli.warnings, cli.bands)
    np.testing.assert_allclose(qgis.normalise(_whole(source, qgis.bands).data), cli_input, atol=1e-5)
    del layer


def test_qgis_source_sees_the_offset_tags(qgis_app, tmp_path):
    path, _, _ = write_kind(tmp_path / "r.tif", "offset, band tag")
    layer = QgsRasterLayer(str(path), "r")
    metadata = QgisLayerSource.from_layer(layer).info.metadata
    assert metadata["band 1:RADIO_ADD_OFFSET"] == "-1000"
    del layer
