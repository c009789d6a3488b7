"""Evidence from near infrared and doubtful tiles (core/classify/evidence.py), through the engine (issue 32).

The raster is built by hand so the answers are known without the code under test: which
pixels are water (green above near infrared) and vegetated (NDVI above 0.4) is decided when the
pixels are written, and counted by hand. The tiny model calls blue tiles Water, whatever their
near infrared.
"""

from __future__ import annotations

import numpy as np
import pytest
from osgeo import ogr

from rs_ghost_qgis.core.classify import evidence
from rs_ghost_qgis.core.classify.pipeline import ClassifyOptions, classify
from rs_ghost_qgis.core.model.card import ModelCard
from rs_ghost_qgis.core.options import OptionError
from rs_ghost_qgis.core.sources.rasterio_source import RasterioSource
from tests.core.engine_data import write_raster
from tests.tiny_model import tiny_card

TILE = 32
PIXELS = TILE * TILE
# Reflectance x 10,000 per tile: (red, green, blue); the tiny model calls the first two Water.
COLOURS = [(400, 600, 2000), (400, 600, 2000), (400, 1900, 600)]
# What each tile holds, counted by hand from how near infrared is painted in ``scene``.
WET_BLOCK = 8 * 8  # tile 1: an 8 x 8 px pond (NIR 100 under green 600)
EXPECTED_WATER = [0.0, WET_BLOCK / PIXELS, 8 * TILE / PIXELS]
EXPECTED_VEGETATED = [1.0, (PIXELS - WET_BLOCK) / PIXELS, 24 * TILE / PIXELS]


def scene() -> np.ndarray:
    """Bands B4, B3, B2, B8 (uint16), three tiles in a row.

    Tile 0: blue, NIR 3000 everywhere: no water pixel, all vegetated (NDVI 0.76).
    Tile 1: blue, NIR 3000 but an 8 x 8 block of NIR 100 (water: NDWI 0.71, NDVI negative).
    Tile 2: green; rows 0-15 NIR 2000 (vegetated), rows 16-23 NIR 500 (water: NDWI 0.58, NDVI
    0.11), rows 24-31 NIR 1900 (NDWI exactly 0: not water; NDVI 0.65: vegetated).
    """
    data = np.zeros((4, TILE, 3 * TILE), dtype=np.uint16)
    for tile, colour in enumerate(COLOURS):
        for band, value in enumerate(colour):
            data[band, :, tile * TILE : (tile + 1) * TILE] = value
    data[3, :, : 2 * TILE] = 3000
    data[3, 4:12, TILE + 4 : TILE + 12] = 100
    third = data[3, :, 2 * TILE :]
    third[:16], third[16:24], third[24:] = 2000, 500, 1900
    return data


@pytest.fixture()
def raster(tmp_path):
    return write_raster(tmp_path / "nir.tif", scene(), descriptions=["B4", "B3", "B2", "B8"])


@pytest.fixture()
def rgb_raster(tmp_path):
    return write_raster(tmp_path / "rgb.tif", scene()[:3], descriptions=["B4", "B3", "B2"])


def run(path, model, tmp_path, **options):
    """Classify ``path``; the result and the tiles' attributes by column."""
    out = tmp_path / f"tiles_{len(list(tmp_path.iterdir()))}.gpkg"
    with RasterioSource(str(path)) as source:
        result = classify(source, ClassifyOptions(model_path=str(model), out_vector=str(out), **options))
    dataset = ogr.Open(str(out))  # the layer lives as long as its dataset
    rows = [
        {f.GetFieldDefnRef(i).GetName(): f.GetField(i) for i in range(f.GetFieldCount())} for f in dataset.GetLayer(0)
    ]
    dataset = None
    return result, sorted(rows, key=lambda row: row["tile_col"])


def test_shares_of_water_and_vegetated_pixels_match_the_hand_count(raster, tiny_model, tmp_path):
    _, rows = run(raster, tiny_model, tmp_path)
    assert [row["water_pixels"] for row in rows] == pytest.approx(EXPECTED_WATER, abs=1e-5)
    assert [row["vegetated_pixels"] for row in rows] == pytest.approx(EXPECTED_VEGETATED, abs=1e-5)


def test_a_tile_without_water_pixels_never_ends_water(raster, tiny_model, tmp_path):
    result, rows = run(raster, tiny_model, tmp_path)
    dry, pond, _ = rows
    assert dry["network_class"] == "Water" and dry["class_name"] != "Water" and dry["water_rule"] == 1
    assert dry["prob_water"] == 0.0
    assert pond["class_name"] == "Water" and pond["water_rule"] == 0  # 6 % water pixels: the network stands
    assert result.evidence.tiles_changed == 1 and result.evidence.tiles_checked == 3
    assert "water rule changed 1 of 3 tiles" in result.summary_table()
    assert next(a for a in result.areas if a.class_name == "Water").tiles == 1  # the pond alone


