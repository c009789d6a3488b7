"""Which raster bands feed the model, and how their values are brought to the training domain.

Band mapping: explicit (``bands=[3, 2, 1]``), else matched from band descriptions (B4/B04/Red
for a card band 'red', and so on, case-insensitive), else the first bands of the raster in
order (said so in the outputs).

Scaling, chosen once for the whole run and never per tile:
- ``none``: values are used as they are (8-bit imagery, already in ``value_range``);
- ``card``: the card's ``raw_range`` is mapped linearly onto ``value_range`` and clipped
  (Sentinel-2 reflectance x 10,000: 0..3000 -> 0..255);
- ``percentile``: each band's 2nd..98th percentile, measured once on pixels sampled over the
  whole raster at full resolution, is mapped onto ``value_range`` and clipped;
- ``auto``: ``none`` for uint8, ``card`` for other integer types when the card has a
  ``raw_range``, ``percentile`` otherwise (float rasters have no common scale).
The network then sees ``(v / value_range[1] - mean) / std`` per band.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .modelcard import ModelCard
from .source import RasterSource, finite_pixels

SCALINGS = ("auto", "none", "card", "percentile")
PERCENTILES = (2.0, 98.0)
# Full-resolution sample for the percentile stretch: whole raster when it is at most this
# many pixels, else a regular 8 x 8 pattern of 128 x 128 px windows.
SAMPLE_PIXELS = 1 << 20
SAMPLE_WINDOWS = 8
SAMPLE_WINDOW_PX = 128

_ALIASES = [
    {"red", "r", "b4", "b04"},
    {"green", "g", "b3", "b03"},
    {"blue", "b", "b2", "b02"},
    {"nir", "nearinfrared", "b8", "b08"},
]


@dataclass(frozen=True)
class Radiometry:
    """The band mapping and value scaling of one run."""

    card: ModelCard
    bands: list[int]  # 1-based raster bands, one per model channel
    bands_note: str  # how the mapping was chosen, for people
    scaling: str  # "none" | "card" | "percentile"
    low: tuple[float, ...]  # raw value mapped to value_range[0], per channel
    high: tuple[float, ...]  # raw value mapped to value_range[1], per channel

    @property
    def scaling_note(self) -> str:
        """The scaling in words, with its numbers."""
        vr0, vr1 = self.card.value_range
        if self.scaling == "none":
            return f"none (values used as they are, expected in {vr0:g}..{vr1:g})"
        ranges = ", ".join(f"band {b}: {lo:g}..{hi:g}" for b, lo, hi in zip(self.bands, self.low, self.high))
        how = "card raw_range" if self.scaling == "card" else f"percentile {PERCENTILES[0]:g}-{PERCENTILES[1]:g}"
        return f"{how} -> {vr0:g}..{vr1:g} ({ranges})"

    def to_values(self, data: np.ndarray) -> np.ndarray:
        """Raw pixels (C, ...) -> float32 values in the card's ``value_range``."""
        values = data.astype(np.float32, copy=True)
        if self.scaling == "none":
            return values
        vr0, vr1 = self.card.value_range
        for c, (lo, hi) in enumerate(zip(self.low, self.high)):
            values[c] -= lo
            values[c] *= (vr1 - vr0) / (hi - lo)
            values[c] += vr0
        np.clip(values, vr0, vr1, out=values)
        return values

    def normalise(self, data: np.ndarray) -> np.ndarray:
        """Raw pixels (C, ...) -> the float32 network input ``(v / value_range[1] - mean) / std``."""
        values = self.to_values(data)
        top = self.card.value_range[1]
        for c, (mean, std) in enumerate(zip(self.card.standardization_mean, self.card.standardization_std)):
            values[c] *= 1.0 / (top * std)
            values[c] -= mean / std
        return values


def plan_radiometry(
    source: RasterSource, card: ModelCard, bands: list[int] | None = None, scaling: str = "auto"
) -> Radiometry:
    """Choose the band mapping and the scaling for ``source`` (reads a sample for percentiles)."""
    chosen, note = choose_bands(source, card, bands)
    mode = _scaling_mode(source.info.dtype, card, scaling)
    if mode == "percentile":
        low, high = percentile_ranges(source, chosen)
    else:
        lo, hi = card.raw_range if mode == "card" else card.value_range
        low, high = (lo,) * len(chosen), (hi,) * len(chosen)
    return Radiometry(card, chosen, note, mode, tuple(low), tuple(high))


