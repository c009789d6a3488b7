"""Which raster bands feed the model, and how their values are brought to the training domain.

Band mapping: explicit (``bands=[3, 2, 1]``), else matched from band descriptions (B4/B04/Red
for a card band 'red', and so on, case-insensitive), else the first bands of the raster in
order (said so in the outputs, with a hint when another order matches the training images'
colour balance far better).

Scaling, chosen once for the whole run from a sample of the whole raster, never per tile:
- ``none``: values are used as they are (8-bit imagery, already in ``value_range``);
- ``card``: reflectance; the Sentinel-2 offset is removed (``offset``: from the raster's
  metadata, BOA_ADD_OFFSET / RADIO_ADD_OFFSET, or given by hand), floats in 0..1 are scaled
  by 10,000, then the card's ``raw_range`` is mapped linearly onto ``value_range`` and
  clipped: one scale for all bands, as the training images were made. Surface reflectance
  (Sentinel-2 L2A) lacks the haze of the L1C images EuroSAT was made from; when the card
  carries an L2A mapping (``product_mappings``), L2A data go through its per-band curves
  instead. The product level comes from ``product``, else the metadata, else the values;
- ``percentile``: one 2nd..98th percentile range of all bands' values together (keeps the
  colour balance), for data in unknown units;
- ``percentile-per-band``: each band its own 2nd..98th percentile (explicit choice only: it
  changes the colour balance);
- ``auto``: ``none`` for uint8, and for 8-bit imagery saved in a wider integer type (see
  ``eight_bit_look``); ``card`` for reflectance-like data (valid values in 0..10,000, or floats
  in 0..1); ``percentile`` otherwise (int8 included: it cannot hold reflectance x 10,000), with
  a warning.
GDAL's per-band scale and offset, when a raster declares them, are applied by the sources
(values are physical, as float); the rules above then judge the physical values, and the
scaling note says so. A raster that is 0 in every valid pixel sampled is refused: no image.
The network then sees ``(v / value_range[1] - mean) / std`` per band.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .model.card import ModelCard
from .options import OptionError, OptionText, check_product, check_scaling
from .sources.source import PALETTE, Bounds, RasterInfo, RasterSource, finite_pixels, is_scaled

PERCENTILES = (2.0, 98.0)
# Full-resolution sample for the statistics: whole raster when it is at most this many
# pixels, else a regular 8 x 8 pattern of 128 x 128 px windows.
SAMPLE_PIXELS = 1 << 20
SAMPLE_WINDOWS = 8
SAMPLE_WINDOW_PX = 128
# Warn when more than this share of the sampled values falls outside the range a scaling maps.
MOSTLY_OUTSIDE = 0.5

REFLECTANCE_SCALE = 10_000.0  # digital numbers per unit reflectance (Sentinel-2, Landsat SR, most COGs)
# 8-bit imagery saved in a wider integer type (a UInt16 GeoTIFF of an RGB photo) is not reflectance
# x 10,000: read as such it is darker than any water, and the map is all SeaLake. Values within
# 0..255 alone do not tell, since a scene of clear water stays below reflectance 2.55 %, so the
# values must also look like a picture: bright (98th percentile of all bands at least
# EIGHT_BIT_BRIGHT) and spread out in every band (2nd..98th percentile at least EIGHT_BIT_SPREAD
# apart). Reflectance that dark is water or shadow: dim, or even. Such data are then used as they
# are, with the reason in the scaling note: a correct guess needs no warning, and the note names
# what was seen. Data within 0..255 that do not look like a picture stay reflectance, with a
# warning naming the option, since either reading could be right.
EIGHT_BIT_TOP = 255
EIGHT_BIT_BRIGHT = 128.0
EIGHT_BIT_SPREAD = 80.0
# Bright clouds and snow exceed reflectance 1; values up to 1.5 still look like reflectance.
REFLECTANCE_HEADROOM = 1.5
# The top of the data for that test: a few saturated pixels (65535) must not decide the units.
TOP_PERCENTILE = 99.9
# Processing baseline 04.00 and later add this to every Sentinel-2 value; without a tag saying
# so, a raster whose bands all start at or above it probably carries it.
S2_OFFSET = 1000.0
# L1C carries path radiance (haze), most of it in blue: its darkest blue values stay high. The
# 2nd percentile of blue (reflectance x 10,000) is about 715 in EuroSAT's L1C images and 94 in
# real L2A patches; below L2A_BLUE_DARK the data look like L2A, above L1C_BLUE_DARK like L1C.
DARK_PERCENTILE = 2.0
L2A_BLUE_DARK = 400.0
L1C_BLUE_DARK = 600.0
# Words in metadata values, file names and band descriptions that name the product level.
# Short words must stand alone ("BOA reflectance"); product names may be joined to others
# ("Level-2A", "S2A_MSIL2A_2023...", "RADIO_ADD_OFFSET"), so they are looked for in the text
# with every separator removed.
_PRODUCT_WORDS = {"l2a": {"l2a", "boa"}, "l1c": {"l1c", "toa"}}
_PRODUCT_NAMES = {
    "l2a": ("msil2a", "s2msi2a", "level2a", "boaaddoffset"),
    "l1c": ("msil1c", "s2msi1c", "level1c", "radioaddoffset"),
}
_OFFSET_KEY = re.compile(r"(BOA|RADIO)_ADD_OFFSET", re.IGNORECASE)
# Colour balance caution for guessed bands: a chromaticity farther than this from the card's
# means is suspicious when another order of the first bands would at least halve the distance.
# That order is not proposed: on real imagery the balance named wrong ones (3,1,2 for NAIP's
# red, green, blue), so only evidence about the bands (descriptions, colours, wavelengths) may.
COLOUR_FAR = 0.04
COLOUR_BETTER = 0.5
HINT_MAX_BANDS = 6  # the other orders are drawn from the first usable bands
# Wavelength windows (nm) of the channels a card may name, and the Sentinel-2 band centre that
# the nearest band inside the window is matched to (ENVI and other hyperspectral headers).
_WAVELENGTHS = {"blue": (440, 515, 492), "green": (515, 600, 560), "red": (620, 700, 665), "nir": (760, 900, 833)}
_WAVELENGTH_KEYS = ("wavelength", "central_wavelength_um", "central_wavelength", "wavelength_nm")

_ALIASES = [
    {"red", "r", "b4", "b04"},
    {"green", "g", "b3", "b03"},
    {"blue", "b", "b2", "b02"},
    {"nir", "nearinfrared", "b8", "b08"},
]


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
        values = self.to_values(data)
        top = self.card.value_range[1]
        for c, mean in enumerate(self.card.standardization_mean):
            std = self.card.standardization_std[c]
            values[c] *= 1.0 / (top * std)
            values[c] -= mean / std
        return values


def share_outside(plan: Radiometry, values: np.ndarray) -> float:
    """The share of the raw ``values`` that fall outside the range ``plan`` maps (0 when there are none)."""
    low, high = plan.raw_bounds()
    return float(np.mean((values < low) | (values > high))) if values.size else 0.0


def _clipped_warning(plan: Radiometry, name: str, values: np.ndarray) -> tuple[str, ...]:
    """A warning when most sampled values lie outside the card's range (negative int16, other units)."""
    share = share_outside(plan, values)
    if share <= MOSTLY_OUTSIDE:
        return ()
    low, high = plan.raw_bounds()
    return (
        OptionText(
            "{share} of the values sampled from {name} lie outside {low}..{high} (they range {min}..{max}) and "
            "are clipped to the ends of what the model was trained on; choose another {scaling}, e.g. "
            "percentile, or check {offset} and {bands}.",
            share=f"{share:.0%}",
            name=name,
            low=f"{low:g}",
            high=f"{high:g}",
            min=f"{values.min():g}",
            max=f"{values.max():g}",
        ),
    )


