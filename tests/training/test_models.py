"""Model zoo: exact sizes, output shapes, MACs and ONNX export of the teacher and students."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.tiny_model import tiny_card
from training.export import export_onnx
from training.models import MODEL_NAMES, build_model, count_macs, count_parameters
from training.models.vgg import ExportableAdaptiveAvgPool2d

GHOSTS = ("g_ghost_regnetx_032", "g_ghost_regnetx_040", "g_ghost_regnetx_080", "g_ghost_regnetx_160")
# Published sizes (docs/METHOD.md, section 2): 1000-class and 30-class heads, millions of parameters.
GHOST_MILLIONS = {
    "g_ghost_regnetx_032": (10.51, 9.53),
    "g_ghost_regnetx_040": (15.73, 14.41),
    "g_ghost_regnetx_080": (24.59, 22.72),
    "g_ghost_regnetx_160": (32.38, 30.39),
}


def parameters_of(name: str, num_classes: int) -> int:
    # Meta tensors: the exact count without allocating or initialising 138 M weights.
    with torch.device("meta"):
        return count_parameters(build_model(name, num_classes))


@pytest.fixture(scope="module")
def vgg() -> nn.Module:
    torch.manual_seed(0)
    return build_model("vgg16", 10).eval()


def test_model_names_are_the_documented_ones():
    assert ("vgg16", "vgg16_bn", "g_ghost_regnetx_002", *GHOSTS) == MODEL_NAMES


def test_a_stride_one_stem_keeps_four_times_the_last_stage_map_with_the_same_weights():
    seen = {}
    for stride in (1, 2):
        model = build_model("g_ghost_regnetx_002", 10, stem_stride=stride).eval()
        with torch.no_grad():
            seen[stride] = model.stages(model.stem(torch.randn(1, 3, 64, 64))).shape[-2:]
        seen[f"params {stride}"] = sum(p.numel() for p in model.parameters())
    assert tuple(seen[1]) == (4, 4) and tuple(seen[2]) == (2, 2)
    assert seen["params 1"] == seen["params 2"]
    # RegNetX-200MF's published 2.7 M parameters at 1000 classes, less what G-Ghost saves.
    assert 1.0e6 < parameters_of("g_ghost_regnetx_002", 10) < 2.7e6


def test_stem_stride_is_checked():
    with pytest.raises(ValueError, match="stem_stride"):
        build_model("g_ghost_regnetx_002", 10, stem_stride=3)
    with pytest.raises(ValueError, match="G-Ghost option"):
        build_model("vgg16_bn", 10, stem_stride=1)


def test_vgg16_parameter_counts_are_canonical():
    assert parameters_of("vgg16", 1000) == 138_357_544
    assert parameters_of("vgg16", 30) == 134_383_454
    assert parameters_of("vgg16", 10) == 134_301_514
    assert parameters_of("vgg16_bn", 1000) - parameters_of("vgg16", 1000) == 8_448
    assert parameters_of("vgg16_bn", 10) - parameters_of("vgg16", 10) == 8_448


@pytest.mark.parametrize("name", GHOSTS)
def test_g_ghost_parameter_counts_match_the_paper(name):
    imagenet, aid = GHOST_MILLIONS[name]
    assert parameters_of(name, 1000) == pytest.approx(imagenet * 1e6, rel=0.005)
    assert parameters_of(name, 30) == pytest.approx(aid * 1e6, rel=0.005)


def test_g_ghost_stage_layout():
    model = build_model("g_ghost_regnetx_080", 10)
    kinds = [type(stage).__name__ for stage in model.stages]
    # Depths 2, 5, 15, 1: stage 1 plain, 2 and 3 G-Ghost (deep), 4 plain (shallow).
    assert kinds == ["Sequential", "GGhostStage", "GGhostStage", "Sequential"]
    stage = model.stages[2]
    # gw 120 -> cheap group width 90; raw = floor(360 / 90) * 90 = 360 of 720 channels.
    assert stage.raw_channels == 360
    assert len(stage.intrinsic) == 13
    assert stage.mix[1].in_channels == 720 + 360 * 13
    assert stage.cheap[0].in_channels == 360


@pytest.mark.slow
def test_vgg_logits_at_64_and_224(vgg):
    with torch.no_grad():
        for side in (64, 224):
            logits = vgg(torch.randn(2, 3, side, side))
            assert logits.shape == (2, 10)
            assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", GHOSTS)
def test_g_ghost_logits_at_64(name):
    model = build_model(name, 7).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 7)
    assert torch.isfinite(logits).all()


def test_g_ghost_logits_at_224_and_backward():
    model = build_model("g_ghost_regnetx_032", 5, in_channels=4)
    logits = model(torch.randn(2, 4, 224, 224))
    assert logits.shape == (2, 5)
    logits.sum().backward()
    assert all(parameter.grad is not None for parameter in model.parameters())


@pytest.mark.slow
def test_macs_match_published_figures(vgg):
    assert count_macs(vgg, 224) == pytest.approx(15.47e9, rel=0.01)
    student = build_model("g_ghost_regnetx_032", 1000)
    student.train()
    assert count_macs(student, 224) == pytest.approx(1.8e9, rel=0.05)
    assert student.training, "count_macs must restore the training mode"
    # Conv MACs scale with the image area; only the 1x1-pooled mixing and the head do not.
    assert count_macs(student, 64) < count_macs(student, 224) / 10


def test_grouped_convolutions_are_counted_per_group():
    layer = nn.Conv2d(8, 16, 3, padding=1, groups=4, bias=False)
    assert count_macs(layer, 10, channels=8) == 16 * 10 * 10 * (8 // 4) * 9


def test_build_model_rejects_mistakes():
    with pytest.raises(ValueError, match="vgg16_bn"):
        build_model("resnet50", 10)
    with pytest.raises(ValueError, match="num_classes"):
        build_model("vgg16", 0)
    with pytest.raises(ValueError, match="in_channels"):
        build_model("g_ghost_regnetx_032", 10, width=2)


@pytest.mark.parametrize("side", [1, 2, 3, 4, 7, 8, 14, 9])
def test_pool_equals_adaptive_average_pooling(side):
    x = torch.randn(2, 5, side, side + 1)
    expected = F.adaptive_avg_pool2d(x, 7)
    torch.testing.assert_close(ExportableAdaptiveAvgPool2d(7)(x), expected, rtol=0, atol=1e-6)


def test_pool_of_a_2x2_map_averages_the_middle_row():
    # Adaptive bins for 2 -> 7: cells 0-2 take input 0, cell 3 averages both, cells 4-6 take input 1;
    # so nearest-neighbour upsampling would not be exact, the matrix form is.
    x = torch.tensor([[[[0.0, 2.0], [4.0, 6.0]]]])
    pooled = ExportableAdaptiveAvgPool2d(7)(x)[0, 0]
    assert pooled[3, 3] == 3.0
    assert pooled[0].tolist() == [0.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0]


def _onnx_logits(path, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "default"])
@pytest.mark.parametrize("side", [64, 224])
def test_vgg_pooling_exports_with_both_exporters(tmp_path, dynamo, side):
    # VGG's head in miniature: five 2x2 pools take 64 px to a 2x2 map and 224 px to 7x7.
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(32), ExportableAdaptiveAvgPool2d(7), nn.Flatten(), nn.Linear(196, 3)
    ).eval()
    x = torch.randn(2, 3, side, side)
    options = {"dynamo": False, "opset_version": 17} if dynamo is False else {}
    with torch.no_grad():
        torch.onnx.export(model, (x,), str(tmp_path / "pool.onnx"), input_names=["input"], **options)
        expected = model(x).numpy()
    np.testing.assert_allclose(_onnx_logits(tmp_path / "pool.onnx", x), expected, rtol=0, atol=1e-5)


@pytest.mark.filterwarnings("ignore")
def test_g_ghost_exports_through_the_project_exporter(tmp_path):
    torch.manual_seed(0)
    model = build_model("g_ghost_regnetx_032", 3).eval()
    path = export_onnx(model, tiny_card(input_size=64, tile_size=64), tmp_path / "ghost.onnx")
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(_onnx_logits(path, x), expected, rtol=0, atol=1e-4)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
def test_vgg_exports_at_64_px(tmp_path):
    torch.manual_seed(0)
    model = build_model("vgg16_bn", 3).eval()
    path = export_onnx(model, tiny_card(input_size=64, tile_size=64), tmp_path / "vgg.onnx")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(_onnx_logits(path, x), expected, rtol=0, atol=1e-4)
