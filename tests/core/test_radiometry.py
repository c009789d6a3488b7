import dataclasses

import numpy as np
import pytest
import rasterio

from rs_ghost_qgis.core.errors import InputError
from rs_ghost_qgis.core.radiometry import sample
from rs_ghost_qgis.core.radiometry.bands import choose_bands
from rs_ghost_qgis.core.radiometry.scaling import plan_radiometry
from rs_ghost_qgis.core.sources.rasterio_source import RasterioSource
from rs_ghost_qgis.core.sources.source import Block
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
    # Issue 24: 1,1 of a two-band raster is no advice; only a grey raster's one band may feed every channel.
    message = r"2 usable band.*needs 3.*nothing in the raster says which band holds what"
    with _source(tmp_path, 2) as source, pytest.raises(InputError, match=message) as refused:
        choose_bands(source, tiny_card(), None)
    assert "1,1" not in str(refused.value)


def test_a_grey_raster_is_told_to_feed_its_band_to_every_channel(tmp_path):
    message = (
        r"1 usable band.*needs 3.*one band may feed every channel: give a mapping in Bands \(--bands\), e.g. 1,1,1"
    )
    with _source(tmp_path, 1) as source, pytest.raises(InputError, match=message):
        choose_bands(source, tiny_card(), None)


def test_uint8_is_taken_as_is(tmp_path):
    with _source(tmp_path) as source:
        plan = plan_radiometry(source, tiny_card())
    assert plan.scaling == "none"
    np.testing.assert_allclose(plan.to_values(np.array([[0, 128, 255]] * 3, np.uint8)), [[0, 128, 255]] * 3)


def test_uint16_uses_the_card_raw_range(tmp_path):
    with _source(tmp_path, dtype=np.uint16) as source:
        plan = plan_radiometry(source, tiny_card())
    assert plan.scaling_note == "reflectance x 10,000 detected: linear 0..3000 -> 0..255 for all bands (card)"
    values = plan.to_values(np.array([[0, 1500, 3000, 9000]] * 3, np.uint16))
    np.testing.assert_allclose(values, [[0, 127.5, 255, 255]] * 3)  # clipped above raw_range
    # Then (v / 255 - mean) / std with mean 0.5, std 0.25.
    np.testing.assert_allclose(plan.normalise(np.array([[1500]] * 3, np.uint16)), [[0.0]] * 3, atol=1e-6)


def test_percentile_per_band_stretch_over_the_whole_raster(tmp_path):
    data = np.stack([np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)] * 3)
    with _source(tmp_path, data=data) as source:
        plan = plan_radiometry(source, tiny_card(), scaling="percentile-per-band")
    assert plan.scaling == "percentile-per-band"
    np.testing.assert_allclose(plan.low, [0.02] * 3, atol=1e-3)
    np.testing.assert_allclose(plan.high, [0.98] * 3, atol=1e-3)
    assert "2-98 percentile per band" in plan.scaling_note


def test_percentiles_come_from_full_resolution_windows_of_a_large_raster(tmp_path, monkeypatch):
    monkeypatch.setattr(sample, "SAMPLE_PIXELS", 100)  # pretend 64 x 64 is large
    monkeypatch.setattr(sample, "SAMPLE_WINDOW_PX", 8)
    data = np.stack([np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)] * 3)
    reads = []
    with _source(tmp_path, data=data) as source:
        original = source.read

        def spy(bounds, crs_wkt, width, height, bands):
            reads.append((width, height, bounds[2] - bounds[0]))
            return original(bounds, crs_wkt, width, height, bands)

        source.read = spy
        plan = plan_radiometry(source, tiny_card(), scaling="percentile-per-band")
    assert len(reads) == 64 and all(r == (8, 8, 80.0) for r in reads)  # 10 m pixels: native resolution
    assert 0 < plan.low[0] < plan.high[0] < 4096


