"""A caution when guessed (or described) bands' colour balance is far from the training images'.

Colour balance is no evidence of which band holds which colour, so the caution names no other
order: only the raster's descriptions, colour interpretation or wavelengths may.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from ..options import OptionText
from .bands import join_bands, usable_bands
from .plan import Radiometry

# Colour balance caution for guessed bands: a chromaticity farther than this from the card's
# means is suspicious when another order of the first bands would at least halve the distance.
# That order is not proposed: on real imagery the balance named wrong ones (3,1,2 for NAIP's
# red, green, blue), so only evidence about the bands (descriptions, colours, wavelengths) may.
COLOUR_FAR = 0.04
COLOUR_BETTER = 0.5
HINT_MAX_BANDS = 6  # the other orders are drawn from the first usable bands


def hint_bands(info, chosen: list[int]) -> list[int]:
    """The guessed bands first, then the other bands whose orders the colour-balance caution compares."""
    return chosen + [b for b in usable_bands(info)[:HINT_MAX_BANDS] if b not in chosen]


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
    means = row_means(common.to_values(values)) / plan.card.value_range[1]
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
            chosen=join_bands(plan.bands),
            names=", ".join(plan.card.bands),
            shown=", ".join(f"{m:.2f}" for m in means[:need]),
            trained=", ".join(f"{m:.2f}" for m in plan.card.standardization_mean),
        )
    return OptionText(
        "Bands {guessed} were guessed to hold {names}, and their colour balance is unlike the training images' "
        "(means {shown} of the range, trained {trained}); if they do not hold {names} in this order, set {bands} "
        "to the bands that do (see the product's documentation).",
        guessed=join_bands(plan.bands),
        names=", ".join(plan.card.bands),
        shown=", ".join(f"{m:.2f}" for m in means[:need]),
        trained=", ".join(f"{m:.2f}" for m in plan.card.standardization_mean),
    )


def row_means(values: np.ndarray) -> np.ndarray:
    """``values.mean(axis=1)`` of float32 rows as numpy gives it for a column-major array, bit for bit.

    numpy adds a column-major array's rows one column at a time: each row's values in order,
    in float32, three or four values per step (slow). The sample used to be column-major, and
    these means and the caution they decide are kept to the bit: a running sum along each row
    adds in the same order, over long steps, whatever the layout; it is divided as mean divides.
    """
    totals = np.add.accumulate(values, axis=1)[:, -1]
    return np.true_divide(totals, np.intp(values.shape[1]), out=totals, casting="unsafe")


def _chromaticity(means: np.ndarray) -> np.ndarray | None:
    total = float(means.sum())
    return means / total if total > 0 else None
