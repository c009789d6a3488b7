import dataclasses

import numpy as np
import pytest

from rs_ghost_qgis.core import radiometry
from rs_ghost_qgis.core.errors import InputError
from rs_ghost_qgis.core.radiometry import choose_bands, plan_radiometry
from rs_ghost_qgis.core.rasterio_source import RasterioSource
from rs_ghost_qgis.core.source import Block
from tests.core.engine_data import write_raster
from tests.tiny_model import tiny_card


def _source(tmp_path, bands=3, dtype=np.uint8, descriptions=None, data=None, **kw):
    data = np.full((bands, 32, 32), 100, dtype) if data is None else data
    return RasterioSource(write_raster(tmp_path / "r.tif", data, descriptions=descriptions, **kw))


@pytest.mark.parametrize(
    ("descriptions", "expected"),
    [
        (["B4", "B3", "B2", "B8"], [1, 2, 3]),
        (["B02", "B03", "B04", "B08"], [3, 2, 1]),
        (["Blue", "green", "RED"], [3, 2, 1]),
        (["nir", "Red", "Green", "Blue"], [2, 3, 4]),
    ],
)
def test_bands_matched_by_description(tmp_path, descriptions, expected):
    with _source(tmp_path, len(descriptions), descriptions=descriptions) as source:
        bands, note = choose_bands(source, tiny_card(), None)
    assert bands == expected and "matched by description" in note


@pytest.mark.parametrize(
    ("descriptions", "expected"),
    [
        (["B4", "B3", "B2", "B8"], [1, 2, 3]),  # the Demmin scene
        (["B2", "B3", "B4"], [3, 2, 1]),
        (["B02 (blue)", "B03 (green)", "B04 (red)"], [3, 2, 1]),
        (["Blue", "Green", "Red"], [3, 2, 1]),
    ],
)
def test_sentinel2_card_band_names_match_raster_descriptions(tmp_path, descriptions, expected):
    card = dataclasses.replace(tiny_card(), bands=["B04 red", "B03 green", "B02 blue"])
    with _source(tmp_path, len(descriptions), descriptions=descriptions) as source:
        bands, note = choose_bands(source, card, None)
    assert bands == expected and "matched by description" in note


def test_without_descriptions_the_first_bands_are_assumed_and_said(tmp_path):
    with _source(tmp_path, 4, dtype=np.uint16) as source:  # uint16: GDAL sets no RGB colour interpretation
        bands, note = choose_bands(source, tiny_card(), None)
    assert bands == [1, 2, 3] and "assumed" in note and "--bands" in note


def test_alpha_band_is_never_a_channel(tmp_path):
    with _source(tmp_path, 4, descriptions=["alpha", "x", "y", "z"]) as source:
        assert choose_bands(source, tiny_card(), None)[0] == [2, 3, 4]


def test_explicit_bands(tmp_path):
    with _source(tmp_path, 4) as source:
        assert choose_bands(source, tiny_card(), [3, 2, 1]) == ([3, 2, 1], "bands 3,2,1 as given")
        assert choose_bands(source, tiny_card(), [4, 4, 4])[0] == [4, 4, 4]


def test_band_index_out_of_range(tmp_path):
    with _source(tmp_path, 4) as source, pytest.raises(InputError, match="Band 5 is out of range: r has 4 band"):
        choose_bands(source, tiny_card(), [5, 2, 1])
    with _source(tmp_path, 4) as source, pytest.raises(InputError, match="Band 0 is out of range"):
        choose_bands(source, tiny_card(), [0, 2, 1])


def test_wrong_number_of_bands_given(tmp_path):
    with _source(tmp_path, 4) as source, pytest.raises(InputError, match="lists 2 bands but the model needs 3"):
        choose_bands(source, tiny_card(), [1, 2])


def test_fewer_bands_than_needed_and_no_mapping(tmp_path):
    message = r"2 usable band.*needs 3.*Bands \(--bands\), e.g. 1,1,1"
    with _source(tmp_path, 2) as source, pytest.raises(InputError, match=message):
        choose_bands(source, tiny_card(), None)


def test_uint8_is_taken_as_is(tmp_path):
    with _source(tmp_path) as source:
        plan = plan_radiometry(source, tiny_card())
    assert plan.scaling == "none"
    np.testing.assert_allclose(plan.to_values(np.array([[0, 128, 255]] * 3, np.uint8)), [[0, 128, 255]] * 3)


def test_uint16_uses_the_card_raw_range(tmp_path):
    with _source(tmp_path, dtype=np.uint16) as source:
        plan = plan_radiometry(source, tiny_card())
    assert plan.scaling == "card" and "card raw_range -> 0..255" in plan.scaling_note
    values = plan.to_values(np.array([[0, 1500, 3000, 9000]] * 3, np.uint16))
    np.testing.assert_allclose(values, [[0, 127.5, 255, 255]] * 3)  # clipped above raw_range
    # Then (v / 255 - mean) / std with mean 0.5, std 0.25.
    np.testing.assert_allclose(plan.normalise(np.array([[1500]] * 3, np.uint16)), [[0.0]] * 3, atol=1e-6)


