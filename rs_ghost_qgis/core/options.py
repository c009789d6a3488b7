"""The options every face offers, parsed and checked once: bands, scaling, offset, stride, area.

The command line, the dialog and Processing differ only in widgets and flags: each turns its
raw values into engine options through these functions, so one input gives one result, or
one error. A message that names an option (an error, a warning, a note) is an ``OptionText``:
each face shows it with the option spelt its own way (``--bands`` on the command line, "Bands"
in the dialog, ``BANDS`` in Processing) through ``face_message``.

Imports nothing heavy (no numpy): the Processing toolbox reads SCALINGS before it knows
whether the engine's packages are installed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InputError

FACES = ("cli", "dialog", "processing")
# How each face names an option: (command line, dialog field, Processing parameter).
NAMES = {
    "bands": ("--bands", "Bands", "BANDS"),
    "scaling": ("--scale", "Scaling", "SCALING"),
    "offset": ("--offset", "Offset", "OFFSET"),
    "product": ("--product", "Product level", "PRODUCT"),
    "stride": ("--stride", "Stride", "STRIDE"),
    "mask": ("--mask", "Mask layer", "MASK"),
    # One layer of a file of several (a GeoPackage): QGIS's FILE|layername=NAME works in every face.
    "layer": ("--layer NAME", "the layer", "FILE|layername=NAME"),
    "bbox": ("--bbox", "Current map extent", "EXTENT"),
    "area": ("--bbox or --mask", "Area 'Current map extent' or a mask layer", "EXTENT or MASK"),
    "outputs": ("--out-vector, --out-raster or --preview", "Write", "OUTPUT_VECTOR"),
    "model": ("--model", "Model", "MODEL"),
    "threads": ("--threads", "Threads", "THREADS"),
    # The dialog names its own files and Processing asks before it overwrites: both replace,
    # so their refusals come from a file appearing mid-run, where choosing another name helps.
    "overwrite": (
        "--overwrite",
        "Replace the previous run's layers",
        "overwriting (confirm it when choosing OUTPUT_VECTOR or OUTPUT_RASTER)",
    ),
    # An input is never replaced, whatever each face's way of allowing it (core/outputs.py).
    "even_overwrite": ("with --overwrite", "when replacing is allowed", "when overwriting is allowed"),
    "out_vector": ("--out-vector", "Folder", "OUTPUT_VECTOR"),
    # classify-many's (core/many/): only the command line offers them; the other two are what the
    # dialog and Processing would call them.
    "out_dir": ("--out-dir", "Output folder", "OUTPUT_FOLDER"),
    "block_cells": ("--block-cells", "Block size", "BLOCK_CELLS"),
    # Adapting a model to the user's polygons (core/adapt/adapt.py).
    "polygons": ("--polygons", "Polygon layer", "POLYGONS"),
    "class_field": ("--class-field", "Class field", "CLASS_FIELD"),
    # Evidence from near infrared and doubt (core/classify/evidence.py).
    "nir_band": ("--nir-band", "NIR band", "NIR_BAND"),
    "water_rule": ("--no-water-rule", "Water needs water pixels", "WATER_RULE"),
    "min_confidence": ("--min-confidence", "Doubtful below", "MIN_CONFIDENCE"),
}
# How values reach the model's range (radiometry.py implements them). Processing stores its
# enum by index, so new entries go at the end.
SCALINGS = ("auto", "none", "card", "percentile", "percentile-per-band")
# Sentinel-2 processing levels: L1C top-of-atmosphere (EuroSAT's), L2A surface reflectance
# (what most users download). auto reads the raster's metadata, else its values.
PRODUCTS = ("auto", "l1c", "l2a")
_BAND_SEPARATORS = re.compile(r"[,;\s]+")


@dataclass
class Area:
    """What to classify: the whole raster (default), a bounding box, or polygons (a mask).

    ``bounds`` and ``geometries`` are in ``crs_wkt``; None means the raster's CRS.
    """

    bounds: tuple[float, float, float, float] | None = None
    geometries: list | None = None
    crs_wkt: str | None = None


class OptionText(str):
    """A message naming options, which each face words its own way.

    ``template`` holds ``{bands}``, ``{stride}``, ... (keys of NAMES) where option names go, and
    ``{...}`` fields filled from ``values`` (user text, inserted as it is). As a plain ``str`` it
    names both the dialog field and the flag, e.g. "Bands (--bands)", the form the outputs'
    metadata keeps; ``in_face`` words it for one face.
    """

    def __new__(cls, template: str, **values: object) -> OptionText:
        """The text of ``template`` with ``values``, naming options by field and flag."""
        text = super().__new__(cls, _render(template, None, values))
        text.template, text.values = template, values
        return text

    def __reduce__(self):  # pickled with its template (a Dask worker's warnings reach the client)
        return _option_text, (self.template, self.values)

    def in_face(self, face: str | None) -> str:
        """The message with every option named as ``face`` (one of FACES) spells it; None: field and flag."""
        return _render(self.template, face, self.values)


def _option_text(template: str, values: dict) -> OptionText:
    return OptionText(template, **values)


def _render(template: str, face: str | None, values: dict) -> str:
    return template.format(**{key: option_name(key, face) for key in NAMES}, **values)


class OptionError(InputError):
    """A wrong option value; its message is an OptionText (see face_message)."""

    def __init__(self, option: str, template: str, **values: object) -> None:
        self.option = option  # the NAMES key the error is about
        self.text = OptionText(template, **values)
        super().__init__(self.text)

    def in_face(self, face: str | None) -> str:
        """The message with every option named as ``face`` spells it."""
        return self.text.in_face(face)

    def __reduce__(self):
        return _option_error, (self.option, self.text.template, self.text.values)


def _option_error(option: str, template: str, values: dict) -> OptionError:
    return OptionError(option, template, **values)


def option_name(option: str, face: str | None) -> str:
    """How ``face`` names ``option``; None gives the dialog field with the flag, e.g. 'Bands (--bands)'."""
    cli, dialog, processing = NAMES[option]
    if face is None:
        return f"{dialog} ({cli})"
    return dict(zip(FACES, (cli, dialog, processing)))[face]


def face_message(message: BaseException | str, face: str) -> str:
    """An error's message, a warning or a note as ``face`` words it: option names as the face spells them."""
    text = message.args[0] if isinstance(message, BaseException) and message.args else message
    return text.in_face(face) if isinstance(text, OptionText) else str(message)


