"""Evidence from near infrared, and doubt: physical checks on top of the network's answer.

The network sees red, green and blue only. Where the raster also has near infrared (found by
band description or wavelength, or named by the user), each tile gets two measured shares:

- water pixels: NDWI = (green - NIR) / (green + NIR) above WATER_NDWI. Water absorbs near
  infrared and reflects green; every land cover reflects more near infrared than green
  (McFeeters 1996 puts the boundary at 0). The sign of G - NIR survives any gain and offset the
  two bands share (an unremoved Sentinel-2 +1000, raw digital numbers). Clouds and snow can pass
  too: for a rule that only takes water away from tiles without such pixels, that errs on the side
  of the network.
- vegetated pixels: NDVI = (NIR - red) / (NIR + red) above VEGETATION_NDVI.

The water rule: a water class (WATER_CLASS_NAMES) needs water pixels. A tile with fewer than
WATER_MIN_SHARE of them has its water classes taken out of its probabilities (the rest
renormalised), so the next class stands. Measured in results/l2a/nir_rule.md on 2,116 real L2A
patches: it never touched the 30 clear-water patches and took the water label from every one of
the dense-vegetation patches the network called water.

Doubt: tiles whose top probability is below a confidence threshold (the card's calibrated
probabilities: below 0.5 a tile is more likely wrong than right) are marked in the outputs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from osgeo import ogr

from ..options import OptionError
from ..radiometry.bands import band_role, raster_band_role

WATER_NDWI = 0.0  # a water pixel: green above near infrared (McFeeters' boundary)
VEGETATION_NDVI = 0.4  # a vegetated pixel: green vegetation, sparse cover (0.2-0.4) left out
# A tile needs at least this share of water pixels for a water class: a river one pixel wide
# crossing a 64 px tile is 64 / 4,096 = 1.6 % of it, so this keeps every river Sentinel-2 can
# see, and is above the stray pixels of 379 of 385 dense-vegetation L2A patches (nir_rule.md).
WATER_MIN_SHARE = 0.01
# The classes that are water, by name (normalised: lower case, letters only), for any model's
# card: EuroSAT's SeaLake and River, AID's and others' Pond, Lake, Sea, Water. Classes that
# merely hold water (Beach, Harbor, Bridge) are land with water beside it: not in the table.
WATER_CLASS_NAMES = frozenset({"sealake", "river", "pond", "lake", "sea", "water", "ocean", "reservoir"})
# Below this top probability a tile is marked as doubtful. The card's probabilities are
# calibrated on the validation split (temperature scaling), so a tile of confidence c is right
# about c of the time there: below 0.5, more often wrong than right.
DEFAULT_MIN_CONFIDENCE = 0.5


# What the rule is, in one sentence for the faces (the dialog's model panel).
RULE_SUMMARY = (
    "a physical rule, not the network: where the raster has a near-infrared band, a tile with under "
    f"{WATER_MIN_SHARE:.0%} water pixels (NDWI > {WATER_NDWI:g}) cannot be a water class, and the next class stands"
)


@dataclass(frozen=True)
class EvidenceBands:
    """The raster bands (1-based) the shares are computed from, and how they were found."""

    green: int
    red: int
    nir: int
    note: str


@dataclass
class Evidence:
    """What the checks found in one run, for the summary and the faces."""

    bands: EvidenceBands | None  # None: the raster has no near infrared the run could find
    water_rule: bool  # whether the water rule was on
    min_confidence: float
    tiles_checked: int = 0  # classified tiles whose shares were measured
    tiles_changed: int = 0  # classified tiles whose top class the water rule changed
    tiles_doubtful: int = 0  # classified tiles below min_confidence
    tiles_classified: int = 0

    @property
    def threshold_text(self) -> str:
        """The confidence threshold in percent, as precise as it was given: '50%', '99.9%'."""
        return f"{100 * self.min_confidence:.3g}%"

    @property
    def doubtful_share(self) -> float:
        """The share of classified tiles below the confidence threshold (0 when none was classified)."""
        return self.tiles_doubtful / self.tiles_classified if self.tiles_classified else 0.0

    def lines(self) -> list[str]:
        """The summary's lines: the water rule's effect (or why it could not run), and the doubtful share."""
        return [self.water_line(), self.doubt_line()]

    def water_line(self) -> str:
        """What the near-infrared check did, in one line."""
        if self.bands is None:
            return (
                "near-infrared check: not possible (no near-infrared band found by description or wavelength, "
                "and none given); the classes are the network's alone"
            )
        if not self.water_rule:
            return f"near-infrared check: water rule off; water and vegetation shares measured ({self.bands.note})"
        return (
            f"near-infrared check: water rule changed {self.tiles_changed:,} of {self.tiles_checked:,} tiles "
            f"(a water class needs at least {WATER_MIN_SHARE:.0%} water pixels, NDWI > {WATER_NDWI:g}; "
            f"{self.bands.note})"
        )

    def doubt_line(self) -> str:
        """The share of doubtful tiles, in one line."""
        return (
            f"doubtful: {self.tiles_doubtful:,} of {self.tiles_classified:,} tiles ({self.doubtful_share:.1%}) "
            f"below {self.threshold_text} confidence"
        )


def find_evidence_bands(info, model_bands: list[int], card_bands: list[str], nir_band: int | None):
    """The green, red and near-infrared bands of the raster, or None when it has no near infrared.

    Near infrared is ``nir_band`` when given (checked against the raster), else the band whose
    description or wavelength says so (``bands.raster_band_role``). Green and red are the
    bands the raster names so, else those feeding the model's green and red channels
    (``model_bands``, one per ``card_bands``).
    """
    if nir_band is not None and not 1 <= nir_band <= info.band_count:
        raise OptionError(
            "nir_band",
            "{nir_band} {value} is out of range: {name} has {count} band(s), numbered from 1 (0: find it).",
            value=nir_band,
            name=info.name,
            count=info.band_count,
        )
    roles = {raster_band_role(info, band): band for band in range(info.band_count, 0, -1)}  # the first wins
    fed = {band_role(name): band for name, band in zip(card_bands, model_bands)}
    green, red = roles.get("green") or fed.get("green"), roles.get("red") or fed.get("red")
    nir = nir_band or roles.get("nir")
    if not (nir and green and red):
        return None
    how = "as given" if nir_band else "found by description or wavelength"
    return EvidenceBands(green, red, nir, f"near infrared band {nir} {how}, green {green}, red {red}")


def normalised_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(a - b) / (a + b) per pixel; 0 where both are 0 (no signal says nothing)."""
    a, b = a.astype(np.float32), b.astype(np.float32)
    total = a + b
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total != 0, (a - b) / total, 0.0).astype(np.float32)


