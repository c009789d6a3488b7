"""Sentinel-2 product level (auto | l1c | l2a) and the model card's per-band L2A curves.

The oracles are computed here, independently of the engine: np.interp over the card's knots for
L2A data, EuroSAT's linear definition for L1C data, np.percentile for the darkest blue values.
"""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from osgeo import ogr

from rs_ghost_qgis.cli.common import classify_options
from rs_ghost_qgis.cli.main import _parser, main
from rs_ghost_qgis.core.classify import pipeline
from rs_ghost_qgis.core.errors import ModelError
from rs_ghost_qgis.core.model.card import ModelCard
from rs_ghost_qgis.core.options import NAMES, PRODUCTS, OptionError, OptionText, check_product, face_message
from rs_ghost_qgis.core.radiometry.bands import band_role
from rs_ghost_qgis.core.radiometry.plan import reflectance_plan
from rs_ghost_qgis.core.radiometry.product import L1C_BLUE_DARK, L2A_BLUE_DARK, decide_product, product_from_metadata
from rs_ghost_qgis.core.radiometry.scaling import plan_radiometry
from rs_ghost_qgis.core.sources.rasterio_source import RasterioSource
from rs_ghost_qgis.core.sources.source import RasterInfo
from tests.core.engine_data import write_raster
from tests.core.test_radiometry import (
    EUROSAT_MAPPING,
    REFLECTANCE_KINDS,
    eurosat_card,
    eurosat_values,
    write_kind,
)
from tests.tiny_model import pooled_model

REPO = Path(__file__).resolve().parents[2]
METHOD = "quantile match, test knots"
# One curve per card band, deliberately different, and reaching outside 0..255 at the ends so that
# the clipping to value_range shows.
CURVES = {
    "red": {"raw": [0.0, 500.0, 1500.0, 3000.0], "value": [-10.0, 90.0, 200.0, 255.0]},
    "green": {"raw": [0.0, 600.0, 2000.0, 4000.0], "value": [15.0, 100.0, 220.0, 250.0]},
    "blue": {"raw": [0.0, 300.0, 1200.0, 2500.0], "value": [30.0, 110.0, 230.0, 280.0]},
}
DESCRIPTIONS = ["B4", "B3", "B2"]  # red, green, blue: the bands are matched, never guessed


def l2a_card(card=None, method=METHOD):
    """``card`` (EuroSAT's by default) with L2A curves for each of its bands."""
    card = card or eurosat_card()
    mapping = {"bands": {band: json.loads(json.dumps(CURVES[band])) for band in card.bands}}
    if method:
        mapping["method"] = method
    return dataclasses.replace(card, product_mappings={"l2a": mapping})


def scene(kind, seed=0, size=64):
    """Reflectance x 10,000 (red, green, blue), float64: 'dark' L2A-like, 'bright' L1C-like, 'middle' neither."""
    rng = np.random.default_rng(seed)
    lows = {"dark": (50, 80, 20), "bright": (800, 750, 700), "middle": (520, 510, 500)}[kind]
    return np.stack([rng.integers(low, low + 1500, size=(size, size)) for low in lows]).astype(np.float64)


def dark_blue(reflectance_rgb):
    """The 2nd percentile of the blue band (the card's third band), as the engine should compute it."""
    return float(np.percentile(reflectance_rgb[2], 2.0))


def write_scene(path, dn, dtype=np.uint16, tags=None, descriptions=DESCRIPTIONS):
    write_raster(path, dn.astype(dtype), descriptions=descriptions)
    if tags:
        with rasterio.open(path, "r+") as ds:
            ds.update_tags(**tags)
    return path


def plan_of(path, card, **options):
    with RasterioSource(path) as source:
        return plan_radiometry(source, card, **options)


def curve_values(dn_rgb, card=None):
    """The oracle for L2A: each card band through its own knots (np.interp), clipped to 0..255."""
    card = card or l2a_card()
    curves = card.product_mappings["l2a"]["bands"]
    out = [np.interp(dn_rgb[c], curves[band]["raw"], curves[band]["value"]) for c, band in enumerate(card.bands)]
    return np.clip(np.stack(out), *card.value_range)


def info_of(metadata=None, path="", descriptions=("", "", "")):
    return RasterInfo(
        name=Path(path).stem or "r",
        width=8,
        height=8,
        band_count=len(descriptions),
        dtype="uint16",
        crs_wkt="",
        bounds=(0.0, 0.0, 80.0, 80.0),
        pixel_size=(10.0, 10.0),
        nodata=(None,) * len(descriptions),
        band_descriptions=tuple(descriptions),
        path=path,
        metadata=metadata or {},
    )