def plan_radiometry(
    source: RasterSource,
    card: ModelCard,
    bands: list[int] | None = None,
    scaling: str = "auto",
    offset: float | None = None,
    product: str = "auto",
    within: Bounds | None = None,
) -> Radiometry:
    """Choose the band mapping and the scaling for ``source`` (reads a sample of the whole raster).

    ``within`` (bounds in the raster's CRS: the area asked for) is sampled instead when the
    whole raster's sample finds no valid pixel, as in a huge mosaic with data in a few places.

    ``offset`` (raw units, e.g. 1000) is removed before the card mapping; None takes it from the
    raster's metadata (BOA_ADD_OFFSET / RADIO_ADD_OFFSET), else 0 with a warning when every band
    starts at 1000 or more. ``product`` (auto, l1c, l2a) is the Sentinel-2 processing level of
    reflectance data: auto reads the metadata, else the values (see ``decide_product``).
    """
    _check_scaling(card, scaling)
    product = check_product(product)
    chosen, note, guessed = _choose(source, card, bands)
    info = source.info
    # Bands found by their descriptions get the colour check too (a web layer's sample is a
    # download, and its bands are the server's red, green, blue): descriptions can be wrong.
    described = bands is None and not guessed and not info.web
    as_is = scaling == "none" or (scaling == "auto" and info.dtype == "uint8")
    if as_is and not guessed:
        # No statistics needed (for a web layer a sample is a download): an 8-bit raster of zeros
        # whose bands are named is not refused here, unlike other types. A file's sample is cheap
        # and tells about its zero gaps, which the run takes as nodata, and its colour balance.
        plan = _as_is(card, chosen, note, scaling)
        ignored = _ignored_options(plan, product, offset)
        if info.web:
            return _finish(info, plan, ignored)
        sampled = _described_colours(source, plan, within) if described else _zero_gaps(source, chosen, within)
        return _finish(info, plan, ignored + sampled)
    candidates = _hint_bands(info, chosen) if guessed or described else chosen
    sample = sample_values(source, candidates, within)
    flat = _content_warnings(info, chosen, sample[: len(chosen)])
    sample, zeros = _without_zeros(info, chosen, sample)
    if as_is:
        plan = _as_is(card, chosen, note, scaling)
        flat += _ignored_options(plan, product, offset)
    else:
        plan = _plan_scaling(info, card, chosen, note, scaling, offset, sample[: len(chosen)], product)
    hint = colour_hint(plan, candidates, sample, described) if guessed or described else ""
    return _finish(info, plan, flat + zeros + ((hint,) if hint else ()))


def _ignored_options(plan: Radiometry, product: str, offset: float | None) -> tuple[str, ...]:
    """A warning for a product level or an offset given for values used as they are, which ignore both."""
    given = [name for name, chosen in (("{product}", product != "auto"), ("{offset}", bool(offset))) if chosen]
    if not given:
        return ()
    named = " and ".join(given)
    verb, pronoun = ("apply", "they have") if len(given) > 1 else ("applies", "it has")
    return (
        OptionText(
            f"{named} {verb} to reflectance data, but the values of this raster are used as they are ({{why}}), so "
            f"{pronoun} no effect; set {{scaling}} to card if it holds reflectance, or drop {named}.",
            why=plan.scaling_note,
        ),
    )


