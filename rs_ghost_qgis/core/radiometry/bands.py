"""Which raster band feeds which model channel.

Band mapping: explicit (``bands=[3, 2, 1]``), else matched from band descriptions (B4/B04/Red
for a card band 'red', and so on, case-insensitive), else the first bands of the raster in
order (said so in the outputs, with a hint when another order matches the training images'
colour balance far better: ``colour.colour_hint``). A band's wavelength in its metadata (ENVI
and other hyperspectral headers) names its channel too.
"""

from __future__ import annotations

import re

from ..errors import InputError
from ..model.card import ModelCard
from ..options import OptionError, OptionText
from ..sources.source import PALETTE, RasterSource

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


def choose_bands(source: RasterSource, card: ModelCard, bands: list[int] | None) -> tuple[list[int], str]:
    """The raster bands feeding the model's channels and a sentence saying how they were chosen."""
    chosen, note, _ = band_choice(source, card, bands)
    return chosen, note


def band_choice(source: RasterSource, card: ModelCard, bands: list[int] | None) -> tuple[list[int], str, bool]:
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
        return list(bands), f"bands {join_bands(bands)} as given", False
    _check_no_palette(info, usable_bands(info) if info.band_count == 1 else [])
    named = _named_bands(info)
    matched = [_match(name, named) for name in card.bands]
    if all(m is not None for m in matched):
        return matched, f"bands {join_bands(matched)} matched by description to {wanted}", False
    return _guess(info, card, matched)


def _guess(info, card: ModelCard, matched: list[int | None]) -> tuple[list[int], str, bool]:
    """Channels no band names take the raster's unnamed bands in order; an error when too few are left."""
    wanted = ", ".join(card.bands)
    leftover = [b for b in usable_bands(info) if b not in matched and not _role(info, b)]
    missing = [name for name, band in zip(card.bands, matched) if band is None]
    if len(leftover) < len(missing):
        raise _missing_bands(info, card, matched, missing) if any(matched) else _too_few_bands(info, card)
    fill = iter(leftover)
    chosen = [band if band is not None else next(fill) for band in matched]
    guessed = [b for b, m in zip(chosen, matched) if m is None]
    note = OptionText(
        "bands {chosen} assumed to hold {wanted} (no band descriptions matched, nor colour interpretation or "
        "wavelength{which}; set {bands} to choose)",
        chosen=join_bands(chosen),
        wanted=wanted,
        which="" if guessed == chosen else f", for band {join_bands(guessed)}",
    )
    return chosen, note, True


def _too_few_bands(info, card: ModelCard) -> OptionError:
    """The error for a raster with fewer bands than the model's channels, none of them named."""
    usable = usable_bands(info)
    visible = {"red", "green", "blue"}
    grey = len(usable) == 1 and all(band_role(name) in visible for name in card.bands)
    fix = (
        "a grey raster's one band may feed every channel: give a mapping in {bands}, e.g. "
        + join_bands(usable * len(card.bands))
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
        count=len(usable_bands(info)),
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


def usable_bands(info) -> list[int]:
    """The raster's bands that can feed a channel (alpha bands cannot)."""
    return [i + 1 for i, d in enumerate(info.band_descriptions) if _norm(d) != "alpha"]


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


def join_bands(bands: list[int]) -> str:
    """'3,2,1' for bands [3, 2, 1]: how messages list bands, as the band option takes them."""
    return ",".join(str(b) for b in bands)