# --- the card ---------------------------------------------------------------------------------------


def test_product_mappings_round_trip_through_the_onnx_metadata():
    card = l2a_card()
    meta = card.to_metadata()
    assert json.loads(meta["product_mappings"]) == card.product_mappings
    again = ModelCard.from_metadata(meta)
    assert again == card and again.product_mappings == card.product_mappings
    assert again.product_curves("l2a") == [(CURVES[b]["raw"], CURVES[b]["value"]) for b in card.bands]
    assert again.product_curves("l1c") is None and again.product_curves("") is None
    assert "## Product mappings" in card.to_markdown() and METHOD in card.to_markdown()
    plain = eurosat_card()
    assert ModelCard.from_metadata(plain.to_metadata()).product_mappings == {}
    assert "Product mappings" not in plain.to_markdown()


def test_product_curves_follow_the_card_band_order_not_the_mapping_order():
    card = l2a_card()
    reordered = {"l2a": {"bands": {b: CURVES[b] for b in ("blue", "red", "green")}}}
    card = dataclasses.replace(card, product_mappings=reordered)
    assert [raw for raw, _ in card.product_curves("l2a")] == [CURVES[b]["raw"] for b in ("red", "green", "blue")]


def test_the_curves_survive_an_onnx_file_and_the_runtime(tmp_path):
    from rs_ghost_qgis.core.model.runtime import load_model

    path = pooled_model(tmp_path / "l2a.onnx", l2a_card())
    assert load_model(path, threads=1).card.product_mappings == l2a_card().product_mappings


def _broken(change):
    mapping = json.loads(json.dumps({"method": METHOD, "bands": CURVES}))
    change(mapping["bands"])
    return {"l2a": mapping}


BROKEN_MAPPINGS = {
    "a band missing": _broken(lambda bands: bands.pop("blue")),
    "unequal lengths": _broken(lambda bands: bands["green"]["value"].pop()),
    "raw axis not increasing": _broken(lambda bands: bands["red"].update(raw=[0.0, 500.0, 500.0, 3000.0])),
    "raw axis decreasing": _broken(lambda bands: bands["blue"].update(raw=[2500.0, 1200.0, 300.0, 0.0])),
    "one knot": _broken(lambda bands: bands["red"].update(raw=[0.0], value=[1.0])),
    "no raw list": _broken(lambda bands: bands["red"].pop("raw")),
    "not an object": {"l2a": [1, 2, 3]},
    "no bands": {"l2a": {"method": METHOD}},
}


@pytest.mark.parametrize("case", list(BROKEN_MAPPINGS))
def test_a_broken_mapping_is_a_model_error_naming_product_mappings(case):
    broken = BROKEN_MAPPINGS[case]
    with pytest.raises(ModelError, match=r"product_mappings\['l2a'\]"):
        dataclasses.replace(eurosat_card(), product_mappings=broken)
    meta = {**eurosat_card().to_metadata(), "product_mappings": json.dumps(broken)}
    with pytest.raises(ModelError, match=r"^the model: product_mappings\['l2a'\]"):
        ModelCard.from_metadata(meta)


def test_the_error_names_the_band_at_fault():
    with pytest.raises(ModelError, match="band 'blue'"):
        dataclasses.replace(eurosat_card(), product_mappings=BROKEN_MAPPINGS["a band missing"])
    with pytest.raises(ModelError, match="band 'red': 'raw' must increase strictly"):
        dataclasses.replace(eurosat_card(), product_mappings=BROKEN_MAPPINGS["raw axis not increasing"])


def test_product_mappings_must_be_an_object_in_the_metadata():
    meta = {**eurosat_card().to_metadata(), "product_mappings": "[1, 2]"}
    with pytest.raises(ModelError, match="product_mappings' should be a dict"):
        ModelCard.from_metadata(meta)


# --- the option ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [("L2A", "l2a"), ("l1c", "l1c"), (" L1C ", "l1c"), ("auto", "auto"), ("", "auto"), (None, "auto")],
)
def test_check_product(given, expected):
    assert check_product(given) == expected


def test_an_unknown_product_names_the_choices_and_the_option():
    with pytest.raises(OptionError) as caught:
        check_product("xyz")
    error = caught.value
    assert error.option == "product"
    assert str(error) == "Unknown product level 'xyz': choose one of auto, l1c, l2a for Product level (--product)."
    assert error.in_face("cli").endswith("for --product.")
    assert error.in_face("processing").endswith("for PRODUCT.")
    assert PRODUCTS == ("auto", "l1c", "l2a") and NAMES["product"] == ("--product", "Product level", "PRODUCT")


