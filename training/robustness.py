"""Robust validation: top-1 under a fixed set of radiometric shifts a user's scene may carry.

EuroSAT is Sentinel-2 L1C, stretched 0..2750 -> 1..255. Other scenes differ: L2A surface
reflectance lacks the haze (path radiance) L1C carries, another sensor or date is brighter or
darker, a display stretch bends the values. Each shift here is deterministic, so the robust
accuracy of two models is comparable. Images are float (B, C, H, W) in 0..1.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from training.data.loader import HAZE_RGB


def _haze_removed(images: torch.Tensor) -> torch.Tensor:
    # The Demmin L2A scene against L1C: +300/+400/+650 DN on B4/B3/B2, in 8-bit units of EuroSAT.
    offset = torch.tensor(HAZE_RGB[: images.shape[1]], dtype=images.dtype).view(1, -1, 1, 1)
    return (images - offset).clamp(0, 1)


def _gain(factor: float) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda images: (images * factor).clamp(0, 1)


def _gamma(exponent: float) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda images: images.clamp(0, 1) ** exponent


SHIFTS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "l2a_haze_removed": _haze_removed,
    "gain_0.8": _gain(0.8),
    "gain_1.2": _gain(1.2),
    "gamma_0.8": _gamma(0.8),
    "gamma_1.25": _gamma(1.25),
}
