"""The card's calibration temperature at run time, and strides of models whose input differs from their tile."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from osgeo import ogr

from rs_ghost_qgis.cli.main import main
from rs_ghost_qgis.core.model.runtime import load_model
from rs_ghost_qgis.core.options import OptionError, check_stride
from tests.core.engine_data import class_pattern, write_raster
from tests.tiny_model import TinyNet, tiny_card
from training.export import export_onnx

PATTERN = np.array([[0, 1, 2], [2, 1, 0]])


def _model_at(tmp_path, temperature: float):
    card = replace(tiny_card(), temperature=temperature)
    return export_onnx(TinyNet(), card, tmp_path / f"tiny_t{temperature}.onnx")


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.5])
def test_probabilities_are_the_softmax_of_the_logits_over_the_cards_temperature(tmp_path, temperature):
    model = load_model(_model_at(tmp_path, temperature), threads=1)
    batch = np.random.default_rng(0).normal(0, 1, (5, 3, 32, 32)).astype(np.float32)

    with torch.no_grad():  # the oracle: the torch network itself, and softmax written out
        logits = TinyNet()(torch.from_numpy(batch)).double().numpy()
    expected = np.exp(logits / temperature) / np.exp(logits / temperature).sum(axis=1, keepdims=True)

    np.testing.assert_allclose(model.predict(batch), expected, rtol=1e-4, atol=1e-6)


def _confidences(path) -> dict[tuple[int, int], tuple[str, float]]:
    ds = ogr.Open(str(path))
    return {(f["tile_row"], f["tile_col"]): (f["class_name"], f["confidence"]) for f in ds.GetLayer(0)}


def test_a_hotter_temperature_keeps_the_classes_and_lowers_every_confidence(tmp_path):
    raster = write_raster(tmp_path / "scene.tif", class_pattern(PATTERN, 32))
    runs = {}
    for temperature in (1.0, 3.0):
        out = tmp_path / f"tiles_t{temperature}.gpkg"
        assert (
            main(["classify", str(raster), "--model", str(_model_at(tmp_path, temperature)), "--out-vector", str(out)])
            == 0
        )
        runs[temperature] = _confidences(out)

    assert runs[1.0].keys() == runs[3.0].keys() and len(runs[1.0]) == PATTERN.size
    for tile, (name, confidence) in runs[1.0].items():
        hot_name, hot_confidence = runs[3.0][tile]
        assert hot_name == name and 1 / 3 < hot_confidence < confidence


@pytest.mark.parametrize(
    ("tile", "size", "stride", "cells"),
    [(64, 32, 16, 8), (64, 32, 32, 16), (64, 32, 64, 32), (256, 224, 32, 28), (64, 128, 16, 32)],
)
def test_a_stride_gives_whole_input_pixels_per_cell_when_input_and_tile_differ(tile, size, stride, cells):
    assert check_stride(stride, replace(tiny_card(), tile_size=tile, input_size=size)) == cells


@pytest.mark.parametrize(("tile", "size", "stride"), [(64, 32, 1), (256, 224, 4), (64, 48, 2), (64, 32, 24)])
def test_a_stride_that_falls_between_input_pixels_is_refused_with_the_possible_ones(tile, size, stride):
    card = replace(tiny_card(), tile_size=tile, input_size=size)
    with pytest.raises(OptionError) as caught:
        check_stride(stride, card)
    possible = [d for d in range(1, tile + 1) if tile % d == 0 and d * size % tile == 0]
    assert str(stride) in str(caught.value) and ", ".join(map(str, possible)) in str(caught.value)
    assert all(d * size % tile == 0 for d in possible)