def test_plan_radiometry_checks_the_product(tmp_path):
    path = write_scene(tmp_path / "r.tif", scene("dark"))
    with pytest.raises(OptionError, match="Unknown product level 'l2'"):
        plan_of(path, l2a_card(), product="l2")
    assert plan_of(path, l2a_card(), product="L2A") == plan_of(path, l2a_card(), product="l2a")


def test_classify_options_default_to_auto():
    assert pipeline.ClassifyOptions().product == "auto"


# --- detection ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "role"),
    [("B02 blue", "blue"), ("B2", "blue"), ("Blue", "blue"), ("B04 red", "red"), ("green", "green"), ("B8", "nir")],
)
def test_band_role(name, role):
    assert band_role(name) == role
    assert band_role("B11 swir") is None


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"PRODUCT_TYPE": "S2MSI1C"}, ("l1c", "PRODUCT_TYPE S2MSI1C in the metadata")),
        ({"PRODUCT_TYPE": "S2MSI2A"}, ("l2a", "PRODUCT_TYPE S2MSI2A in the metadata")),
        ({"BOA_ADD_OFFSET": "-1000"}, ("l2a", "BOA_ADD_OFFSET -1000 in the metadata")),
        ({"band 2:BOA_ADD_OFFSET_B03": "-1000"}, ("l2a", "BOA_ADD_OFFSET_B03 -1000 in the metadata")),
        ({"PROCESSING_LEVEL": "Level-2A"}, ("l2a", "PROCESSING_LEVEL Level-2A in the metadata")),
        ({"PROCESSING_LEVEL": "Level-1C"}, ("l1c", "PROCESSING_LEVEL Level-1C in the metadata")),
        ({"AREA_OR_POINT": "Area"}, None),
    ],
)
def test_product_from_metadata(metadata, expected):
    assert product_from_metadata(info_of(metadata)) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("S2A_MSIL2A_20230603_x.tif", "l2a"),
        ("S2B_MSIL1C_20230603_x.tif", "l1c"),
        ("T33UUU_20230603_L2A_rgb.tif", "l2a"),
        ("scene.tif", None),
    ],
)
def test_product_from_the_file_name_only_not_its_folder(name, expected):
    found = product_from_metadata(info_of(path=f"/data/S2A_MSIL1C_folder/{name}"))
    assert (found[0] if found else None) == expected
    if found:
        assert found[1] == f"the file name {name}"


def test_product_from_a_band_description():
    found = product_from_metadata(info_of(descriptions=("B4 BOA reflectance", "B3", "B2")))
    assert found == ("l2a", "band description 'B4 BOA reflectance'")


@pytest.mark.parametrize(
    ("tags", "expected", "why"),
    [
        ({"PRODUCT_TYPE": "S2MSI2A"}, "l2a", "PRODUCT_TYPE S2MSI2A in the metadata"),
        ({"PRODUCT_TYPE": "S2MSI1C"}, "l1c", "PRODUCT_TYPE S2MSI1C in the metadata"),
        ({"PROCESSING_LEVEL": "Level-2A"}, "l2a", "PROCESSING_LEVEL Level-2A in the metadata"),
    ],
)
def test_a_tag_decides_over_the_values(tmp_path, tags, expected, why):
    # 'middle' data: the darkest blue is about 500, above the L2A threshold and below the L1C one,
    # so the values alone would say L1C and no contradiction is warned either way.
    dn = scene("middle")
    assert L2A_BLUE_DARK <= dark_blue(dn) < L1C_BLUE_DARK
    plan = plan_of(write_scene(tmp_path / "r.tif", dn, tags=tags), l2a_card())
    assert plan.product == expected and plan.warnings == ()
    assert f"; Sentinel-2 {expected.upper()} ({why})" in plan.scaling_note
    oracle = curve_values(dn) if expected == "l2a" else eurosat_values(dn)
    np.testing.assert_allclose(plan.to_values(dn.astype(np.uint16)), oracle, atol=0.01)