def choose_bands(source: RasterSource, card: ModelCard, bands: list[int] | None) -> tuple[list[int], str]:
    """The raster bands feeding the model's channels and a sentence saying how they were chosen."""
    info = source.info
    need = len(card.bands)
    wanted = ", ".join(card.bands)
    if bands is not None:
        if len(bands) != need:
            raise InputError(
                f"The band mapping (Bands, --bands) lists {len(bands)} bands but the model needs {need} ({wanted})."
            )
        for band in bands:
            if not 1 <= band <= info.band_count:
                raise InputError(
                    f"Band {band} is out of range: {info.name} has {info.band_count} band(s), numbered from 1."
                )
        return list(bands), f"bands {_join(bands)} as given"
    matched = [_match(name, info.band_descriptions) for name in card.bands]
    if all(m is not None for m in matched):
        return matched, f"bands {_join(matched)} matched by description to {wanted}"
    usable = [i + 1 for i, d in enumerate(info.band_descriptions) if _norm(d) != "alpha"]
    if len(usable) < need:
        raise InputError(
            f"{info.name} has {len(usable)} usable band(s) but the model needs {need} ({wanted}), and no band "
            f"descriptions say which is which; give a mapping in Bands (--bands), e.g. {_join([1] * need)}."
        )
    chosen = usable[:need]
    return (
        chosen,
        f"bands {_join(chosen)} assumed to hold {wanted} (no band descriptions matched; set Bands, --bands, to choose)",
    )


def percentile_ranges(source: RasterSource, bands: list[int]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Each band's 2nd and 98th percentile over valid pixels sampled across the whole raster."""
    # Non-finite values are nodata whatever the source says: one NaN would make every percentile NaN.
    samples = [
        block.data[:, block.valid & finite_pixels(block.data)].astype(np.float64)
        for block in _sample_blocks(source, bands)
    ]
    samples = [s for s in samples if s.shape[1]]
    if not samples:
        raise InputError(
            f"{source.info.name} has no valid pixels in bands {_join(bands)} (all nodata, NaN or masked); "
            "nothing to classify."
        )
    values = np.concatenate(samples, axis=1)
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


def _sample_blocks(source: RasterSource, bands: list[int]):
    info = source.info
    xmin, ymin, xmax, ymax = info.bounds
    if info.width * info.height <= SAMPLE_PIXELS:
        yield source.read(info.bounds, info.crs_wkt, info.width, info.height, bands)
        return
    px, py = info.pixel_size
    w, h = min(SAMPLE_WINDOW_PX, info.width), min(SAMPLE_WINDOW_PX, info.height)
    for i in range(SAMPLE_WINDOWS):
        for j in range(SAMPLE_WINDOWS):
            # Window origins on whole pixels, spread evenly; reads stay at full resolution.
            col = round((info.width - w) * (j + 0.5) / SAMPLE_WINDOWS)
            row = round((info.height - h) * (i + 0.5) / SAMPLE_WINDOWS)
            x0, y1 = xmin + col * px, ymax - row * py
            yield source.read((x0, y1 - h * py, x0 + w * px, y1), info.crs_wkt, w, h, bands)


def _scaling_mode(dtype: str, card: ModelCard, scaling: str) -> str:
    if scaling not in SCALINGS:
        raise InputError(f"Unknown scaling {scaling!r}; choose one of {', '.join(SCALINGS)}.")
    if scaling == "card" and card.raw_range is None:
        raise InputError(
            "The model card has no raw_range, so Scaling (--scale) 'card' is not possible; choose 'percentile'."
        )
    if scaling != "auto":
        return scaling
    if dtype == "uint8":
        return "none"
    if np.issubdtype(np.dtype(dtype), np.integer) and card.raw_range is not None:
        return "card"
    return "percentile"


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


def _aliases(name: str) -> set[str]:
    words = _words(name)
    groups = [group for group in _ALIASES if group & words]
    return set().union(*groups) if groups else words


def _join(bands: list[int]) -> str:
    return ",".join(str(b) for b in bands)