def message_of(error: BaseException) -> str:
    """An error's message for a face to word later (face_message): its OptionText when it has one.

    ``str(error)`` would fix the wording to "field (flag)" before the face is known.
    """
    text = error.args[0] if len(error.args) == 1 else None
    return text if isinstance(text, OptionText) else str(error)


def parse_bands(text: str | None) -> list[int] | None:
    """'3,2,1', '3 2 1' or '3;2;1' -> [3, 2, 1]; empty, None or 'auto' -> None (automatic mapping).

    Bands are numbered from 1, as GDAL and QGIS number them; a band may repeat (1,1,1 feeds a
    grey raster to an RGB model). 0, negative numbers and anything else are refused.
    """
    text = (text or "").strip()
    if not text or text.lower() == "auto":
        return None
    parts = [part for part in _BAND_SEPARATORS.split(text) if part]
    if not all(part.isdigit() and int(part) > 0 for part in parts):
        raise OptionError(
            "bands",
            "{bands} takes band numbers from 1 up, separated by commas, spaces or semicolons, e.g. 3,2,1 "
            "(empty: automatic); got '{text}'.",
            text=text,
        )
    return [int(part) for part in parts]


def parse_offset(text: str | None) -> float | None:
    """'1000' -> 1000.0; empty, None or 'auto' -> None (the raster's metadata decides)."""
    text = (text or "").strip()
    if not text or text.lower() == "auto":
        return None
    try:
        return float(text)
    except ValueError:
        raise OptionError(
            "offset", "{offset} '{text}' is not a number: give e.g. 1000, 0, or leave it empty.", text=text
        ) from None


def check_scaling(scaling: str) -> str:
    """``scaling`` when it is one of SCALINGS, else OptionError."""
    if scaling not in SCALINGS:
        raise OptionError(
            "scaling",
            "Unknown scaling '{value}': choose one of {choices} for {scaling}.",
            value=scaling,
            choices=", ".join(SCALINGS),
        )
    return scaling


def check_product(product: str | None) -> str:
    """``product`` (case-insensitive; empty means auto) when it is one of PRODUCTS, else OptionError."""
    product = (product or "").strip().lower() or "auto"
    if product not in PRODUCTS:
        raise OptionError(
            "product",
            "Unknown product level '{value}': choose one of {choices} for {product}.",
            value=product,
            choices=", ".join(PRODUCTS),
        )
    return product


def check_threads(threads: int | None) -> int | None:
    """``threads`` for onnxruntime (None or 0: every core); negative: OptionError."""
    if threads is not None and threads < 0:
        raise OptionError("threads", "{threads} must be positive (or 0 for all cores), not {value}.", value=threads)
    return threads


def parse_stride(stride: int | None) -> int | None:
    """A stride in model pixels; None or 0 -> None (the tile size, no overlap); negative: OptionError.

    Whether it divides the model's tile size is checked against the card (``check_stride``, by the grid).
    """
    if not stride:
        return None
    if stride < 0:
        raise OptionError(
            "stride",
            "{stride} must be 0 (the tile size) or a positive number of model pixels, not {value}.",
            value=stride,
        )
    return int(stride)


def check_stride(stride: int, card) -> int:
    """Model-card pixels per cell for ``stride``; OptionError unless it divides the card's tile size.

    A stride must divide the tile size so that overlapping tiles share whole cells, and give a
    whole number of input pixels per cell.
    """
    tile, size = card.tile_size, card.input_size
    divisors = [d for d in range(1, tile + 1) if tile % d == 0 and (d * size) % tile == 0]
    if stride not in divisors:
        raise OptionError(
            "stride",
            "{stride} {value} is not possible for {tile} px tiles: it must divide the tile size so overlapping "
            "tiles share whole cells; choose one of {divisors}.",
            value=stride,
            tile=tile,
            divisors=", ".join(map(str, divisors)),
        )
    return stride * size // tile


def one_area(mask=None, bbox=None):
    """The area to classify from a face's mask and box (each an Area or None): never both.

    Neither gives the whole raster. A mask and a box together are refused on every face
    rather than one silently winning.
    """
    if mask is not None and bbox is not None:
        raise OptionError("area", "Give either {mask} or {bbox}, not both.")
    return mask or bbox or Area()


def check_area(area, info) -> None:
    """A web layer (RasterInfo.web: XYZ, WMS, WMTS) covers the world: it needs a box or mask."""
    if info.web and area.bounds is None and area.geometries is None:
        raise OptionError(
            "area",
            "'{name}' is a web layer covering the whole world; classify a part of it: choose {area}.",
            name=info.name,
        )


def check_outputs(*outputs: str | bool | None) -> None:
    """At least one output must be asked for (each a path, or whether the face writes it)."""
    if not any(outputs):
        raise OptionError("outputs", "Nothing to write: choose at least one output ({outputs}).")