def test_the_boa_offset_tag_says_l2a_and_the_offset_is_removed_first(tmp_path):
    dn = scene("middle")
    path = write_scene(tmp_path / "r.tif", dn + 1000, tags={"BOA_ADD_OFFSET": "-1000"})
    plan = plan_of(path, l2a_card())
    assert plan.product == "l2a" and plan.offset == 1000 and plan.warnings == ()
    assert plan.scaling_note == (
        "reflectance x 10,000 detected, offset 1000 removed (BOA_ADD_OFFSET -1000 in the metadata); "
        "Sentinel-2 L2A (BOA_ADD_OFFSET -1000 in the metadata): the model's own L2A curve per band (card)"
    )
    np.testing.assert_allclose(plan.to_values((dn + 1000).astype(np.uint16)), curve_values(dn), atol=0.01)


@pytest.mark.parametrize(
    ("name", "dn_kind", "expected"),
    [("S2A_MSIL2A_20230603_x.tif", "middle", "l2a"), ("S2A_MSIL1C_20230603_x.tif", "middle", "l1c")],
)
def test_the_file_name_decides(tmp_path, name, dn_kind, expected):
    dn = scene(dn_kind)
    plan = plan_of(write_scene(tmp_path / name, dn), l2a_card())
    assert plan.product == expected and plan.warnings == ()
    assert f"Sentinel-2 {expected.upper()} (the file name {name})" in plan.scaling_note


@pytest.mark.parametrize(("kind", "expected"), [("dark", "l2a"), ("bright", "l1c"), ("middle", "l1c")])
def test_untagged_data_are_told_by_their_darkest_blue(tmp_path, kind, expected):
    dn = scene(kind)
    plan = plan_of(write_scene(tmp_path / "r.tif", dn), l2a_card())
    dark = dark_blue(dn)
    assert plan.product == expected and plan.warnings == ()
    compare = "<" if expected == "l2a" else ">="
    assert plan.scaling_note.startswith(
        f"reflectance x 10,000 detected; Sentinel-2 {expected.upper()} (from its values: darkest blue "
        f"{dark:.0f} {compare} 400): "
    ), plan.scaling_note


def test_the_darkest_blue_is_read_after_the_offset_and_in_the_card_band_order(tmp_path):
    dn = scene("dark")
    # Blue first in the file, found by its description; the offset given by hand.
    data = (dn[[2, 1, 0]] + 1000).astype(np.uint16)
    path = write_raster(tmp_path / "r.tif", data, descriptions=["B2", "B3", "B4"])
    plan = plan_of(path, l2a_card(), offset=1000)
    assert plan.bands == [3, 2, 1] and plan.product == "l2a" and plan.warnings == ()
    assert f"darkest blue {dark_blue(dn):.0f} < 400" in plan.scaling_note
    np.testing.assert_allclose(plan.to_values(data[[2, 1, 0]]), curve_values(dn), atol=0.01)
    # Without removing the offset, every value is 1000 higher: the blue looks hazy, so L1C.
    assert plan_of(path, l2a_card(), offset=0).product == "l1c"


def test_reflectance_in_0_to_1_is_scaled_before_the_darkest_blue_and_the_curves(tmp_path):
    dn = scene("dark")
    data = (dn / 10_000).astype(np.float32)
    plan = plan_of(write_scene(tmp_path / "r.tif", data, dtype=np.float32), l2a_card())
    assert plan.product == "l2a" and plan.gain == 10_000
    assert plan.scaling_note.startswith("reflectance 0..1 detected (x 10,000 first); Sentinel-2 L2A")
    np.testing.assert_allclose(plan.to_values(data), curve_values(data.astype(np.float64) * 10_000), atol=0.02)


@pytest.mark.parametrize(("blue", "expected"), [(399.0, "l2a"), (400.0, "l1c"), (5.0, "l2a"), (2000.0, "l1c")])
def test_the_l2a_threshold(blue, expected):
    reflectance = np.stack([np.full(100, 900.0), np.full(100, 900.0), np.full(100, blue)])
    level, why, warnings = decide_product(info_of(), l2a_card(), "auto", reflectance)
    assert level == expected and warnings == ()
    assert why == f"from its values: darkest blue {blue:.0f} {'<' if expected == 'l2a' else '>='} 400"


def test_the_2nd_percentile_of_blue_decides_not_its_minimum_nor_the_other_bands():
    blue = np.linspace(0, 2000, 1001)  # its 2nd percentile is 40
    reflectance = np.stack([np.full(1001, 3000.0), np.full(1001, 3000.0), blue])
    assert decide_product(info_of(), l2a_card(), "auto", reflectance)[0] == "l2a"
    blue = np.concatenate([np.zeros(10), np.full(990, 1500.0)])  # 1 % black pixels: the percentile is 1500
    reflectance = np.stack([np.full(1000, 10.0), np.full(1000, 10.0), blue])
    level, why, _ = decide_product(info_of(), l2a_card(), "auto", reflectance)
    assert (level, why) == ("l1c", "from its values: darkest blue 1500 >= 400")


