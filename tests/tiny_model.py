"""A tiny scene classifier exported by our own training code, for engine and plugin tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper
from torch import nn

from rs_ghost_qgis.core.model.card import ModelCard
from training.export import export_onnx

TINY_CLASSES = ["Water", "Forest", "Crop"]


def tiny_card(input_size: int = 32, tile_size: int = 32, gsd_m: float = 10.0) -> ModelCard:
    """The card of the tiny model: 3 classes, RGB, Sentinel-2-like scaling."""
    return ModelCard(
        class_names=list(TINY_CLASSES),
        class_colors=["#1f78b4", "#33a02c", "#ffff99"],
        input_size=input_size,
        tile_size=tile_size,
        gsd_m=gsd_m,
        bands=["red", "green", "blue"],
        standardization_mean=[0.5, 0.5, 0.5],
        standardization_std=[0.25, 0.25, 0.25],
        architecture="tiny_cnn",
        raw_range=[0.0, 3000.0],
        parameters=0,
        training={"note": "random weights, for tests only"},
    )


class TinyNet(nn.Module):
    """Mean colour decides the class, so tests can predict what it says."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(3, len(TINY_CLASSES))
        with torch.no_grad():
            # Blue-ish tiles -> Water, green-ish -> Forest, red/bright -> Crop.
            self.head.weight.copy_(torch.tensor([[-1.0, -1.0, 2.0], [-1.0, 2.0, -1.0], [2.0, -0.5, -1.0]]) * 4)
            self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits from the mean normalised colour."""
        return self.head(self.pool(x).flatten(1))


def export_tiny_model(path: Path, **card_options: float) -> Path:
    """Export TinyNet with its card to ``path`` and return it."""
    return export_onnx(TinyNet(), tiny_card(**card_options), path)


def pooled_model(path: Path, card: ModelCard, bias: float = 0.0, sqrt: bool = False) -> Path:
    """An ONNX classifier written by hand: mean colour -> (its square root) -> 3 logits (+ bias).

    For broken models: ``bias`` NaN or inf gives non-finite outputs for every tile; ``sqrt``
    gives NaN only for tiles whose mean normalised colour is negative (dark), not for the
    blank probe tile.
    """
    weight = helper.make_tensor("w", TensorProto.FLOAT, [3, 3], np.eye(3, dtype=np.float32).ravel())
    shift = helper.make_tensor("b", TensorProto.FLOAT, [3], np.full(3, bias, np.float32))
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["mean"]),
        helper.make_node("Sqrt" if sqrt else "Identity", ["mean"], ["features"]),  # sqrt: NaN below 0
        helper.make_node("MatMul", ["features", "w"], ["scores"]),
        helper.make_node("Add", ["scores", "b"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "pooled",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        [weight, shift],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    for key, value in card.to_metadata().items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path
