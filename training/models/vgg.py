"""VGG-16 (Simonyan and Zisserman, 2015), with or without batch-norm, the distillation teacher."""

from __future__ import annotations

import torch
from torch import nn

# Output channels of the 13 3x3 convolutions; "M" is a 2x2 max-pool closing each of the 5 blocks.
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
POOLED_SIDE = 7


def adaptive_pool_matrix(in_size: int | torch.Tensor, out_size: int, dtype: torch.dtype) -> torch.Tensor:
    """The (out_size, in_size) averaging matrix of adaptive average pooling along one axis.

    Output cell i averages input cells floor(i * in / out) .. ceil((i + 1) * in / out) - 1,
    PyTorch's definition. Built from tensor ops so that a traced size stays in the graph.
    """
    cells = torch.arange(out_size)
    start = (cells * in_size) // out_size
    end = ((cells + 1) * in_size + out_size - 1) // out_size
    inputs = torch.arange(in_size)
    inside = (inputs[None, :] >= start[:, None]) & (inputs[None, :] < end[:, None])
    return inside.to(dtype) / (end - start)[:, None].to(dtype)


class ExportableAdaptiveAvgPool2d(nn.Module):
    """Adaptive average pooling to a square side that also exports to ONNX for any input size.

    The TorchScript ONNX exporter only handles adaptive pooling when the input side is a
    multiple of the output side, so a 64 px input (2x2 map -> 7x7) fails there. Adaptive
    pooling is separable and linear: output = A(H) @ x @ A(W)^T, which is exact (A is the
    identity for a 7x7 map) and exports as plain tensor ops and two MatMuls.
    """

    def __init__(self, output_side: int = POOLED_SIDE) -> None:
        super().__init__()
        self.output_side = output_side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool the last two axes of ``x`` to ``output_side`` x ``output_side``."""
        rows = adaptive_pool_matrix(x.shape[-2], self.output_side, x.dtype).to(x.device)
        cols = adaptive_pool_matrix(x.shape[-1], self.output_side, x.dtype).to(x.device)
        return torch.matmul(torch.matmul(rows, x), cols.t())


def _features(in_channels: int, batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = in_channels
    for item in VGG16_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        layers.append(nn.Conv2d(channels, item, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(item))
        layers.append(nn.ReLU(inplace=True))
        channels = item
    return nn.Sequential(*layers)


class VGG16(nn.Module):
    """VGG-16: 13 convs in 5 blocks, 7x7 adaptive pool, classifier 25088-4096-4096-classes."""

    def __init__(self, num_classes: int, *, batch_norm: bool = False, in_channels: int = 3, dropout: float = 0.5):
        super().__init__()
        self.features = _features(in_channels, batch_norm)
        self.avgpool = ExportableAdaptiveAvgPool2d(POOLED_SIDE)
        self.classifier = nn.Sequential(
            nn.Linear(512 * POOLED_SIDE * POOLED_SIDE, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's VGG initialisation, so training from scratch behaves as usual.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes) for images (N, in_channels, H, W) with H, W >= 32."""
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))