def test_without_a_blue_band_nor_a_tag_nothing_is_decided(tmp_path):
    card = dataclasses.replace(eurosat_card(), bands=["red", "green", "nir"])
    card = dataclasses.replace(
        card, product_mappings={"l2a": {"bands": {b: CURVES[n] for b, n in zip(card.bands, CURVES, strict=True)}}}
    )
    reflectance = np.full((3, 50), 10.0)
    assert decide_product(info_of(), card, "auto", reflectance) == ("", "", ())
    assert decide_product(info_of({"PRODUCT_TYPE": "S2MSI2A"}), card, "auto", reflectance)[0] == "l2a"
    assert decide_product(info_of(), card, "l2a", reflectance) == ("l2a", "as chosen", ())
    plan = plan_of(write_scene(tmp_path / "r.tif", scene("dark"), descriptions=["B4", "B3", "B8"]), card)
    assert plan.product == "" and plan.curves is None and "Sentinel-2" not in plan.scaling_note


# --- the mapping ----------------------------------------------------------------------------------------


def test_l2a_data_go_through_the_cards_curves_per_band(tmp_path):
    dn = scene("dark")
    plan = plan_of(write_scene(tmp_path / "r.tif", dn), l2a_card())
    assert plan.scaling == "card" and plan.product == "l2a" and plan.warnings == ()
    assert plan.curves == tuple((tuple(CURVES[b]["raw"]), tuple(CURVES[b]["value"])) for b in ("red", "green", "blue"))
    assert plan.scaling_note.endswith(": the model's own L2A curve per band (card)")
    values = plan.to_values(dn.astype(np.uint16))
    assert values.dtype == np.float32
    np.testing.assert_allclose(values, curve_values(dn), atol=0.01)
    assert values.min() >= 0 and values.max() <= 255
    # Beyond the last knot the curve's end value holds, clipped to value_range (blue's 280 -> 255).
    ends = plan.to_values(np.array([[0, 20000], [0, 20000], [0, 20000]], np.uint16))
    np.testing.assert_allclose(ends, [[0, 255], [15, 250], [30, 255]])
    # normalise is (v / 255 - mean) / std of these values.
    card = l2a_card()
    expected = (curve_values(dn) / 255 - np.array(card.standardization_mean)[:, None, None]) / np.array(
        card.standardization_std
    )[:, None, None]
    np.testing.assert_allclose(plan.normalise(dn.astype(np.uint16)), expected, atol=1e-3)


def test_the_scaling_line_names_the_curves_without_how_they_were_fitted(tmp_path):
    plan = plan_of(write_scene(tmp_path / "r.tif", scene("dark")), l2a_card(method=None))
    assert plan.scaling_note.endswith(": the model's own L2A curve per band (card)")


def test_curves_follow_the_card_bands_when_the_raster_has_another_order(tmp_path):
    dn = scene("dark")
    path = write_raster(tmp_path / "r.tif", dn[[2, 0, 1]].astype(np.uint16), descriptions=["B2", "B4", "B3"])
    plan = plan_of(path, l2a_card())
    assert plan.bands == [2, 3, 1] and plan.product == "l2a"
    with RasterioSource(path) as source:
        info = source.info
        block = source.read(info.bounds, info.crs_wkt, info.width, info.height, plan.bands)
    np.testing.assert_allclose(plan.to_values(block.data), curve_values(dn), atol=0.01)


def test_l1c_data_keep_the_linear_raw_range_mapping(tmp_path):
    dn = scene("bright")
    plan = plan_of(write_scene(tmp_path / "r.tif", dn), l2a_card())
    assert plan.product == "l1c" and plan.curves is None and plan.warnings == ()
    assert plan.scaling_note.endswith(f": {EUROSAT_MAPPING} (card)")
    np.testing.assert_allclose(plan.to_values(dn.astype(np.uint16)), eurosat_values(dn), atol=0.05)


def test_product_l1c_uses_the_linear_mapping_even_for_dark_data(tmp_path):
    dn = scene("dark")
    plan = plan_of(write_scene(tmp_path / "r.tif", dn), l2a_card(), product="l1c")
    assert plan.product == "l1c" and plan.curves is None
    assert "Sentinel-2 L1C (as chosen)" in plan.scaling_note
    np.testing.assert_allclose(plan.to_values(dn.astype(np.uint16)), eurosat_values(dn), atol=0.05)
    assert len(plan.warnings) == 1  # the values disagree: see the contradiction tests


