"""`python -m training quantize`: an int8 copy of an exported model that the plugin loads."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from rs_ghost_qgis.core.model.card import ModelCard
from rs_ghost_qgis.core.model.runtime import load_model
from tests.tiny_model import tiny_card
from tests.training.test_train import SMALL, make_class_tree
from training import cli
from training import quantize as quantize_module
from training.data import load_dataset
from training.export import export_onnx
from training.models import build_model


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return make_class_tree(tmp_path_factory.mktemp("quantize") / "tree", per_class=8)


@pytest.fixture(scope="module")
def fp32(tree) -> Path:
    """The small G-Ghost at 32 px with random weights, exported by our own code."""
    torch.manual_seed(0)
    card = dataclasses.replace(tiny_card(), architecture=SMALL, class_names=sorted(("Water", "Forest", "Crop")))
    return export_onnx(build_model(SMALL, card.num_classes), card, tree.parent / "model.onnx")


def quantize_args(model: Path, tree: Path, out: Path, *extra: str) -> list[str]:
    data = ["--data", str(tree), "--cache-dir", str(tree.parent / "cache")]
    return ["quantize", "--model", str(model), *data, "--calibration-images", "16", "--out", str(out), *extra]


@pytest.fixture(scope="module")
def quantized(tree, fp32) -> tuple[Path, str]:
    """(int8 model, what the command printed), with the latency timing cut to a few runs."""
    out = tree.parent / "int8" / "model_int8.onnx"
    with pytest.MonkeyPatch.context() as patch:
        fast = functools.partial(quantize_module.measure_latency, seconds=0.0)
        patch.setattr(quantize_module, "measure_latency", fast)
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            assert cli.main(quantize_args(fp32, tree, out)) == 0
    return out, printed.getvalue()


def normalised_images(tree: Path, card: ModelCard) -> np.ndarray:
    """Every image of the tree as the card says the network sees it: (v / value_range[1] - mean) / std."""
    data = load_dataset(tree, image_size=card.input_size, cache_dir=tree.parent / "cache")
    images = np.concatenate([data.train.images, data.val.images]).transpose(0, 3, 1, 2) / card.value_range[1]
    mean, std = (np.array(v).reshape(1, -1, 1, 1) for v in (card.standardization_mean, card.standardization_std))
    return ((images - mean) / std).astype(np.float32)


@pytest.mark.slow
def test_int8_file_is_smaller_and_quantised(fp32, quantized):
    int8, _ = quantized
    graph = onnx.load(str(int8))
    ops = {node.op_type for node in graph.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    int8_weights = [t for t in graph.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) > 50  # every convolution's weights
    assert int8.stat().st_size < 0.35 * fp32.stat().st_size


@pytest.mark.slow
def test_first_layer_and_classifier_keep_fp32_weights(quantized):
    graph = onnx.load(str(quantized[0])).graph
    float_weights = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    dequantized = {output for node in graph.node if node.op_type == "DequantizeLinear" for output in node.output}
    weighted = [node for node in graph.node if node.op_type in ("Conv", "Gemm")]  # in topological order
    first, *inner, classifier = weighted
    assert first.input[1] in float_weights and classifier.input[1] in float_weights
    assert inner and all(node.input[1] in dequantized for node in inner)


@pytest.mark.slow
def test_plugin_loads_int8_with_the_fp32_card_and_the_quantisation_measured(fp32, quantized):
    int8, _ = quantized
    model = load_model(int8, threads=1)
    original = load_model(fp32, threads=1).card
    assert dataclasses.replace(model.card, metrics={}) == dataclasses.replace(original, metrics={})
    meta = {prop.key: prop.value for prop in onnx.load(str(int8)).metadata_props}
    assert ModelCard.from_metadata(meta) == model.card
    report = model.card.metrics["quantization"]
    assert "QDQ" in report["method"] and report["calibration_images"] == 16
    assert report["val_images"] > 0 and 0 <= report["int8_val_top1"] <= 1 and 0 <= report["fp32_val_top1"] <= 1
    for name in ("fp32", "int8"):
        assert set(report[f"{name}_tiles_per_s"]) == {"threads_1", "threads_2"}
        assert min(report[f"{name}_tiles_per_s"].values()) > 0
    assert model.card.metrics["val_top1"] == report["int8_val_top1"]  # the shipped file states its own accuracy
    assert model.card.metrics["val_images"] == report["val_images"]
    assert report["int8_mb"] == pytest.approx(int8.stat().st_size / 1e6, abs=0.01)
    assert report["fp32_mb"] == pytest.approx(fp32.stat().st_size / 1e6, abs=0.01)
    assert "quantization" in int8.with_suffix(".md").read_text()


@pytest.mark.slow
def test_int8_predictions_follow_fp32(tree, fp32, quantized):
    int8, _ = quantized
    original = load_model(fp32, threads=1)
    batch = normalised_images(tree, original.card)
    expected = original.predict(batch)
    actual = load_model(int8, threads=1).predict(batch)
    assert np.mean(actual.argmax(1) == expected.argmax(1)) >= 0.9
    assert np.abs(actual - expected).max() < 0.1


@pytest.mark.slow
def test_table_and_evaluation_files(quantized):
    int8, printed = quantized
    report = json.loads((int8.parent / "model_int8_evaluation" / "quantization.json").read_text())
    rows = {line.split()[0]: line.split() for line in printed.splitlines() if line.split()[:1] in (["fp32"], ["int8"])}
    for name in ("fp32", "int8"):
        assert rows[name][1] == f"{100 * report[f'{name}_val_top1']:.2f}%"
        metrics = json.loads((int8.parent / "model_int8_evaluation" / name / "metrics.json").read_text())
        assert metrics["top1"] == report[f"{name}_val_top1"]
    assert f"model: {int8}" in printed.splitlines()


def test_checkpoint_or_bad_count_ends_with_one_line(tree, tmp_path, capsys):
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"not used")
    assert cli.main(quantize_args(checkpoint, tree, tmp_path / "out.onnx")) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "python -m training export" in error and len(error.splitlines()) == 1
    assert cli.main([*quantize_args(checkpoint, tree, tmp_path / "out.onnx"), "--calibration-images", "0"]) == 2
    assert "--calibration-images must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "out.onnx").exists()