def test_float_uses_a_percentile_stretch_over_the_whole_raster(tmp_path):
    data = np.stack([np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)] * 3)
    with _source(tmp_path, data=data) as source:
        plan = plan_radiometry(source, tiny_card())
    assert plan.scaling == "percentile"
    np.testing.assert_allclose(plan.low, [0.02] * 3, atol=1e-3)
    np.testing.assert_allclose(plan.high, [0.98] * 3, atol=1e-3)
    assert "percentile 2-98" in plan.scaling_note


def test_percentiles_come_from_full_resolution_windows_of_a_large_raster(tmp_path, monkeypatch):
    monkeypatch.setattr(radiometry, "SAMPLE_PIXELS", 100)  # pretend 64 x 64 is large
    monkeypatch.setattr(radiometry, "SAMPLE_WINDOW_PX", 8)
    data = np.stack([np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)] * 3)
    reads = []
    with _source(tmp_path, data=data) as source:
        original = source.read

        def spy(bounds, crs_wkt, width, height, bands):
            reads.append((width, height, bounds[2] - bounds[0]))
            return original(bounds, crs_wkt, width, height, bands)

        source.read = spy
        plan = plan_radiometry(source, tiny_card(), scaling="percentile")
    assert len(reads) == 64 and all(r == (8, 8, 80.0) for r in reads)  # 10 m pixels: native resolution
    assert 0 < plan.low[0] < plan.high[0] < 4096


def test_percentiles_ignore_nodata(tmp_path):
    data = np.full((3, 32, 32), 500.0, np.float32)
    data[:, :, 16:] = 1000.0
    data[:, :8] = -9999.0
    with _source(tmp_path, data=data, nodata=-9999.0) as source:
        plan = plan_radiometry(source, tiny_card())
    assert plan.low == (500.0,) * 3 and plan.high == (1000.0,) * 3


def test_all_nodata_raster_has_no_percentiles(tmp_path):
    data = np.zeros((3, 32, 32), np.float32)
    with _source(tmp_path, data=data, nodata=0.0) as source, pytest.raises(InputError, match="no valid pixels"):
        plan_radiometry(source, tiny_card())


def test_card_scaling_needs_a_raw_range(tmp_path):
    card = dataclasses.replace(tiny_card(), raw_range=None)
    with _source(tmp_path, dtype=np.uint16) as source:
        with pytest.raises(InputError, match="no raw_range"):
            plan_radiometry(source, card, scaling="card")
        assert plan_radiometry(source, card).scaling == "percentile"  # auto falls back


def test_unknown_scaling(tmp_path):
    with _source(tmp_path) as source, pytest.raises(InputError, match="Unknown scaling 'log'"):
        plan_radiometry(source, tiny_card(), scaling="log")


def test_percentiles_ignore_nan_and_inf_without_a_nodata_tag(tmp_path):
    data = np.full((3, 32, 32), 500.0, np.float32)
    data[:, :, 16:] = 1000.0
    data[:, :4] = np.nan
    data[1, 4:8] = np.inf  # one band is enough to make the pixel nodata
    with _source(tmp_path, data=data) as source:
        plan = plan_radiometry(source, tiny_card())
        original = source.read

        def careless(*args):  # a source that leaves NaN pixels valid: the statistics still skip them
            block = original(*args)
            return Block(block.data, np.ones_like(block.valid))

        source.read = careless
        assert plan_radiometry(source, tiny_card()) == plan
    assert plan.low == (500.0,) * 3 and plan.high == (1000.0,) * 3
    assert "nan" not in plan.scaling_note


def test_all_nan_raster_has_no_percentiles(tmp_path):
    data = np.full((3, 32, 32), np.nan, np.float32)
    with _source(tmp_path, data=data) as source, pytest.raises(InputError, match="no valid pixels.*NaN"):
        plan_radiometry(source, tiny_card())


def test_a_raster_of_one_huge_value_maps_without_dividing_by_zero(tmp_path):
    data = np.full((3, 32, 32), 1e30, np.float32)
    with _source(tmp_path, data=data) as source:
        plan = plan_radiometry(source, tiny_card())
    assert all(high > low for low, high in zip(plan.low, plan.high, strict=True))
    assert (plan.to_values(data) == 0).all()  # a constant band maps to the bottom of the range, as any constant


def test_a_constant_huge_band_still_gets_a_positive_span(tmp_path):
    data = np.full((3, 32, 32), 1e30, np.float32)
    data[1:, :, 16:] = 1000.0  # bands 2 and 3 vary; band 1 does not, and 1e30 + 1 == 1e30
    with _source(tmp_path, data=data) as source:
        plan = plan_radiometry(source, tiny_card())
    assert plan.high[0] > plan.low[0] == pytest.approx(1e30)
    values = plan.to_values(data)
    assert np.isfinite(values).all() and (values[0] == 0).all()