def test_product_l2a_uses_the_curves_even_for_middle_data(tmp_path):
    dn = scene("middle")  # the values alone say L1C
    plan = plan_of(write_scene(tmp_path / "r.tif", dn), l2a_card(), product="l2a")
    assert plan.product == "l2a" and plan.warnings == ()
    assert "Sentinel-2 L2A (as chosen)" in plan.scaling_note
    np.testing.assert_allclose(plan.to_values(dn.astype(np.uint16)), curve_values(dn), atol=0.01)


def test_reflectance_plan_picks_the_curves_of_the_product():
    card = l2a_card()
    assert reflectance_plan(card, "l2a").curves is not None
    assert reflectance_plan(card, "l1c").curves is None and reflectance_plan(card, "").curves is None
    plan = reflectance_plan(card, "l2a", offset=1000.0)
    dn = scene("dark", size=8)
    np.testing.assert_allclose(plan.to_values(dn + 1000), curve_values(dn), atol=0.01)
    assert plan.bands == [1, 2, 3] and plan.low == (card.raw_range[0],) * 3


@pytest.mark.parametrize("kind", list(REFLECTANCE_KINDS))
def test_a_card_without_curves_on_auto_plans_as_before(tmp_path, kind):
    path, data, dn = write_kind(tmp_path / "r.tif", kind)
    plan = plan_of(path, eurosat_card())
    assert plan.scaling_note == REFLECTANCE_KINDS[kind]
    assert plan.product == "" and plan.curves is None and plan.warnings == ()
    assert plan == plan_of(path, eurosat_card(), product="auto")
    np.testing.assert_allclose(plan.to_values(data), eurosat_values(dn), atol=0.05)


@pytest.mark.parametrize("name", ["S2A_MSIL2A_20230603_x.tif", "S2A_MSIL1C_20230603_x.tif", "r.tif"])
@pytest.mark.parametrize("kind", ["dark", "bright"])
def test_a_card_without_curves_on_auto_says_no_product_words(tmp_path, name, kind):
    dn = scene(kind)
    plan = plan_of(write_scene(tmp_path / name, dn, tags={"PRODUCT_TYPE": "S2MSI2A"}), eurosat_card())
    assert plan.scaling_note == f"reflectance x 10,000 detected: {EUROSAT_MAPPING} (card)"
    assert plan.product == "" and plan.warnings == ()
    for word in ("L2A", "L1C", "Sentinel-2", "product", "curve"):
        assert word not in plan.scaling_note


def test_a_card_without_curves_and_product_l2a_says_so(tmp_path):
    dn = scene("dark")
    path = write_scene(tmp_path / "r.tif", dn)
    plan = plan_of(path, eurosat_card(), product="l2a")
    assert plan.product == "l2a" and plan.curves is None and plan.warnings == ()
    assert plan.scaling_note == (
        f"reflectance x 10,000 detected; Sentinel-2 L2A (as chosen): {EUROSAT_MAPPING} (card); the model has no L2A "
        "curves, so the L1C mapping is used"
    )
    # The values are those of the plan without a product.
    np.testing.assert_array_equal(
        plan.to_values(dn.astype(np.uint16)), plan_of(path, eurosat_card()).to_values(dn.astype(np.uint16))
    )
    l1c = plan_of(path, eurosat_card(), product="l1c")
    assert "Sentinel-2 L1C (as chosen)" in l1c.scaling_note and "no L2A curves" not in l1c.scaling_note


def test_8_bit_data_ignore_the_product(tmp_path):
    dn = scene("dark")
    path = write_scene(tmp_path / "r.tif", (dn / 11), dtype=np.uint8)
    plan = plan_of(path, l2a_card(), product="l2a")
    assert plan.scaling == "none" and plan.curves is None
    np.testing.assert_array_equal(plan.to_values((dn / 11).astype(np.uint8)), (dn / 11).astype(np.uint8))


# --- contradictions -------------------------------------------------------------------------------------

FACE_WORDS = {"cli": "--product", "dialog": "Product level", "processing": "PRODUCT"}


def _the_warning(plan):
    (warning,) = plan.warnings
    assert isinstance(warning, OptionText)
    return warning