def _described_colours(source: RasterSource, plan: Radiometry, within: Bounds | None) -> tuple[str, ...]:
    """From one sample: the zero-pixel warning and the colour check of bands matched by their descriptions.

    () when nothing valid is read (the run says so).
    """
    candidates = _hint_bands(source.info, plan.bands)
    try:
        sample = sample_values(source, candidates, within)
    except InputError:
        return ()
    sample, zeros = _without_zeros(source.info, plan.bands, sample)
    hint = colour_hint(plan, candidates, sample, described=True)
    return zeros + ((hint,) if hint else ())


def _zero_gaps(source: RasterSource, bands: list[int], within: Bounds | None = None) -> tuple[str, ...]:
    """The zero-pixel warning of ``_without_zeros`` for ``bands``, from a sample; () when nothing valid is read."""
    try:
        sample = sample_values(source, bands, within)
    except InputError:  # all nodata: the run says so
        return ()
    return _without_zeros(source.info, bands, sample)[1]


def _without_zeros(info: RasterInfo, bands: list[int], values: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    """``values`` without the pixels that are 0 in every band, and a warning when there were any.

    Such pixels are nodata to the run (``pipeline.read_strip``): a mosaic's gap, an export's fill.
    They are left out of the statistics too, so that a gap does not stretch the scaling.
    """
    # Band by band: ``any(axis=0)`` across the bands of the column-major sample is ten times slower.
    zero = values[0] == 0
    for band_values in values[1 : len(bands)]:
        zero &= band_values == 0
    if not zero.any():
        return values, ()
    warning = (
        f"{zero.mean():.1%} of the sampled pixels of {info.name} are 0 in every band ({_join(bands)}), which is "
        "no reflectance or colour anywhere (a mosaic's gap, an export's fill): they are taken as nodata. If 0 "
        "marks nodata here, declare it (gdal_edit.py -a_nodata 0 FILE) and this warning goes."
    )
    return values[:, ~zero], (warning,)


def _finish(info: RasterInfo, plan: Radiometry, warnings: tuple[str, ...]) -> Radiometry:
    """``plan`` with ``warnings`` added and the band scale/offset that the source applied in its reason."""
    scaled = band_scaling_note(info, plan.bands)
    reason = "; ".join(text for text in (scaled, plan.reason) if text)
    return dataclasses.replace(plan, reason=reason, warnings=plan.warnings + warnings)


def band_scaling_note(info: RasterInfo, bands: list[int]) -> str:
    """'band scale 2.75e-05 and offset -0.2 applied (GDAL metadata)' for ``bands``; '' when none is declared."""
    pairs = {band: info.band_scaling(band) for band in bands}
    if all(pair == (1.0, 0.0) for pair in pairs.values()):
        return ""
    if len(set(pairs.values())) == 1:
        ((scale, offset),) = set(pairs.values())
        parts = [f"scale {scale:g}"] * (scale != 1.0) + [f"offset {offset:g}"] * (offset != 0.0)
        return f"band {' and '.join(parts)} applied (GDAL metadata)"
    scales = ", ".join(f"{band}: {scale:g}" for band, (scale, _) in pairs.items())
    offsets = ", ".join(f"{band}: {offset:g}" for band, (_, offset) in pairs.items())
    parts = [f"scales {scales}"] * any(s != 1.0 for s, _ in pairs.values())
    parts += [f"offsets {offsets}"] * any(o != 0.0 for _, o in pairs.values())
    return f"band {' and '.join(parts)} applied (GDAL metadata)"


def _content_warnings(info: RasterInfo, bands: list[int], values: np.ndarray) -> tuple[str, ...]:
    """Refuse a raster that is 0 in every valid pixel of ``bands``; warn when every band is constant.

    ``values`` (len(bands), N > 0) samples ``bands``. Zero everywhere is no image at all (an
    empty export, or 0 meant as nodata but not declared): whatever the scaling, the map would
    be one class with confidence. A constant raster is an image without detail: classified,
    as a small clip of open sea from a basemap may be, but said.
    """
    if not values.any():
        raise InputError(
            f"{info.name} has the value 0 in every valid pixel of bands {_join(bands)}: it holds no image to "
            "classify (an empty or failed export, or 0 used for nodata without declaring it). Choose the right "
            "file or bands; if 0 marks nodata, declare it (gdal_edit.py -a_nodata 0 FILE, or Layer Properties "
            "> Transparency > No data value)."
        )
    lows, highs = _per_band(values, np.min), _per_band(values, np.max)
    if (lows != highs).any():
        return ()
    return (
        OptionText(
            "Every valid pixel of {name} has the same value in each band ({values} in bands {chosen}): the "
            "raster holds no image detail, so every tile gets the same class. Check the file and {bands}.",
            name=info.name,
            values=", ".join(f"{v:g}" for v in lows),
            chosen=_join(bands),
        ),
    )


def _as_is(card: ModelCard, chosen: list[int], note: str, scaling: str, why: str = "8-bit data") -> Radiometry:
    """Values used as they are: 8-bit data (``why`` says how it was told), or Scaling none."""
    n, (vr0, vr1) = len(chosen), card.value_range
    reason = why if scaling == "auto" else "Scaling none as chosen"
    return Radiometry(card, chosen, note, "none", (vr0,) * n, (vr1,) * n, reason=reason)


def eight_bit_look(dtype: str, values: np.ndarray) -> str:
    """Why ``values`` (C, N) of a wider integer type are 8-bit imagery, e.g. '8-bit values in a uint16
    raster (...)'; '' when they are not (see EIGHT_BIT_BRIGHT)."""
    if not _within_8bit(dtype, values):
        return ""
    bright = float(np.percentile(values, PERCENTILES[1]))
    low, high = np.percentile(values, PERCENTILES, axis=1)
    spread = float((high - low).min())
    if bright < EIGHT_BIT_BRIGHT or spread < EIGHT_BIT_SPREAD:
        return ""
    return (
        f"8-bit values in a {dtype} raster (all 0..{EIGHT_BIT_TOP}, 98th percentile {bright:g}, each band's "
        f"2-98 percentile range {spread:g} or wider)"
    )


def _within_8bit(dtype: str, values: np.ndarray) -> bool:
    """Whether every value of an integer raster wider than 8 bits lies in 0..255."""
    kind = np.dtype(dtype)
    return (
        kind.kind in "iu"
        and kind.itemsize >= 2
        and values.size > 0
        and values.min() >= 0
        and values.max() <= EIGHT_BIT_TOP
    )


def _dim_warning(info: RasterInfo, values: np.ndarray) -> tuple[str, ...]:
    """A warning when data within 0..255 were taken for reflectance (they might be 8-bit imagery)."""
    if not _within_8bit(info.dtype, values):
        return ()
    return (
        OptionText(
            "Every value of {name} lies in 0..255, as 8-bit imagery would, but the values are too dim or too even "
            "for a picture: they are taken as reflectance x 10,000 of a dark scene (water, shadow). If {name} is "
            "8-bit imagery saved as {dtype}, set {scaling} to none.",
            name=info.name,
            dtype=info.dtype,
        ),
    )


def _eight_bit_card(info: RasterInfo, card: ModelCard) -> tuple[str, ...]:
    """A warning when 'card' scaling, chosen, maps reflectance x 10,000 onto 8-bit values (at most 255)."""
    if info.dtype != "uint8" or card.raw_range is None:
        return ()
    return (
        OptionText(
            "{name} holds 8-bit values (at most 255), but {scaling} card maps raw {low:g}..{high:g} to the model's "
            "range, as for reflectance x 10,000: the tiles reach the model nearly black. Set {scaling} to auto or "
            "none for 8-bit colour.",
            name=info.name,
            low=max(card.raw_range[0], 0.0),
            high=card.raw_range[1],
        ),
    )


def _plan_scaling(info, card: ModelCard, chosen, note, scaling, offset, values, product="auto") -> Radiometry:
    """The scaling of ``chosen`` from the sample ``values`` (C, N) of those bands."""
    if card.band_raw_ranges and scaling in ("auto", "card"):
        return _trained_ranges(card, chosen, note, scaling)
    eight_bit = eight_bit_look(info.dtype, values) if scaling == "auto" else ""
    if eight_bit:
        return _as_is(card, chosen, note, scaling, eight_bit)
    gain, units = reflectance_units(info.dtype, values)
    mode = scaling
    if scaling == "auto":
        mode = "card" if gain is not None and card.raw_range is not None else "percentile"
    if mode == "card":
        removed, why, warnings = _offset(info, offset, values * (gain or 1.0))
        warnings += _dim_warning(info, values) if scaling == "auto" else _eight_bit_card(info, card)
        reason = units if scaling == "auto" else "Scaling card as chosen"
        if removed:
            reason += f", offset {removed:g} removed ({why})"
        level = ""
        # The level changes the mapping only for a model with curves for it; a choice is checked anyway.
        if card.product_mappings or product != "auto":
            level, level_why, level_warnings = decide_product(info, card, product, values * (gain or 1.0) - removed)
            reason += f"; Sentinel-2 {level.upper()} ({level_why})" if level else ""
            warnings += level_warnings
        plan = reflectance_plan(card, level, chosen, note, gain or 1.0, removed, reason, warnings)
        return dataclasses.replace(plan, warnings=warnings + _clipped_warning(plan, info.name, values))
    low, high = percentile_ranges(values, common=mode == "percentile")
    if scaling != "auto":
        return Radiometry(card, chosen, note, mode, low, high, reason=f"Scaling {mode} as chosen")
    if gain is None:
        found = f"values {values.min():.6g}..{np.percentile(values, TOP_PERCENTILE):.6g}"
        if _too_narrow(info.dtype):  # says why values that fit 0..10,000 are not reflectance
            found = f"{info.dtype} {found}; {info.dtype} cannot hold reflectance x 10,000"
        reason = f"unknown units ({found})"
        warning = OptionText(
            "{name} does not look like reflectance x 10,000 (0..10,000) or reflectance 0..1 ({found}): one "
            "percentile range for all bands is used, which keeps the colour balance but not the brightness of "
            "the training images; choose another {scaling} if you know better.",
            name=info.name,
            found=found,
        )
    else:
        reason = "reflectance-like, but the model card has no raw_range"
        warning = f"The model card has no raw_range, so {info.name} gets one percentile range for all bands."
    return Radiometry(card, chosen, note, "percentile", low, high, reason=reason, warnings=(warning,))


def _trained_ranges(card: ModelCard, chosen, note, scaling) -> Radiometry:
    """Each band from the range its training chips were stretched from (a model trained on a raster)."""
    low, high = (tuple(float(pair[i]) for pair in card.band_raw_ranges) for i in (0, 1))
    reason = "the model's own per-band ranges" + (" (Scaling card as chosen)" if scaling == "card" else "")
    return Radiometry(card, chosen, note, "card", low, high, reason=reason)


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


def decide_product(info, card: ModelCard, product: str, reflectance: np.ndarray) -> tuple[str, str, tuple[str, ...]]:
    """The Sentinel-2 product level of reflectance data, why, and warnings when the values disagree.

    ``reflectance`` (C, N) is the sample in the card's band order, x 10,000 with the offset
    removed. A level given by the user wins; auto reads the metadata, the file name and the band
    descriptions, else the darkest blue values (L1C's haze keeps them high). Returns ("", "", ())
    when nothing tells (no blue band and no tag).
    """
    dark = _dark_blue(card, reflectance)
    if product != "auto":
        return product, "as chosen", _contradiction(info, product, dark)
    tagged = product_from_metadata(info)
    if tagged:
        return tagged[0], tagged[1], _contradiction(info, tagged[0], dark)
    if dark is None:
        return "", "", ()
    level = "l2a" if dark < L2A_BLUE_DARK else "l1c"
    compare = "<" if level == "l2a" else ">="
    return level, f"from its values: darkest blue {dark:.0f} {compare} {L2A_BLUE_DARK:g}", ()


def product_from_metadata(info) -> tuple[str, str] | None:
    """The product level named by the raster's metadata, file name or band descriptions, and where.

    L2A wins over L1C wherever each is named: L2A products keep some of their L1C's tags.
    """
    places = [
        (f"{key.split(':')[-1]} {value} in the metadata", f"{key} {value}") for key, value in info.metadata.items()
    ]
    name = (info.path or info.name).replace("\\", "/").rsplit("/", 1)[-1]
    places += [(f"the file name {name}", name)]
    places += [(f"band description '{text}'", text) for text in info.band_descriptions if text]
    for level in ("l2a", "l1c"):
        for where, text in places:
            words = {word.lower() for word in re.split(r"[^0-9A-Za-z]+", text) if word}
            joined = re.sub(r"[^0-9a-z]+", "", text.lower())
            if words & _PRODUCT_WORDS[level] or any(product in joined for product in _PRODUCT_NAMES[level]):
                return level, where
    return None


def _dark_blue(card: ModelCard, reflectance: np.ndarray) -> float | None:
    roles = [band_role(band) for band in card.bands]
    if "blue" not in roles or not reflectance.size:
        return None
    return float(np.percentile(reflectance[roles.index("blue")], DARK_PERCENTILE))


def _contradiction(info, level: str, dark: float | None) -> tuple[str, ...]:
    """A warning when the darkest blue values contradict ``level``."""
    if dark is None:
        return ()
    if level == "l2a" and dark >= L1C_BLUE_DARK:
        looks, other = "L1C (top of atmosphere, with haze)", "l1c"
    elif level == "l1c" and dark < L2A_BLUE_DARK:
        looks, other = "L2A (surface reflectance, without haze)", "l2a"
    else:
        return ()
    return (
        OptionText(
            "{name} is taken as {level}, but its darkest blue values ({dark}) look like {looks}; if the data are "
            "{other_upper}, set {product} to {other}.",
            name=info.name,
            level=level.upper(),
            dark=f"{dark:.0f}",
            looks=looks,
            other_upper=other.upper(),
            other=other,
        ),
    )


def _frozen(curves):
    return tuple((tuple(raw), tuple(value)) for raw, value in curves) if curves else None


def reflectance_units(dtype: str, values: np.ndarray) -> tuple[float | None, str]:
    """The gain that makes ``values`` reflectance x 10,000 and a phrase saying so; (None, "") when they are not.

    Reflectance-like: every valid value at least 0 and (but for a few saturated pixels) at most
    1.5 x 10,000; floats up to 1.5 are reflectance in 0..1. An integer type that cannot reach
    10,000 (int8, at most 127) never holds reflectance x 10,000, whatever its values.
    """
    if values.size == 0 or _too_narrow(dtype):
        return None, ""
    low, top = float(values.min()), float(np.percentile(values, TOP_PERCENTILE))
    if low < 0:
        return None, ""
    if np.issubdtype(np.dtype(dtype), np.floating) and top <= REFLECTANCE_HEADROOM:
        return REFLECTANCE_SCALE, "reflectance 0..1 detected (x 10,000 first)"
    if top <= REFLECTANCE_HEADROOM * REFLECTANCE_SCALE:
        return 1.0, "reflectance x 10,000 detected"
    return None, ""


def _too_narrow(dtype: str) -> bool:
    """Whether ``dtype`` is an integer type whose largest value is below reflectance x 10,000's 1."""
    kind = np.dtype(dtype)
    return kind.kind in "iu" and np.iinfo(kind).max < REFLECTANCE_SCALE


def offset_from_metadata(metadata: Mapping[str, str]) -> tuple[float, str] | None:
    """The Sentinel-2 offset a raster's metadata declares, and the tag that says so (None: no tag).

    ESA writes ``BOA_ADD_OFFSET`` (L2A) / ``RADIO_ADD_OFFSET`` (L1C) = -1000, meaning reflectance =
    (DN - 1000) / 10,000; some exporters write +1000 for the same thing, so the size counts.
    """
    for key, text in metadata.items():
        if _OFFSET_KEY.search(key):
            try:
                value = float(str(text).strip())
            except ValueError:
                continue
            if np.isfinite(value):
                return abs(value), f"{key.split(':')[-1]} {text} in the metadata"
    return None


def _offset(info, offset: float | None, reflectance: np.ndarray) -> tuple[float, str, tuple[str, ...]]:
    """The offset to remove, why, and a warning when the data seem to carry one nobody declared."""
    if offset is not None:
        return float(offset), "as given", ()
    # A raster with GDAL's band scale or offset is read as physical values already: a Sentinel-2
    # offset tag beside them describes the raw numbers, and removing it again would darken them.
    tagged = None if is_scaled(info.scales, info.offsets) else offset_from_metadata(info.metadata)
    if tagged is not None:
        return tagged[0], tagged[1], ()
    lows = _per_band(reflectance, np.min)
    if lows.size and (lows >= S2_OFFSET).all():
        warning = OptionText(
            "Every band of {name} starts at {s2} or more (smallest values {lows}) and no metadata tag says why: "
            "the data probably carry the +{s2} offset of Sentinel-2 processing baseline 04.00 and later; if so, "
            "set {offset} to {s2}.",
            name=info.name,
            s2=f"{S2_OFFSET:g}",
            lows=", ".join(f"{v:g}" for v in lows),
        )
        return 0.0, "", (warning,)
    return 0.0, "", ()


def _check_scaling(card: ModelCard, scaling: str) -> None:
    check_scaling(scaling)
    if scaling == "card" and card.raw_range is None:
        raise OptionError(
            "scaling", "The model card has no raw_range, so {scaling} 'card' is not possible; choose 'percentile'."
        )


def choose_bands(source: RasterSource, card: ModelCard, bands: list[int] | None) -> tuple[list[int], str]:
    """The raster bands feeding the model's channels and a sentence saying how they were chosen."""
    chosen, note, _ = _choose(source, card, bands)
    return chosen, note


def _choose(source: RasterSource, card: ModelCard, bands: list[int] | None) -> tuple[list[int], str, bool]:
    """``choose_bands`` plus whether the bands were guessed (no mapping given, no description matched)."""
    info = source.info
    need = len(card.bands)
    wanted = ", ".join(card.bands)
    if bands is not None:
        if len(bands) != need:
            raise OptionError(
                "bands",
                "The band mapping ({bands}) lists {given} bands but the model needs {need} ({wanted}).",
                given=len(bands),
                need=need,
                wanted=wanted,
            )
        for band in bands:
            if not 1 <= band <= info.band_count:
                raise InputError(
                    f"Band {band} is out of range: {info.name} has {info.band_count} band(s), numbered from 1."
                )
        _check_no_palette(info, bands)
        return list(bands), f"bands {_join(bands)} as given", False
    _check_no_palette(info, _usable(info) if info.band_count == 1 else [])
    named = _named_bands(info)
    matched = [_match(name, named) for name in card.bands]
    if all(m is not None for m in matched):
        return matched, f"bands {_join(matched)} matched by description to {wanted}", False
    return _guess(info, card, matched)


def _guess(info, card: ModelCard, matched: list[int | None]) -> tuple[list[int], str, bool]:
    """Channels no band names take the raster's unnamed bands in order; an error when too few are left."""
    wanted = ", ".join(card.bands)
    leftover = [b for b in _usable(info) if b not in matched and not _role(info, b)]
    missing = [name for name, band in zip(card.bands, matched) if band is None]
    if len(leftover) < len(missing):
        raise _missing_bands(info, card, matched, missing) if any(matched) else _too_few_bands(info, card)
    fill = iter(leftover)
    chosen = [band if band is not None else next(fill) for band in matched]
    guessed = [b for b, m in zip(chosen, matched) if m is None]
    note = OptionText(
        "bands {chosen} assumed to hold {wanted} (no band descriptions matched, nor colour interpretation or "
        "wavelength{which}; set {bands} to choose)",
        chosen=_join(chosen),
        wanted=wanted,
        which="" if guessed == chosen else f", for band {_join(guessed)}",
    )
    return chosen, note, True


def _too_few_bands(info, card: ModelCard) -> OptionError:
    """The error for a raster with fewer bands than the model's channels, none of them named."""
    usable = _usable(info)
    visible = {"red", "green", "blue"}
    grey = len(usable) == 1 and all(band_role(name) in visible for name in card.bands)
    fix = (
        "a grey raster's one band may feed every channel: give a mapping in {bands}, e.g. "
        + _join(usable * len(card.bands))
        if grey
        else "use a raster with the model's bands, or a model made for this raster's"
    )
    return OptionError(
        "bands",
        "{name} has {usable} usable band(s) but the model needs {need} ({wanted}), and nothing in the raster "
        "says which band holds what; " + fix + ".",
        name=info.name,
        usable=len(usable),
        need=len(card.bands),
        wanted=", ".join(card.bands),
    )


def _missing_bands(info, card: ModelCard, matched: list[int | None], missing: list[str]) -> OptionError:
    """The error for a raster without bands for some of the model's channels: which are there, which are not."""
    found = [f"band {band} is {name}" for name, band in zip(card.bands, matched) if band is not None]
    return OptionError(
        "bands",
        "{name} has no band for {missing}, which the model needs ({wanted}): it has {count} usable band(s) "
        "({found}); use a raster that has {missing}, or a model made for the bands this raster has. If a band "
        "does hold {missing}, give the whole mapping in {bands}.",
        name=info.name,
        missing=", ".join(missing),
        wanted=", ".join(card.bands),
        count=len(_usable(info)),
        found=", ".join(found),
    )


def _check_no_palette(info, bands: list[int]) -> None:
    """InputError when one of ``bands`` holds colour-table indices (a palette raster), which no model reads as grey."""
    if any(_norm(info.band_descriptions[b - 1]) == PALETTE for b in bands if 1 <= b <= info.band_count):
        raise InputError(
            f"{info.name} is a palette raster: its values are indices into a colour table, not brightness, so no "
            f"band mapping makes them imagery. Expand it to red, green and blue bands first, e.g. "
            f"`gdal_translate -expand rgb {info.path or info.name + '.tif'} {info.name}_rgb.tif`, and classify that."
        )


def _named_bands(info) -> tuple[str, ...]:
    """Each band's description (or colour interpretation), with the channel its wavelength falls in added."""
    return tuple(
        f"{text} {_wavelength_role(info, band) or ''}".strip() for band, text in enumerate(info.band_descriptions, 1)
    )


def _role(info, band: int) -> str | None:
    """The channel (red, green, blue, nir) the raster says band ``band`` holds; None when it names none."""
    return band_role(_named_bands(info)[band - 1])


def raster_band_role(info, band: int) -> str | None:
    """The channel (red, green, blue, nir) that band ``band``'s description or wavelength names; None if none."""
    return _role(info, band)


def _wavelength_nm(info, band: int) -> float | None:
    """The band's centre wavelength in nm from its metadata (ENVI 'wavelength' and the like), or None."""
    items = {key.lower(): value for key, value in info.metadata.items() if key.startswith(f"band {band}:")}
    for key in _WAVELENGTH_KEYS:
        text = items.get(f"band {band}:{key}")
        try:
            value = float(str(text).split()[0])
        except (ValueError, IndexError):
            continue
        units = str(items.get(f"band {band}:wavelength_units", "")).lower()
        micrometres = key.endswith("_um") or units.startswith(("micro", "um", "µm")) or value < 5
        return value * 1000 if micrometres else value
    return None


def _wavelength_role(info, band: int) -> str | None:
    """The channel whose window holds the band's wavelength, when it is the band nearest that channel's centre."""
    nm = _wavelength_nm(info, band)
    if nm is None:
        return None
    for role, (low, high, centre) in _WAVELENGTHS.items():
        if low <= nm <= high:
            inside = [b for b in range(1, info.band_count + 1) if low <= (_wavelength_nm(info, b) or 0) <= high]
            nearest = min(inside, key=lambda b: abs(_wavelength_nm(info, b) - centre))
            return role if nearest == band else None
    return None


def _usable(info) -> list[int]:
    """The raster's bands that can feed a channel (alpha bands cannot)."""
    return [i + 1 for i, d in enumerate(info.band_descriptions) if _norm(d) != "alpha"]


def _hint_bands(info, chosen: list[int]) -> list[int]:
    """The guessed bands first, then the other bands whose orders the colour-balance caution compares."""
    return chosen + [b for b in _usable(info)[:HINT_MAX_BANDS] if b not in chosen]


def colour_hint(plan: Radiometry, bands: list[int], values: np.ndarray, described: bool = False) -> str:
    """A caution when the guessed (or ``described``) bands' colour balance is far from the card's ('' when close).

    ``values`` (len(bands), N) samples ``bands``, the guessed ones first. The balance is the
    chromaticity of the mean value fed to the model (each channel's share of their sum),
    compared with the card's standardisation means, the training images' means. The caution
    needs another order of ``bands`` to fit much better, but names none: colour balance is no
    evidence of which band holds which colour (scenes differ); only the raster's own
    descriptions, colour interpretation or wavelengths are.
    """
    need = len(plan.bands)
    per_band = plan.scaling == "percentile-per-band" or plan.card.band_raw_ranges
    if per_band or need < 2 or len(bands) < need or values.shape[1] == 0:
        return ""
    # 'none', 'card' and 'percentile' map every band alike; a product's curves belong to channels,
    # not bands, so the balance is judged on the linear mapping.
    n = len(bands)
    common = dataclasses.replace(plan, bands=list(bands), low=(plan.low[0],) * n, high=(plan.high[0],) * n, curves=None)
    means = common.to_values(values).mean(axis=1) / plan.card.value_range[1]
    target = _chromaticity(np.asarray(plan.card.standardization_mean, dtype=np.float64))
    if target is None:
        return ""

    def distance(order: tuple[int, ...]) -> float:
        shares = _chromaticity(means[list(order)])
        return float(np.abs(shares - target).max()) if shares is not None else float("inf")

    guess = distance(tuple(range(need)))
    best = min(itertools.permutations(range(len(bands)), need), key=distance)
    if guess <= COLOUR_FAR or distance(best) >= guess * COLOUR_BETTER:
        return ""
    if described:
        return OptionText(
            "Bands {chosen} are described as {names}, but their colour balance is unlike the training images' "
            "(means {shown} of the range, trained {trained}) and another order of the raster's bands fits much "
            "better: the band descriptions may be wrong (bands reordered without their labels). Check them, and "
            "set {bands} to the bands that hold {names}.",
            chosen=_join(plan.bands),
            names=", ".join(plan.card.bands),
            shown=", ".join(f"{m:.2f}" for m in means[:need]),
            trained=", ".join(f"{m:.2f}" for m in plan.card.standardization_mean),
        )
    return OptionText(
        "Bands {guessed} were guessed to hold {names}, and their colour balance is unlike the training images' "
        "(means {shown} of the range, trained {trained}); if they do not hold {names} in this order, set {bands} "
        "to the bands that do (see the product's documentation).",
        guessed=_join(plan.bands),
        names=", ".join(plan.card.bands),
        shown=", ".join(f"{m:.2f}" for m in means[:need]),
        trained=", ".join(f"{m:.2f}" for m in plan.card.standardization_mean),
    )


def _chromaticity(means: np.ndarray) -> np.ndarray | None:
    total = float(means.sum())
    return means / total if total > 0 else None


def sample_values(source: RasterSource, bands: list[int], within: Bounds | None = None) -> np.ndarray:
    """Valid, finite values of ``bands`` (len(bands), N) sampled across the whole raster at full resolution.

    When none is found and ``within`` (bounds in the raster's CRS) is given, they are sampled
    there: the whole raster's windows can all miss the data of a sparse mosaic that the area holds.
    """
    samples = _valid_samples(source, bands, source.info.bounds)
    if not samples and within is not None:
        samples = _valid_samples(source, bands, within)
    if not samples:
        where = "" if within is None else " inside the area asked for"
        raise InputError(
            f"{source.info.name} has no valid pixels in bands {_join(bands)}{where} (all nodata, NaN or masked); "
            "nothing to classify."
        )
    return np.concatenate(samples, axis=1)


def _valid_samples(source: RasterSource, bands: list[int], extent: Bounds) -> list[np.ndarray]:
    """The valid, finite values of each sampled block of ``extent``; blocks without any left out."""
    # Non-finite values are nodata whatever the source says: one NaN would make every statistic NaN.
    samples = [_valid_values(block) for block in _sample_blocks(source, bands, extent)]
    return [s for s in samples if s.shape[1]]


def _per_band(values: np.ndarray, reduce) -> np.ndarray:
    """``reduce(values, axis=1)`` (min, max), band by band: ten times faster on the column-major sample."""
    return np.array([reduce(band) for band in values], dtype=values.dtype)


def _valid_values(block) -> np.ndarray:
    """The block's values (bands, N) at its valid, finite pixels, as float64."""
    keep = block.valid & finite_pixels(block.data)
    if keep.all():
        # What the boolean index below gives, without its cost: the same values in the same
        # column-major layout, so that the statistics of the sample add up in the same order.
        return block.data.reshape(len(block.data), -1).astype(np.float64, order="F")
    return block.data[:, keep].astype(np.float64)


def percentile_ranges(values: np.ndarray, common: bool) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The 2nd and 98th percentiles per band of ``values`` (C, N), or of all bands together when ``common``."""
    if common:
        low = np.full(values.shape[0], np.percentile(values, PERCENTILES[0]))
        high = np.full(values.shape[0], np.percentile(values, PERCENTILES[1]))
    else:
        low = np.percentile(values, PERCENTILES[0], axis=1)
        high = np.percentile(values, PERCENTILES[1], axis=1)
    return tuple(float(v) for v in low), tuple(float(v) for v in _widen(low, high))


def _widen(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``high``, raised where needed so that ``high - low`` is a positive, finite span.

    A constant band still needs a valid mapping; a step of 1 vanishes in rounding for large
    values (1e30 + 1 == 1e30), so the step grows with the magnitude.
    """
    step = np.maximum(1.0, np.abs(low) * 1e-6)
    return np.where(high - low > 0, high, low + step)


def _sample_blocks(source: RasterSource, bands: list[int], extent: Bounds):
    """Blocks of ``bands`` spread over ``extent`` (the raster's CRS), whole pixels at full resolution."""
    info = source.info
    xmin, ymax = info.bounds[0], info.bounds[3]
    px, py = info.pixel_size
    col0 = max(0, math.floor((extent[0] - xmin) / px))
    row0 = max(0, math.floor((ymax - extent[3]) / py))
    width = min(info.width, math.ceil((extent[2] - xmin) / px)) - col0
    height = min(info.height, math.ceil((ymax - extent[1]) / py)) - row0
    if width <= 0 or height <= 0:
        return
    if width * height <= SAMPLE_PIXELS:
        x0, y1 = xmin + col0 * px, ymax - row0 * py
        yield source.read((x0, y1 - height * py, x0 + width * px, y1), info.crs_wkt, width, height, bands)
        return
    w, h = min(SAMPLE_WINDOW_PX, width), min(SAMPLE_WINDOW_PX, height)
    for i in range(SAMPLE_WINDOWS):
        for j in range(SAMPLE_WINDOWS):
            # Window origins on whole pixels, spread evenly; reads stay at full resolution.
            col = col0 + round((width - w) * (j + 0.5) / SAMPLE_WINDOWS)
            row = row0 + round((height - h) * (i + 0.5) / SAMPLE_WINDOWS)
            x0, y1 = xmin + col * px, ymax - row * py
            yield source.read((x0, y1 - h * py, x0 + w * px, y1), info.crs_wkt, w, h, bands)


def _norm(text: str) -> str:
    return re.sub(r"[\s_\-]+", "", text or "").lower()


def _match(card_band: str, descriptions: tuple[str, ...]) -> int | None:
    """The first raster band whose description names ``card_band`` (1-based), or None.

    Names match by any word and its aliases, so a card's "B04 red" finds a band described
    "B4", "Red" or "B04 (red)".
    """
    wanted = _aliases(card_band)
    for index, description in enumerate(descriptions, start=1):
        if _words(description) & wanted:
            return index
    return None


def _words(text: str) -> set[str]:
    words = {w for w in re.split(r"[\s_\-()/,:;]+", (text or "").lower()) if w}
    return words | {_norm(text)} if text else words


def band_role(name: str) -> str | None:
    """'red', 'green', 'blue' or 'nir' for a band named e.g. 'B04 red', 'B4' or 'Red'; None otherwise."""
    words = _words(name)
    for role, group in zip(("red", "green", "blue", "nir"), _ALIASES):
        if group & words:
            return role
    return None


def _aliases(name: str) -> set[str]:
    words = _words(name)
    groups = [group for group in _ALIASES if group & words]
    return set().union(*groups) if groups else words


def _join(bands: list[int]) -> str:
    return ",".join(str(b) for b in bands)


def adapted_data_warning(name: str, training: Mapping, info: RasterInfo, plan: Radiometry) -> str:
    """A warning when an adapted model runs on data of another type or scaling than it was fitted on ('' if alike).

    Its classifier reads band statistics in the units of its own raster (reflectance, or raw
    values for 8-bit data): an 8-bit copy of a uint16 scene gives other numbers, and other classes,
    without any error. Cards written before ``raster_dtype`` was recorded are not compared.
    """
    dtype, method = training.get("raster_dtype"), training.get("scaling_method")
    if not dtype or (dtype == info.dtype and method in (None, plan.scaling)):
        return ""
    return OptionText(
        "{name} was adapted on {raster} ({dtype} values, scaling '{method}'), but {this} holds {now} values (scaling "
        "'{now_method}'): the band statistics its classifier reads differ in scale, so its classes may be wrong. "
        "Run it on data of the same product and type as it was adapted on, or adapt a model on this raster.",
        name=name,
        raster=training.get("raster", "its raster"),
        dtype=dtype,
        method=method or "unknown",
        this=info.name,
        now=info.dtype,
        now_method=plan.scaling,
    )