def pixel_masks(green, red, nir, valid) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (H, W) masks of valid water pixels and valid vegetated pixels, from reflectance."""
    water = (normalised_difference(green, nir) > WATER_NDWI) & valid
    vegetated = (normalised_difference(nir, red) > VEGETATION_NDVI) & valid
    return water, vegetated


def tile_shares(mask: np.ndarray, valid: np.ndarray, size: int, step: int) -> np.ndarray:
    """The share of each tile's valid pixels that are set in ``mask``; tiles are ``size`` px wide, ``step`` px apart.

    ``mask`` and ``valid`` are (size, width) strips; tile k covers columns step*k .. step*k+size.
    A tile without a valid pixel gets 0.
    """
    counts = sliding_window_view((mask & valid).sum(axis=0), size)[::step].sum(axis=1)
    valid_counts = sliding_window_view(valid.sum(axis=0), size)[::step].sum(axis=1)
    return counts / np.maximum(valid_counts, 1)


def water_class_ids(class_names: list[str]) -> list[int]:
    """The ids of the card's classes that are water (WATER_CLASS_NAMES), by name."""
    return [i for i, name in enumerate(class_names) if re.sub(r"[^a-z]", "", name.lower()) in WATER_CLASS_NAMES]


def apply_water_rule(probs: np.ndarray, water_share: np.ndarray, water_ids: list[int]) -> np.ndarray:
    """``probs`` (k, classes) with the water classes taken out of tiles below WATER_MIN_SHARE water pixels.

    Those tiles' other probabilities are renormalised to sum to 1, so the next class stands. A
    tile the network gave no probability outside water gets the other classes alike.
    """
    dry = water_share < WATER_MIN_SHARE
    if not water_ids or not dry.any():
        return probs
    ruled = probs.astype(np.float64, copy=True)
    rows = ruled[dry]
    rows[:, water_ids] = 0.0
    rest = rows.sum(axis=1, keepdims=True)
    land = np.ones(probs.shape[1], dtype=bool)
    land[water_ids] = False
    rows = np.where(rest > 0, rows / np.where(rest > 0, rest, 1.0), land / land.sum())
    ruled[dry] = rows
    return ruled.astype(probs.dtype)


def check_min_confidence(value: float | None, card) -> float:
    """The confidence threshold for doubtful tiles: ``value``, else the card's, else DEFAULT_MIN_CONFIDENCE."""
    if value is None:
        value = card.min_confidence if card.min_confidence is not None else DEFAULT_MIN_CONFIDENCE
    if not 0.0 <= value <= 1.0:
        raise OptionError(
            "min_confidence",
            "{min_confidence} must be a probability between 0 and 1 (e.g. 0.5), not {value}.",
            value=value,
        )
    return float(value)


def layer_counts(path) -> dict[str, int]:
    """What a finished tile layer (classify-many's merged GeoPackage) says: classified tiles, tiles the
    near-infrared check measured, tiles the water rule changed and doubtful tiles, from its fields."""
    dataset = ogr.Open(str(path))
    layer = dataset.GetLayer(0)
    counts = {}
    for key, where in (
        ("classified", "class_id IS NOT NULL"),
        ("checked", "water_pixels IS NOT NULL"),
        ("changed", "water_rule = 1"),
        ("doubtful", "doubtful = 1"),
    ):
        layer.SetAttributeFilter(where)
        counts[key] = layer.GetFeatureCount()
    layer = dataset = None  # closes the file
    return counts


def counts_line(counts: dict[str, int]) -> str:
    """``layer_counts`` in one line, as the summary words them."""
    classified = counts["classified"]
    doubtful = f"doubtful {counts['doubtful']:,} of {classified:,} tiles"
    if not counts["checked"]:
        return f"near-infrared check not possible (no near-infrared band); {doubtful}"
    return f"water rule changed {counts['changed']:,} of {counts['checked']:,} tiles; {doubtful}"
