"""Sentinel-2 reflectance: its product level (L1C or L2A) and its offset.

The level comes from the option, else the metadata, the file name or the band descriptions,
else the darkest blue values; the offset from the option, else the metadata (BOA_ADD_OFFSET /
RADIO_ADD_OFFSET), with a warning when every band starts at 1000 or more and nothing says why.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

from ..model.card import ModelCard
from ..options import OptionText
from ..sources.source import is_scaled
from .bands import band_role
from .sample import per_band

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


def decide_offset(info, offset: float | None, reflectance: np.ndarray) -> tuple[float, str, tuple[str, ...]]:
    """The offset to remove, why, and a warning when the data seem to carry one nobody declared."""
    if offset is not None:
        return float(offset), "as given", ()
    # A raster with GDAL's band scale or offset is read as physical values already: a Sentinel-2
    # offset tag beside them describes the raw numbers, and removing it again would darken them.
    tagged = None if is_scaled(info.scales, info.offsets) else offset_from_metadata(info.metadata)
    if tagged is not None:
        return tagged[0], tagged[1], ()
    lows = per_band(reflectance, np.min)
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