@pytest.mark.parametrize("card", [l2a_card(), eurosat_card()], ids=["with curves", "without curves"])
def test_product_l2a_on_bright_data_is_warned(tmp_path, card):
    dn = scene("bright")
    dark = dark_blue(dn)
    assert dark >= L1C_BLUE_DARK
    warning = _the_warning(plan_of(write_scene(tmp_path / "bright.tif", dn), card, product="l2a"))
    assert str(warning) == (
        f"bright is taken as L2A, but its darkest blue values ({dark:.0f}) look like L1C (top of atmosphere, "
        "with haze); if the data are L1C, set Product level (--product) to l1c."
    )
    for face, word in FACE_WORDS.items():
        text = face_message(warning, face)
        assert text == warning.in_face(face) and text.endswith(f"set {word} to l1c.")
        assert all(other not in text for other in FACE_WORDS.values() if other != word)


def test_product_l1c_on_dark_data_is_warned(tmp_path):
    dn = scene("dark")
    warning = _the_warning(plan_of(write_scene(tmp_path / "dark.tif", dn), l2a_card(), product="l1c"))
    assert f"dark is taken as L1C, but its darkest blue values ({dark_blue(dn):.0f}) look like L2A" in warning
    for face, word in FACE_WORDS.items():
        assert face_message(warning, face).endswith(f"if the data are L2A, set {word} to l2a.")


@pytest.mark.parametrize(
    ("tag", "kind", "said"),
    [("S2MSI2A", "bright", "set Product level (--product) to l1c"), ("S2MSI1C", "dark", "to l2a")],
)
def test_a_tag_the_values_contradict_is_warned(tmp_path, tag, kind, said):
    plan = plan_of(write_scene(tmp_path / "r.tif", scene(kind), tags={"PRODUCT_TYPE": tag}), l2a_card())
    assert said in _the_warning(plan)


@pytest.mark.parametrize(
    ("blue", "product", "warned"),
    [(599.0, "l2a", False), (600.0, "l2a", True), (400.0, "l1c", False), (399.0, "l1c", True)],
)
def test_the_contradiction_thresholds(blue, product, warned):
    reflectance = np.stack([np.full(100, 900.0), np.full(100, 900.0), np.full(100, blue)])
    level, why, warnings = decide_product(info_of(), l2a_card(), product, reflectance)
    assert (level, why, bool(warnings)) == (product, "as chosen", warned)


@pytest.mark.parametrize("product", ["l1c", "l2a"])
def test_middle_data_are_never_contradicted(tmp_path, product):
    plan = plan_of(write_scene(tmp_path / "r.tif", scene("middle")), l2a_card(), product=product)
    assert plan.warnings == ()


def test_the_warning_as_plain_text_names_field_and_flag(tmp_path):
    path = write_scene(tmp_path / "dark.tif", scene("dark"))
    plan = plan_of(path, l2a_card(), product="l1c")
    assert "set Product level (--product) to l2a" in " | ".join(plan.warnings)


def test_the_colour_caution_is_given_when_the_card_has_curves(tmp_path):
    # Curves alike for all bands: value = reflectance / 2. No descriptions: bands 1,2,3 are guessed.
    half = {"raw": [0.0, 510.0], "value": [0.0, 255.0]}
    bands = dict.fromkeys(("red", "green", "blue"), half)
    card = dataclasses.replace(eurosat_card(), product_mappings={"l2a": {"bands": bands}})
    rng = np.random.default_rng(1)
    # Band 4, 2, 3 give the training images' balance (0.35 : 0.38 : 0.41 of 255 after the curves).
    means = (400, 190, 205, 175)
    data = np.stack([m + rng.integers(-5, 6, size=(64, 64)) for m in means]).astype(np.uint16)
    path = write_raster(tmp_path / "r.tif", data)
    right = plan_of(path, card, bands=[4, 2, 3])
    balance = right.to_values(data[[3, 1, 2]]).mean(axis=(1, 2)) / 255
    np.testing.assert_allclose(balance, card.standardization_mean, atol=0.02)  # the oracle: 4,2,3 fits
    plan = plan_of(path, card)
    assert plan.bands == [1, 2, 3] and plan.product == "l2a"
    (hint,) = plan.warnings
    # Issue 24: cautioned, but no order proposed from colour balance alone.
    assert "colour balance is unlike" in hint and "4,2,3" not in hint, hint


# --- the command line -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def l2a_model(tmp_path_factory):
    return pooled_model(tmp_path_factory.mktemp("model") / "l2a.onnx", l2a_card())


def _scaling_line(out):
    (line,) = [line for line in out.splitlines() if line.startswith("scaling:")]
    return line[len("scaling:") :].strip()


