"""`python -m training run` on a slice of the real EuroSAT RGB patches (../shared/data)."""

from __future__ import annotations

import json

import onnx
import onnxruntime as ort
import pytest
import torch

from rs_ghost_qgis.core.model.card import ModelCard
from training import cli
from training.checkpoint import SENTINEL2_RAW_RANGE
from training.colors import EUROSAT_CLASSES, LAND_COVER

pytestmark = pytest.mark.realdata
SMALL = "g_ghost_regnetx_032"


def test_run_on_eurosat_slice_exports_a_eurosat_card(shared_data, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["run", "--data", str(shared_data / "eurosat_rgb"), "--teacher", SMALL, "--student", SMALL]
    argv += ["--limit-per-class", "5", "--epochs", "1", "--batch-size", "16", "--image-size", "32"]
    argv += ["--cache-dir", str(tmp_path / "cache")]
    assert cli.main([*argv, "--out", str(out)]) == 0
    assert "val top-1" in capsys.readouterr().out

    path = out / f"{SMALL}_dkd.onnx"
    card = ModelCard.from_metadata({p.key: p.value for p in onnx.load(str(path)).metadata_props})
    assert card.class_names == list(EUROSAT_CLASSES)  # label_map.json order
    assert card.class_colors[EUROSAT_CLASSES.index("River")] == LAND_COVER["river"]
    assert card.bands == ["B04 red", "B03 green", "B02 blue"]
    # Trained at 32 px, the model still covers a 64 px EuroSAT patch (640 m); the runtime resizes.
    assert (card.input_size, card.tile_size, card.gsd_m, card.raw_range) == (32, 64, 10.0, SENTINEL2_RAW_RANGE)
    data = card.training["data"]
    assert data["source"] == "eurosat_rgb" and data["split"] == "csv"
    assert data["counts"]["train"] == {name: 5 for name in EUROSAT_CLASSES}
    assert card.metrics["val_images"] == 50 and len(card.metrics["confusion"]) == 10

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"input": torch.zeros(2, 3, 32, 32).numpy()})[0]  # then the features
    assert logits.shape == (2, 10)
    metrics = json.loads((out / "evaluation/metrics.json").read_text())
    assert metrics["images"] == 50 and metrics["latency"]["ms_per_tile_batch1"] > 0
    for produced in ("teacher/best.pt", "student/best.pt", "student/curves.png", "evaluation/confusion.png"):
        assert (out / produced).is_file(), produced
