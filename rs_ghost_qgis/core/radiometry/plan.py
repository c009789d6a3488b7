"""A run's radiometry plan: the bands feeding the model and how their values are mapped.

``Radiometry`` maps raw pixels onto the card's ``value_range`` and into the network input;
``scaling.plan_radiometry`` chooses it for a raster.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model.card import ModelCard
from .sample import PERCENTILES


@dataclass(frozen=True)
class Radiometry:
    """The band mapping and value scaling of one run.

    A raw value ``v`` becomes ``v * gain - offset`` (reflectance x 10,000 for ``card``), then
    ``low..high`` (per channel) is mapped linearly onto the card's ``value_range`` and clipped.
    """

    card: ModelCard
    bands: list[int]  # 1-based raster bands, one per model channel
    bands_note: str  # how the mapping was chosen, for people
    scaling: str  # "none" | "card" | "percentile" | "percentile-per-band"
    low: tuple[float, ...]  # value mapped to value_range[0], per channel
    high: tuple[float, ...]  # value mapped to value_range[1], per channel
    gain: float = 1.0  # REFLECTANCE_SCALE for reflectance in 0..1
    offset: float = 0.0  # subtracted after the gain (the Sentinel-2 offset, 1000)
    # Per channel (raw knots, value knots): the card's curves for the data's product level,
    # used instead of low..high ("card" scaling of L2A data with a model that has L2A curves).
    curves: tuple[tuple[tuple[float, ...], tuple[float, ...]], ...] | None = None
    product: str = ""  # "l1c" | "l2a" for Sentinel-2 reflectance, "" when not decided
    reason: str = ""  # why this scaling, for people
    warnings: tuple[str, ...] = ()  # what the user should check, each naming the option that changes it

    @property
    def scaling_note(self) -> str:
        """What was chosen and why, in words, e.g. 'reflectance x 10,000 detected: linear ... (card)'."""
        vr0, vr1 = self.card.value_range
        if self.scaling == "none":
            how = f"values used as they are (expected in {vr0:g}..{vr1:g})"
        elif self.scaling == "card":
            mapping = self.card.radiometry.get("mapping") if isinstance(self.card.radiometry, dict) else None
            lo, hi = self.low[0], self.high[0]
            how = f"{mapping} (card)" if mapping else f"linear {lo:g}..{hi:g} -> {vr0:g}..{vr1:g} for all bands (card)"
            if self.card.band_raw_ranges:
                ranges = ", ".join(f"band {b}: {self.low[c]:.6g}..{self.high[c]:.6g}" for c, b in enumerate(self.bands))
                how = f"as the training chips were stretched, per band -> {vr0:g}..{vr1:g} ({ranges})"
            if self.curves:  # how they were fitted is in the card: the line stays short
                how = f"the model's own {self.product.upper()} curve per band (card)"
            elif self.product == "l2a":
                how += "; the model has no L2A curves, so the L1C mapping is used"
        elif self.scaling == "percentile":
            how = (
                f"one {PERCENTILES[0]:g}-{PERCENTILES[1]:g} percentile range for all bands, "
                f"{self.low[0]:.6g}..{self.high[0]:.6g} -> {vr0:g}..{vr1:g}"
            )
        else:
            ranges = ", ".join(f"band {b}: {self.low[c]:.6g}..{self.high[c]:.6g}" for c, b in enumerate(self.bands))
            how = f"{PERCENTILES[0]:g}-{PERCENTILES[1]:g} percentile per band -> {vr0:g}..{vr1:g} ({ranges})"
        return f"{self.reason}: {how}" if self.reason else how

    def raw_bounds(self) -> tuple[float, float]:
        """The raw values mapped onto the ends of ``value_range`` (the widest over the channels)."""
        low, high = min(self.low), max(self.high)
        if self.curves:  # the curves' knots span what they map; beyond them values are clipped
            low, high = min(raw[0] for raw, _ in self.curves), max(raw[-1] for raw, _ in self.curves)
        return (low + self.offset) / self.gain, (high + self.offset) / self.gain

    def _ranges(self) -> list[tuple[float, float]]:
        return [(self.low[c], self.high[c]) for c in range(len(self.low))]

    def to_values(self, data: np.ndarray) -> np.ndarray:
        """Raw pixels (C, ...) -> float32 values in the card's ``value_range``."""
        values = data.astype(np.float32, copy=True)
        if self.scaling == "none":
            return values
        vr0, vr1 = self.card.value_range
        if self.curves:
            for c, (raw, value) in enumerate(self.curves):
                reflectance = values[c] * self.gain - self.offset if self.gain != 1.0 else values[c] - self.offset
                values[c] = np.interp(reflectance, raw, value)  # constant beyond the ends
            np.clip(values, vr0, vr1, out=values)
            return values
        for c, (lo, hi) in enumerate(self._ranges()):
            # Subtract before scaling: folding the shift into one multiply-add loses float32
            # precision when the values are huge and the span is small (1e30 + a few).
            if self.gain != 1.0:
                values[c] *= self.gain
            values[c] -= self.offset + lo
            values[c] *= (vr1 - vr0) / (hi - lo)
            values[c] += vr0
        np.clip(values, vr0, vr1, out=values)
        return values

    def normalise(self, data: np.ndarray) -> np.ndarray:
        """Raw pixels (C, ...) -> the float32 network input ``(v / value_range[1] - mean) / std``."""
        # Values used as they are (to_values would only cast them to float32): the first multiply
        # reads the raw pixels and casts them as it goes, the same float32 values in one pass fewer.
        as_is = self.scaling == "none"
        values = np.empty(data.shape, dtype=np.float32) if as_is else self.to_values(data)
        top = self.card.value_range[1]
        for c, mean in enumerate(self.card.standardization_mean):
            std = self.card.standardization_std[c]
            scale = np.float32(1.0 / (top * std))  # the float32 factor that multiplying by the float gives
            np.multiply(data[c] if as_is else values[c], scale, out=values[c], dtype=np.float32)
            values[c] -= mean / std
        return values


def share_outside(plan: Radiometry, values: np.ndarray) -> float:
    """The share of the raw ``values`` that fall outside the range ``plan`` maps (0 when there are none)."""
    low, high = plan.raw_bounds()
    # Counted, not averaged: the same number (an exact count over the size) without a float copy of the mask.
    return np.count_nonzero((values < low) | (values > high)) / values.size if values.size else 0.0


def reflectance_plan(
    card: ModelCard,
    product: str = "",
    bands: list[int] | None = None,
    note: str = "",
    gain: float = 1.0,
    offset: float = 0.0,
    reason: str = "",
    warnings: tuple[str, ...] = (),
) -> Radiometry:
    """The card's mapping of reflectance x 10,000 of ``product`` ("l1c", "l2a" or ""): its curves for
    that level when it has them, else ``raw_range`` for every band. ``bands`` default to 1..C."""
    bands = bands or list(range(1, len(card.bands) + 1))
    n, (lo, hi) = len(bands), card.raw_range
    curves = card.product_curves(product) if product else None
    return Radiometry(
        card, bands, note, "card", (lo,) * n, (hi,) * n, gain, offset, _frozen(curves), product, reason, warnings
    )


def _frozen(curves):
    return tuple((tuple(raw), tuple(value)) for raw, value in curves) if curves else None
