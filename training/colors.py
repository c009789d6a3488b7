"""Class colours for the model card: a land-cover palette for known names, a fallback for the rest."""

from __future__ import annotations

import colorsys
from collections.abc import Iterator

EUROSAT_CLASSES = (
    "AnnualCrop",
    "Forest",
    "HerbaceousVegetation",
    "Highway",
    "Industrial",
    "Pasture",
    "PermanentCrop",
    "Residential",
    "River",
    "SeaLake",
)

# EuroSAT's ten classes in the colours a land-cover map reader expects. Other data sets reuse
# these when a class has the same name (AID's Forest, Industrial and River, for example).
LAND_COVER = {
    "annualcrop": "#f2d64b",  # yellow
    "forest": "#1b5e20",  # dark green
    "herbaceousvegetation": "#9ccc65",  # light green
    "highway": "#9e9e9e",  # grey
    "industrial": "#7b3fa0",  # purple
    "pasture": "#c5e1a5",  # pale green
    "permanentcrop": "#f39c12",  # orange
    "residential": "#d62728",  # red
    "river": "#1f78d1",  # blue
    "sealake": "#0b2a6f",  # navy
}

# Other data sets' names (AID, UC Merced, NWPU, RSOD, users' own) borrow a land-cover colour
# when they contain one of these words; the first match wins.
KEYWORDS = (
    ("sea", "sealake"),
    ("lake", "sealake"),
    ("river", "river"),
    ("water", "river"),
    ("pond", "river"),
    ("forest", "forest"),
    ("wood", "forest"),
    ("tree", "forest"),
    ("residential", "residential"),
    ("urban", "residential"),
    ("building", "residential"),
    ("industrial", "industrial"),
    ("highway", "highway"),
    ("road", "highway"),
    ("crop", "annualcrop"),
    ("farm", "annualcrop"),
    ("orchard", "permanentcrop"),
    ("vineyard", "permanentcrop"),
    ("pasture", "pasture"),
    ("meadow", "pasture"),
    ("grass", "herbaceousvegetation"),
    ("vegetation", "herbaceousvegetation"),
)

# Distinct, readable colours for any other class, handed out in order (Glasbey-like).
FALLBACK = (
    "#e6194b",
    "#3cb44b",
    "#ffe119",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#46f0f0",
    "#f032e6",
    "#bcf60c",
    "#fabebe",
    "#008080",
    "#e6beff",
    "#9a6324",
    "#fffac8",
    "#800000",
    "#aaffc3",
    "#808000",
    "#ffd8b1",
    "#000075",
    "#808080",
    "#469990",
    "#dcbeff",
    "#a9a9a9",
    "#ff7f0e",
    "#2ca02c",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#393b79",
)


def class_colors(class_names: list[str]) -> list[str]:
    """One '#rrggbb' colour per class: land-cover colours by name or word, then unused fallback colours."""
    colors = [_land_cover(name) for name in class_names]
    # A name that maps to an already-used land-cover colour must not share it.
    seen: set[str] = set()
    for index, color in enumerate(colors):
        if color in seen:
            colors[index] = None
        elif color:
            seen.add(color)
    spare = _unused(_fallback_colors(), seen)
    return [color or next(spare) for color in colors]


def _unused(candidates: Iterator[str], used: set[str]) -> Iterator[str]:
    for color in candidates:
        if color not in used:
            used.add(color)
            yield color


def _land_cover(name: str) -> str | None:
    key = "".join(character for character in name.lower() if character.isalnum())
    if key in LAND_COVER:
        return LAND_COVER[key]
    return next((LAND_COVER[cover] for word, cover in KEYWORDS if word in key), None)


def _fallback_colors() -> Iterator[str]:
    yield from FALLBACK
    # Beyond the fixed list (NWPU has 45 classes): evenly spaced hues, never repeating.
    index = 0
    while True:
        index += 1
        hue = (index * 0.618033988749895) % 1.0
        yield _hsv_hex(hue, 0.65, 0.85 if index % 2 else 0.6)


def _hsv_hex(hue: float, saturation: float, value: float) -> str:
    red, green, blue = colorsys.hsv_to_rgb(hue, saturation, value)
    return f"#{round(red * 255):02x}{round(green * 255):02x}{round(blue * 255):02x}"
