"""G-Ghost RegNet (Han et al., "GhostNets on Heterogeneous Devices via Cheap Operations", IJCV 2022).

A RegNetX whose deep stages compute only part of their output channels with the full block
stack ("intrinsic" features) and make the rest with a cheap 1x1 operation on the stage's first
block output, corrected by a vector mixed from every intermediate feature (feature reuse).
See docs/METHOD.md, section 2 (Student).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

STEM_WIDTH = 32
CHEAP_GROUP_WIDTH_RATIO = 0.75


@dataclass(frozen=True)
class RegNetConfig:
    """Depth, width and group width of the four stages."""

    depths: tuple[int, int, int, int]
    widths: tuple[int, int, int, int]
    group_width: int


CONFIGS = {
    # RegNetX-200MF's stages: with stem_stride=1 it keeps 64 px EuroSAT tiles at 4 x 4 in the last stage.
    "002": RegNetConfig((1, 1, 4, 7), (24, 56, 152, 368), 8),
    "032": RegNetConfig((2, 6, 15, 2), (96, 192, 432, 1008), 48),
    "040": RegNetConfig((2, 5, 14, 2), (80, 240, 560, 1360), 40),
    "080": RegNetConfig((2, 5, 15, 1), (80, 240, 720, 1920), 120),
    "160": RegNetConfig((2, 6, 13, 1), (256, 512, 896, 2048), 128),
}


def _conv_bn(in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1, groups: int = 1) -> list:
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=False)
    return [conv, nn.BatchNorm2d(out_channels)]


class Bottleneck(nn.Module):
    """RegNetX block (expansion 1): 1x1, grouped 3x3 (stride), 1x1, plus shortcut, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, group_width: int = 1) -> None:
        super().__init__()
        width = out_channels
        groups = width // min(width, group_width)
        self.body = nn.Sequential(
            *_conv_bn(in_channels, width),
            nn.ReLU(inplace=True),
            *_conv_bn(width, width, 3, stride, groups),
            nn.ReLU(inplace=True),
            *_conv_bn(width, out_channels),
        )
        needs_projection = stride != 1 or in_channels != out_channels
        self.shortcut = nn.Sequential(*_conv_bn(in_channels, out_channels, 1, stride)) if needs_projection else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual block output."""
        identity = x if self.shortcut is None else self.shortcut(x)
        return torch.relu(self.body(x) + identity)


def plain_stage(in_channels: int, out_channels: int, group_width: int, depth: int) -> nn.Sequential:
    """RegNet stage: a stride-2 block with projection shortcut, then identity blocks."""
    blocks = [Bottleneck(in_channels, out_channels, 2, group_width)]
    blocks += [Bottleneck(out_channels, out_channels, 1, group_width) for _ in range(depth - 1)]
    return nn.Sequential(*blocks)


class GGhostStage(nn.Module):
    """G-Ghost stage of ``depth`` blocks: base block, intrinsic path, cheap path with feature reuse, end block."""

    def __init__(self, in_channels: int, out_channels: int, group_width: int, depth: int) -> None:
        super().__init__()
        if depth < 3:
            raise ValueError(f"a G-Ghost stage needs depth >= 3, got {depth}; use a plain stage instead")
        cheap_group_width = int(CHEAP_GROUP_WIDTH_RATIO * group_width)
        self.raw_channels = out_channels // (2 * cheap_group_width) * cheap_group_width
        cheap_channels = out_channels - self.raw_channels
        if self.raw_channels == 0:
            raise ValueError(f"width {out_channels} is too small for group width {group_width}")
        self.base = Bottleneck(in_channels, out_channels, 2, group_width)
        self.intrinsic = nn.Sequential(
            *[Bottleneck(self.raw_channels, self.raw_channels, 1, cheap_group_width) for _ in range(depth - 2)]
        )
        reused_channels = out_channels + self.raw_channels * (depth - 2)
        self.mix = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            *_conv_bn(reused_channels, cheap_channels),
            nn.ReLU(inplace=True),
            *_conv_bn(cheap_channels, cheap_channels),
        )
        self.cheap = nn.Sequential(*_conv_bn(cheap_channels, cheap_channels))
        self.end = Bottleneck(out_channels, out_channels, 1, group_width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Stage output at half the input resolution."""
        x0 = self.base(x)
        intrinsic = x0[:, : self.raw_channels]
        reused = [x0]
        for block in self.intrinsic:
            intrinsic = block(intrinsic)
            reused.append(intrinsic)
        mixed = self.mix(torch.cat(reused, dim=1))
        # The mixed vector (N, cheap, 1, 1) broadcasts over the map of the cheap features.
        cheap = torch.relu(self.cheap(x0[:, self.raw_channels :]) + mixed)
        return self.end(torch.cat([intrinsic, cheap], dim=1))


class GGhostRegNet(nn.Module):
    """Stem, four stages (total stride 32, or 16 with stem_stride=1), global average pool, dropout, linear classifier.

    ``stem_stride=1`` suits small tiles: at 64 px the ImageNet stem leaves the last stage a 2 x 2
    map, too coarse for the texture that tells EuroSAT's classes apart.
    """

    def __init__(
        self,
        config: RegNetConfig,
        num_classes: int,
        *,
        in_channels: int = 3,
        dropout: float = 0.2,
        stem_stride: int = 2,
    ):
        super().__init__()
        if stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, got {stem_stride}")
        self.stem = nn.Sequential(*_conv_bn(in_channels, STEM_WIDTH, 3, int(stem_stride)), nn.ReLU(inplace=True))
        stages = []
        previous = STEM_WIDTH
        for index, (depth, width) in enumerate(zip(config.depths, config.widths, strict=True)):
            # Stage 1 is always plain, stage 3 always G-Ghost, stages 2 and 4 G-Ghost when deep enough.
            ghost = index == 2 or (index in (1, 3) and depth > 2)
            stage_type = GGhostStage if ghost else plain_stage
            stages.append(stage_type(previous, width, config.group_width, depth))
            previous = width
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Dropout(dropout), nn.Linear(previous, num_classes)
        )
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes) for images (N, in_channels, H, W), H and W multiples of the total stride."""
        return self.head(self.stages(self.stem(x)))