def test_percentiles_ignore_nodata(tmp_path):
    data = np.full((3, 32, 32), 500.0, np.float32)
    data[:, :, 16:] = 1000.0
    data[:, :8] = -9999.0
    with _source(tmp_path, data=data, nodata=-9999.0) as source:
        plan = plan_radiometry(source, tiny_card(), scaling="percentile")
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
        plan = plan_radiometry(source, card)  # auto falls back, and says so
        assert plan.scaling == "percentile" and "no raw_range" in plan.warnings[0]


def test_unknown_scaling(tmp_path):
    with _source(tmp_path) as source, pytest.raises(InputError, match="Unknown scaling 'log'"):
        plan_radiometry(source, tiny_card(), scaling="log")


def test_percentiles_ignore_nan_and_inf_without_a_nodata_tag(tmp_path):
    data = np.full((3, 32, 32), 500.0, np.float32)
    data[:, :, 16:] = 1000.0
    data[:, :4] = np.nan
    data[1, 4:8] = np.inf  # one band is enough to make the pixel nodata
    with _source(tmp_path, data=data) as source:
        plan = plan_radiometry(source, tiny_card(), scaling="percentile")
        original = source.read

        def careless(*args):  # a source that leaves NaN pixels valid: the statistics still skip them
            block = original(*args)
            return Block(block.data, np.ones_like(block.valid))

        source.read = careless
        assert plan_radiometry(source, tiny_card(), scaling="percentile") == plan
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
        plan = plan_radiometry(source, tiny_card(), scaling="percentile-per-band")
    assert plan.high[0] > plan.low[0] == pytest.approx(1e30)
    values = plan.to_values(data)
    assert np.isfinite(values).all() and (values[0] == 0).all()


# --- the auto policy on the raster kinds users have (issue 10) ------------------------------------

EUROSAT_MAPPING = "linear, 0..2750 -> 1..255 for all bands, clipped (gdal_translate -scale 0 2750 1 255)"


def eurosat_card():
    """A card as training writes it for EuroSAT models: 0 -> 1 and 2750 -> 255, in words too."""
    return dataclasses.replace(
        tiny_card(),
        raw_range=[-2750 / 254, 2750.0],
        radiometry={"raw_unit": "reflectance x 10,000 (Sentinel-2 digital numbers)", "mapping": EUROSAT_MAPPING},
        standardization_mean=[0.3497, 0.3837, 0.4107],
    )


def reflectance(seed=0):
    """Reflectance x 10,000 (3, 64, 64), in the range EuroSAT's mapping covers."""
    return np.random.default_rng(seed).integers(50, 2700, size=(3, 64, 64)).astype(np.float64)


def eurosat_values(dn):
    """EuroSAT's definition of the 8-bit value of reflectance x 10,000 (gdal_translate -scale 0 2750 1 255)."""
    return np.clip(1 + dn * 254 / 2750, 0, 255)


def write_kind(path, kind):
    """A raster of one kind and the reflectance x 10,000 it holds (None when it is not reflectance)."""
    dn = reflectance()
    data, tags, band_tags = {
        "uint16": (dn.astype(np.uint16), {}, {}),
        "float 0..1": ((dn / 10_000).astype(np.float32), {}, {}),
        "float x 10,000": (dn.astype(np.float32), {}, {}),
        "offset, tagged": ((dn + 1000).astype(np.uint16), {"BOA_ADD_OFFSET": "-1000"}, {}),
        "offset, band tag": ((dn + 1000).astype(np.uint16), {}, {"RADIO_ADD_OFFSET": "-1000"}),
        "offset, no tag": ((dn + 1000).astype(np.uint16), {}, {}),
        "uint8": ((dn / 11).astype(np.uint8), {}, {}),
        "int16 with negatives": ((dn - 1500).astype(np.int16), {}, {}),
    }[kind]
    write_raster(path, data)
    if tags or band_tags:
        with rasterio.open(path, "r+") as ds:
            ds.update_tags(**tags)
            for band in range(1, 4):
                ds.update_tags(band, **band_tags)
    return path, data, dn


