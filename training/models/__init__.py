"""Model zoo: the VGG-16 teacher and the G-Ghost RegNet students, built by name."""

from __future__ import annotations

from torch import nn

from training.models.g_ghost_regnet import CONFIGS, GGhostRegNet
from training.models.measure import count_macs, count_parameters
from training.models.vgg import VGG16

MODEL_NAMES = ("vgg16", "vgg16_bn") + tuple(f"g_ghost_regnetx_{variant}" for variant in CONFIGS)
OPTIONS = ("in_channels", "dropout", "stem_stride")

__all__ = ["MODEL_NAMES", "build_model", "count_macs", "count_parameters"]


def build_model(name: str, num_classes: int, **options: float) -> nn.Module:
    """Build ``name`` (one of MODEL_NAMES) with a ``num_classes`` head and fresh weights.

    Options: ``in_channels`` (default 3), ``dropout`` (default 0.5 for VGG, 0.2 for G-Ghost) and,
    for G-Ghost only, ``stem_stride`` (2 as in ImageNet RegNets, or 1 for small tiles).
    """
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODEL_NAMES)}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown model option(s) {', '.join(unknown)}; accepted: {', '.join(OPTIONS)}")
    if name.startswith("vgg16"):
        if "stem_stride" in options:
            raise ValueError("stem_stride is a G-Ghost option; VGG-16 has no stem")
        return VGG16(num_classes, batch_norm=name == "vgg16_bn", **options)
    return GGhostRegNet(CONFIGS[name.removeprefix("g_ghost_regnetx_")], num_classes, **options)