def test_cli_product_reaches_the_engine(tmp_path, l2a_model, capsys, monkeypatch):
    seen = []
    original = pipeline.plan_radiometry

    def spy(source, card, bands, scaling, offset, product, *within):
        seen.append(product)
        return original(source, card, bands, scaling, offset, product, *within)

    monkeypatch.setattr(pipeline, "plan_radiometry", spy)
    raster = write_scene(tmp_path / "r.tif", scene("middle"))  # the values alone say L1C
    vector = tmp_path / "t.gpkg"
    args = ["classify", str(raster), "--model", str(l2a_model), "--out-vector", str(vector), "--threads", "1"]
    assert main([*args, "--product", "L2A"]) == 0
    captured = capsys.readouterr()
    assert seen == ["l2a"]
    scaling = _scaling_line(captured.out)
    assert "Sentinel-2 L2A (as chosen)" in scaling and "the model's own L2A curve per band (card)" in scaling
    assert "warning" not in captured.err
    dataset = ogr.Open(str(vector))
    assert dataset.GetLayer(0).GetMetadata()["scaling"] == scaling
    dataset = None
    assert main([*args, "--overwrite"]) == 0  # auto: the values say L1C
    assert seen == ["l2a", "auto"]
    assert "Sentinel-2 L1C (from its values: darkest blue" in _scaling_line(capsys.readouterr().out)


def test_cli_warns_in_its_own_words(tmp_path, l2a_model, capsys):
    raster = write_scene(tmp_path / "r.tif", scene("dark"))
    vector = tmp_path / "t.gpkg"
    args = ["classify", str(raster), "--model", str(l2a_model), "--out-vector", str(vector), "--product", "l1c"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "warning: " in captured.err and "set --product to l2a" in captured.err
    assert "Product level" not in captured.err
    dataset = ogr.Open(str(vector))
    assert "set Product level (--product) to l2a" in dataset.GetLayer(0).GetMetadata()["scaling_warnings"]
    dataset = None


def test_cli_refuses_an_unknown_product(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["classify", str(tmp_path / "r.tif"), "--out-raster", str(tmp_path / "c.tif"), "--product", "bogus"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--product" in err and "invalid choice" in err and "'bogus'" in err


def test_real_process_refuses_an_unknown_product(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "rs_ghost_qgis", "classify", str(tmp_path / "r.tif"), "--product", "bogus"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    assert "argument --product: invalid choice: 'bogus'" in run.stderr and "Traceback" not in run.stderr


def test_cli_help_and_options_of_both_commands(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["classify", "--help"])
    out = capsys.readouterr().out
    assert "--product" in out and "{auto,l1c,l2a}" in out
    args = _parser().parse_args(["classify", "r.tif", "--out-vector", "t.gpkg"])
    assert classify_options(args, args.out_vector, None).product == "auto"
    args = _parser().parse_args(["classify", "r.tif", "--out-vector", "t.gpkg", "--product", "L1C"])
    assert classify_options(args, args.out_vector, None).product == "l1c"
    from rs_ghost_qgis.cli.many import many_options
    from rs_ghost_qgis.core.many.raster import fingerprint

    args = _parser().parse_args(["classify-many", "r.tif", "--out-dir", str(tmp_path), "--product", "l2a"])
    options = many_options(args)
    assert options.product == "l2a"
    # A rerun with another product level is another job, not a resumed one.
    other = dataclasses.replace(options, product="l1c")
    assert fingerprint("r.tif", Path("m.onnx"), options, 8) != fingerprint("r.tif", Path("m.onnx"), other, 8)
    assert fingerprint("r.tif", Path("m.onnx"), options, 8) == fingerprint("r.tif", Path("m.onnx"), options, 8)


def test_no_clipping_warning_for_values_the_curves_map_inside_the_range(tmp_path):
    linear = {"raw": [0.0, 10_000.0], "value": [0.0, 255.0]}  # what `l2a-fit` writes for a linear fit
    bands = dict.fromkeys(("red", "green", "blue"), linear)
    card = dataclasses.replace(eurosat_card(), product_mappings={"l2a": {"bands": bands}})
    dn = np.random.default_rng(0).integers(3000, 6000, size=(3, 64, 64)).astype(np.float64)  # snow, above 2750
    plan = plan_of(write_scene(tmp_path / "snow.tif", dn), card, product="l2a", offset=0)
    values = plan.to_values(dn.astype(np.uint16))
    np.testing.assert_allclose(values, dn * 255 / 10_000, atol=0.01)  # the oracle: nothing is clipped
    assert values.min() > 0 and values.max() < 255
    assert not any("clipped" in warning for warning in plan.warnings), plan.warnings