def test_the_switch_off_restores_the_networks_answer(raster, tiny_model, tmp_path):
    result, rows = run(raster, tiny_model, tmp_path, water_rule=False)
    assert [row["class_name"] for row in rows[:2]] == ["Water", "Water"]
    assert all(row["class_name"] == row["network_class"] and row["water_rule"] == 0 for row in rows)
    assert rows[0]["water_pixels"] == 0.0  # still measured
    assert result.evidence.tiles_changed == 0 and "water rule off" in result.summary_table()


def test_without_near_infrared_nothing_changes_and_the_summary_says_so(rgb_raster, tiny_model, tmp_path):
    result, rows = run(rgb_raster, tiny_model, tmp_path)
    assert [row["class_name"] for row in rows[:2]] == ["Water", "Water"]
    assert all(row["water_pixels"] is None and row["water_rule"] is None for row in rows)
    assert result.evidence.bands is None
    assert "near-infrared check: not possible" in result.summary_table()


def test_the_near_infrared_band_can_be_named(tmp_path, tiny_model):
    """An undescribed fourth band is found only when named; a band beyond the raster is refused."""
    path = write_raster(tmp_path / "plain.tif", scene())
    result, rows = run(path, tiny_model, tmp_path, bands=[1, 2, 3])
    assert result.evidence.bands is None and rows[0]["class_name"] == "Water"
    result, rows = run(path, tiny_model, tmp_path, bands=[1, 2, 3], nir_band=4)
    assert result.evidence.bands.nir == 4 and rows[0]["class_name"] != "Water"
    with pytest.raises(OptionError, match="out of range"):
        run(path, tiny_model, tmp_path, nir_band=5)


def test_tile_shares_of_overlapping_tiles_match_a_loop():
    rng = np.random.default_rng(1)
    mask, valid = rng.random((8, 40)) > 0.7, rng.random((8, 40)) > 0.2
    shares = evidence.tile_shares(mask, valid, 8, 4)
    expected = [(mask & valid)[:, s : s + 8].sum() / valid[:, s : s + 8].sum() for s in range(0, 33, 4)]
    assert shares == pytest.approx(expected)


def test_water_rule_renormalises_and_knows_water_classes_by_name():
    assert evidence.water_class_ids(["AnnualCrop", "River", "Sea Lake", "Beach", "Pond"]) == [1, 2, 4]
    probs = np.array([[0.6, 0.3, 0.1], [0.6, 0.3, 0.1], [1.0, 0.0, 0.0]], dtype=np.float32)
    ruled = evidence.apply_water_rule(probs, np.array([0.0, 0.5, 0.0]), [0])
    assert ruled[0] == pytest.approx([0.0, 0.75, 0.25])
    assert ruled[1] == pytest.approx(probs[1])  # enough water pixels: untouched
    assert ruled[2] == pytest.approx([0.0, 0.5, 0.5])  # nothing but water: the others alike


def test_doubtful_tiles_are_those_below_the_threshold(raster, tiny_model, tmp_path):
    _, rows = run(raster, tiny_model, tmp_path)
    confidences = sorted(row["confidence"] for row in rows)
    threshold = (confidences[0] + confidences[1]) / 2  # between the lowest tile and the others
    result, rows = run(raster, tiny_model, tmp_path, min_confidence=threshold)
    assert [row["doubtful"] for row in rows] == [int(row["confidence"] < threshold) for row in rows]
    assert result.evidence.tiles_doubtful == 1
    assert "doubtful: 1 of 3 tiles (33.3%)" in result.summary_table()


def test_the_threshold_comes_from_the_option_then_the_card_then_the_default():
    card = tiny_card()
    assert evidence.check_min_confidence(None, card) == evidence.DEFAULT_MIN_CONFIDENCE
    carded = ModelCard(**{**card.__dict__, "min_confidence": 0.7})
    assert evidence.check_min_confidence(None, carded) == 0.7
    assert evidence.check_min_confidence(0.2, carded) == 0.2
    with pytest.raises(OptionError, match="between 0 and 1"):
        evidence.check_min_confidence(1.5, card)


def test_known_limits_travel_in_the_card_and_show_in_its_text():
    card = ModelCard(**{**tiny_card().__dict__, "known_limits": ["dark uniform crop fields can look like forest"]})
    again = ModelCard.from_metadata(card.to_metadata())
    assert again.known_limits == card.known_limits
    assert "## Known limits\n\n- dark uniform crop fields can look like forest" in again.to_markdown()
    assert "known_limits" not in tiny_card().to_metadata()


def test_classify_many_counts_what_the_rule_changed(raster, tiny_model, thread_client, tmp_path):
    """classify-many applies the rule in every block and its summary counts the published tiles."""
    from rs_ghost_qgis.core.many.job import run_job

    options = ClassifyOptions(model_path=str(tiny_model), threads=1)
    result = run_job([str(raster)], tmp_path / "many", options, thread_client, 1)  # a block per tile
    job = result.rasters[0]
    assert len(job.plan.blocks) == 3 and job.summary["evidence"] == {
        "classified": 3,
        "checked": 3,
        "changed": 1,
        "doubtful": 0,
    }
    assert evidence.counts_line(job.summary["evidence"]) == "water rule changed 1 of 3 tiles; doubtful 0 of 3 tiles"