REFLECTANCE_KINDS = {
    "uint16": f"reflectance x 10,000 detected: {EUROSAT_MAPPING} (card)",
    "float 0..1": f"reflectance 0..1 detected (x 10,000 first): {EUROSAT_MAPPING} (card)",
    "float x 10,000": f"reflectance x 10,000 detected: {EUROSAT_MAPPING} (card)",
    "offset, tagged": "reflectance x 10,000 detected, offset 1000 removed (BOA_ADD_OFFSET -1000 in the metadata): "
    f"{EUROSAT_MAPPING} (card)",
    "offset, band tag": "reflectance x 10,000 detected, offset 1000 removed (RADIO_ADD_OFFSET -1000 in the "
    f"metadata): {EUROSAT_MAPPING} (card)",
}


@pytest.mark.parametrize("kind", list(REFLECTANCE_KINDS))
def test_reflectance_gets_the_cards_linear_mapping_for_all_bands(tmp_path, kind):
    path, data, dn = write_kind(tmp_path / "r.tif", kind)
    with RasterioSource(path) as source:
        plan = plan_radiometry(source, eurosat_card())
    assert plan.scaling == "card" and plan.warnings == ()
    assert plan.scaling_note == REFLECTANCE_KINDS[kind]
    np.testing.assert_allclose(plan.to_values(data), eurosat_values(dn), atol=0.05)  # EuroSAT's values


def test_offset_without_a_tag_is_warned_and_the_option_removes_it(tmp_path):
    path, data, dn = write_kind(tmp_path / "r.tif", "offset, no tag")
    with RasterioSource(path) as source:
        plan = plan_radiometry(source, eurosat_card())
        (warning,) = plan.warnings
        assert "probably carry the +1000 offset" in warning and "Offset (--offset) to 1000" in warning
        assert "offset" not in plan.scaling_note  # not removed without a tag or the option
        by_hand = plan_radiometry(source, eurosat_card(), offset=1000)
    assert by_hand.warnings == () and "offset 1000 removed (as given)" in by_hand.scaling_note
    np.testing.assert_allclose(by_hand.to_values(data), eurosat_values(dn), atol=0.05)


def test_the_offset_option_overrides_the_tag(tmp_path):
    path, data, dn = write_kind(tmp_path / "r.tif", "offset, tagged")
    with RasterioSource(path) as source:
        plan = plan_radiometry(source, eurosat_card(), offset=0)
    assert plan.offset == 0 and plan.warnings == ()  # the user said so: no removal, no warning
    np.testing.assert_allclose(plan.to_values(data), eurosat_values(dn + 1000), atol=0.05)


def test_uint8_stays_as_it_is(tmp_path):
    path, data, _ = write_kind(tmp_path / "r.tif", "uint8")
    with RasterioSource(path) as source:
        plan = plan_radiometry(source, eurosat_card())
    assert plan.scaling_note == "8-bit data: values used as they are (expected in 0..255)"
    np.testing.assert_array_equal(plan.to_values(data), data)


def test_unknown_units_get_one_percentile_range_for_all_bands(tmp_path):
    path, data, _ = write_kind(tmp_path / "r.tif", "int16 with negatives")
    with RasterioSource(path) as source:
        plan = plan_radiometry(source, eurosat_card())
        per_band = plan_radiometry(source, eurosat_card(), scaling="percentile-per-band")
    assert plan.scaling == "percentile" and len(set(plan.low)) == 1 and len(set(plan.high)) == 1
    low, high = np.percentile(data, [2, 98])
    assert plan.low[0] == pytest.approx(low) and plan.high[0] == pytest.approx(high)
    assert (
        plan.scaling_note.startswith("unknown units (values -1450..")
        and "one 2-98 percentile range" in plan.scaling_note
    )
    (warning,) = plan.warnings
    assert "does not look like reflectance" in warning and "Scaling (--scale)" in warning
    assert per_band.scaling == "percentile-per-band" and len(set(per_band.low)) == 3  # only when asked for


