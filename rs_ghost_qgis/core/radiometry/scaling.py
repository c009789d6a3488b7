"""How a raster's values are brought to the training domain: the scaling of one run.

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

The bands come from ``bands``, the sample from ``sample``, the product level and the offset
from ``product``; the plan is a ``plan.Radiometry``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import numpy as np

from ..errors import InputError
from ..model.card import ModelCard
from ..options import OptionError, OptionText, check_product, check_scaling
from ..sources.source import Bounds, RasterInfo, RasterSource
from .bands import band_choice, join_bands
from .colour import colour_hint, hint_bands
from .plan import Radiometry, reflectance_plan, share_outside
from .product import decide_offset, decide_product
from .sample import PERCENTILES, per_band, percentile_ranges, sample_values

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
    before_sampling: Callable[[Radiometry], None] | None = None,
) -> Radiometry:
    """Choose the band mapping and the scaling for ``source`` (reads a sample of the whole raster).

    ``within`` (bounds in the raster's CRS: the area asked for) is sampled instead when the
    whole raster's sample finds no valid pixel, as in a huge mosaic with data in a few places.
    ``before_sampling`` is called with the plan, without the sample's warnings, when the sample
    can only add warnings (values used as they are, bands named): a run may start on it.

    ``offset`` (raw units, e.g. 1000) is removed before the card mapping; None takes it from the
    raster's metadata (BOA_ADD_OFFSET / RADIO_ADD_OFFSET), else 0 with a warning when every band
    starts at 1000 or more. ``product`` (auto, l1c, l2a) is the Sentinel-2 processing level of
    reflectance data: auto reads the metadata, else the values (see ``decide_product``).
    """
    _check_scaling(card, scaling)
    product = check_product(product)
    chosen, note, guessed = band_choice(source, card, bands)
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
        if before_sampling is not None:
            before_sampling(_finish(info, plan, ignored))
        sampled = _described_colours(source, plan, within) if described else _zero_gaps(source, chosen, within)
        return _finish(info, plan, ignored + sampled)
    candidates = hint_bands(info, chosen) if guessed or described else chosen
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
    candidates = hint_bands(source.info, plan.bands)
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

    Such pixels are nodata to the run (``strips.read_strip``): a mosaic's gap, an export's fill.
    They are left out of the statistics too, so that a gap does not stretch the scaling.
    """
    # Band by band: one pass over each band's values, fast whatever the layout of the sample.
    zero = values[0] == 0
    for band_values in values[1 : len(bands)]:
        zero &= band_values == 0
    if not zero.any():
        return values, ()
    warning = (
        f"{zero.mean():.1%} of the sampled pixels of {info.name} are 0 in every band ({join_bands(bands)}), which is "
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
            f"{info.name} has the value 0 in every valid pixel of bands {join_bands(bands)}: it holds no image to "
            "classify (an empty or failed export, or 0 used for nodata without declaring it). Choose the right "
            "file or bands; if 0 marks nodata, declare it (gdal_edit.py -a_nodata 0 FILE, or Layer Properties "
            "> Transparency > No data value)."
        )
    lows, highs = per_band(values, np.min), per_band(values, np.max)
    if (lows != highs).any():
        return ()
    return (
        OptionText(
            "Every valid pixel of {name} has the same value in each band ({values} in bands {chosen}): the "
            "raster holds no image detail, so every tile gets the same class. Check the file and {bands}.",
            name=info.name,
            values=", ".join(f"{v:g}" for v in lows),
            chosen=join_bands(bands),
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
        # Reflectance x 10,000: the values themselves at gain 1 and no offset (x * 1.0 - 0.0 is x: no copies).
        reflectance = values * gain if gain not in (None, 1.0) else values
        removed, why, warnings = decide_offset(info, offset, reflectance)
        warnings += _dim_warning(info, values) if scaling == "auto" else _eight_bit_card(info, card)
        reason = units if scaling == "auto" else "Scaling card as chosen"
        if removed:
            reason += f", offset {removed:g} removed ({why})"
        level = ""
        # The level changes the mapping only for a model with curves for it; a choice is checked anyway.
        if card.product_mappings or product != "auto":
            without_offset = reflectance - removed if removed else reflectance
            level, level_why, level_warnings = decide_product(info, card, product, without_offset)
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


def _check_scaling(card: ModelCard, scaling: str) -> None:
    check_scaling(scaling)
    if scaling == "card" and card.raw_range is None:
        raise OptionError(
            "scaling", "The model card has no raw_range, so {scaling} 'card' is not possible; choose 'percentile'."
        )


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
