"""A tiny scene classifier exported by our own training code, for engine and plugin tests."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from rs_ghost_qgis.core.modelcard import ModelCard
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