def test_a_few_saturated_pixels_do_not_change_the_units(tmp_path):
    data = reflectance().astype(np.uint16)
    data[:, 0, :3] = 65535  # 3 of 4096 pixels saturated
    with _source(tmp_path, data=data) as source:
        assert plan_radiometry(source, eurosat_card()).scaling == "card"
    data[:, :8] = 30000  # far beyond 10,000 in an eighth of the raster: not reflectance
    with _source(tmp_path, data=data) as source:
        assert plan_radiometry(source, eurosat_card()).scaling == "percentile"


def test_an_older_card_without_radiometry_words_prints_its_raw_range(tmp_path):
    with _source(tmp_path, dtype=np.uint16) as source:
        plan = plan_radiometry(source, tiny_card())
    assert plan.scaling_note == "reflectance x 10,000 detected: linear 0..3000 -> 0..255 for all bands (card)"


def _four_band_export(tmp_path, order):
    """A vegetated Sentinel-2 L1C scene as a 4-band export without band descriptions."""
    rng = np.random.default_rng(1)
    means = {"B2": 1100, "B3": 900, "B4": 700, "B8": 3000}  # TOA: blue brightest of the visible bands
    data = np.stack([means[b] + rng.integers(-60, 61, size=(64, 64)) for b in order]).astype(np.uint16)
    return _source(tmp_path, data=data)


def test_guessed_bands_with_an_odd_colour_balance_get_a_hint(tmp_path):
    with _four_band_export(tmp_path, ["B2", "B3", "B4", "B8"]) as source:
        plan = plan_radiometry(source, eurosat_card())
    assert plan.bands == [1, 2, 3] and "assumed" in plan.bands_note and "--bands" in plan.bands_note
    (hint,) = plan.warnings
    # Issue 24: the balance is no evidence of which band is which; the caution names no order of its own.
    assert "colour balance is unlike the training images'" in hint and "set Bands (--bands) to the bands" in hint
    assert "3,2,1" not in hint and "try" not in hint


def test_guessed_bands_in_the_right_order_get_no_hint(tmp_path):
    with _four_band_export(tmp_path, ["B4", "B3", "B2", "B8"]) as source:
        plan = plan_radiometry(source, eurosat_card())
    assert plan.bands == [1, 2, 3] and plan.warnings == ()


def test_offset_tags_in_either_convention():
    from rs_ghost_qgis.core.radiometry.product import offset_from_metadata

    assert offset_from_metadata({"BOA_ADD_OFFSET": "-1000"}) == (1000.0, "BOA_ADD_OFFSET -1000 in the metadata")
    assert offset_from_metadata({"band 2:RADIO_ADD_OFFSET_B02": "1000"})[0] == 1000.0
    assert offset_from_metadata({"BOA_ADD_OFFSET": "n/a", "AREA_OR_POINT": "Area"}) is None


def test_card_scaling_warns_when_most_values_would_be_clipped(tmp_path):
    """Issue 12: int16 data with negative values is clipped by the card's range; say so."""
    negative = np.random.default_rng(0).integers(-3000, -1, (3, 32, 32)).astype(np.int16)
    with _source(tmp_path, dtype=np.int16, data=negative) as source:
        plan = plan_radiometry(source, tiny_card(), scaling="card")
    assert any("100% of the values sampled" in w and "clipped" in w and "--scale" in w for w in plan.warnings), plan


def test_card_scaling_in_range_gives_no_clipping_warning(tmp_path):
    with _source(tmp_path, dtype=np.uint16, data=np.full((3, 32, 32), 1500, np.uint16)) as source:
        plan = plan_radiometry(source, tiny_card(), scaling="card")
    assert not any("clipped" in w for w in plan.warnings), plan.warnings
