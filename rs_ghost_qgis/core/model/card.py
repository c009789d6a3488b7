"""The model card: the one contract between training (torch) and the plugin (onnxruntime).

It travels inside the ONNX file as ``metadata_props``: one key per field, scalars as plain
strings and lists or objects as JSON. This module reads, validates, writes and renders it;
it imports neither torch, onnx, onnxruntime nor QGIS, so both sides can use it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import ModelError
from .head import check_head

FORMAT_VERSION = 1
MODEL_TYPE = "scene_classifier"

# Keys a card must carry, and the Python type each one parses to.
REQUIRED_KEYS: dict[str, type] = {
    "format_version": int,
    "model_type": str,
    "class_names": list,
    "class_colors": list,
    "input_size": int,
    "tile_size": int,
    "gsd_m": float,
    "bands": list,
    "value_range": list,
    "standardization_mean": list,
    "standardization_std": list,
    "architecture": str,
}
OPTIONAL_KEYS: dict[str, type] = {
    "raw_range": list,
    "radiometry": dict,
    "product_mappings": dict,
    "band_raw_ranges": list,
    "temperature": float,
    "parameters": int,
    "macs": int,
    "training": dict,
    "metrics": dict,
    "software": dict,
    "created": str,
    "head": dict,
    "known_limits": list,
    "min_confidence": float,
}
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")


@dataclass(frozen=True)
class ModelCard:
    """What a model is, what it expects and how well it did.

    Pixels: the model sees ``input_size`` x ``input_size`` pixels. On the ground a tile is
    ``tile_size`` pixels of ``gsd_m`` metres (``tile_size_m`` metres a side); the runtime
    resizes the tile to ``input_size`` when the two differ.

    Values: ``bands`` names what each input channel holds. The model was trained on values
    in ``value_range`` (8-bit imagery: [0, 255]); input of another data type is mapped there
    linearly from ``raw_range`` (e.g. [-10.83, 2750] for EuroSAT's Sentinel-2 reflectance x 10,000), or by a
    percentile stretch. The network then gets ``(v / value_range[1] - mean) / std``.
    ``radiometry`` says in words and numbers what the training values were (product level,
    unit, the linear mapping onto the 8-bit values, the offset convention). ``product_mappings``
    holds, per product level the training images were not (``"l2a"``), one monotone curve per
    band from reflectance x 10,000 to training values (``{"bands": {"red": {"raw": [...],
    "value": [...]}, ...}, "method": ...}``); the runtime uses it instead of ``raw_range``.
    ``band_raw_ranges`` ([low, high] per band) is the stretch a model trained on chips of a
    raster saw: each band mapped from its own range onto ``value_range``; the runtime maps that
    raster (and others like it) the same way.

    Adapted models (``core/adapt/adapt.py``): ``head`` holds a linear classifier over the graph's
    pooled features (or logits) and per-tile statistics of every raster band, applied in numpy
    after the graph (``core/model/head.py``); ``class_names`` are then the head's classes, and
    ``training`` says from which base model, raster and polygons it was adapted.

    Confidence: the class probabilities are ``softmax(logits / temperature)``; the temperature
    is fitted on the validation split so that a confidence of 0.9 is right about 9 times in 10.
    """

    class_names: list[str]
    class_colors: list[str]
    input_size: int
    tile_size: int
    gsd_m: float
    bands: list[str]
    standardization_mean: list[float]
    standardization_std: list[float]
    architecture: str
    value_range: list[float] = field(default_factory=lambda: [0.0, 255.0])
    raw_range: list[float] | None = None
    radiometry: dict[str, Any] = field(default_factory=dict)
    product_mappings: dict[str, Any] = field(default_factory=dict)
    band_raw_ranges: list[list[float]] | None = None
    temperature: float = 1.0
    parameters: int | None = None
    macs: int | None = None
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    software: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    head: dict[str, Any] = field(default_factory=dict)
    # Measured limits in words (e.g. "dark uniform crop fields in June can look like forest"),
    # and the confidence below which a tile is marked doubtful (None: the plugin's default).
    known_limits: list[str] = field(default_factory=list)
    min_confidence: float | None = None
    format_version: int = FORMAT_VERSION
    model_type: str = MODEL_TYPE

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def num_classes(self) -> int:
        """How many classes the model predicts."""
        return len(self.class_names)

    @property
    def class_rgb(self) -> list[tuple[int, int, int]]:
        """The class colours as (red, green, blue) in 0..255, class id order: the palette every output draws."""
        return [hex_rgb(colour) for colour in self.class_colors]

    @property
    def tile_size_m(self) -> float:
        """The side of one tile on the ground, in metres."""
        return self.tile_size * self.gsd_m

    @property
    def statistics_bands(self) -> int:
        """How many raster bands an adapted model's head wants statistics of per tile (0: a plain model)."""
        return int(self.head["raster_bands"]) if self.head else 0

    @property
    def status(self) -> str:
        """What the trainer says about the model (``training.status``), '' when the card is silent."""
        return str(self.training.get("status") or "")

    @property
    def interim(self) -> bool:
        """Whether the card marks the model as interim (``training.status`` starting 'INTERIM')."""
        return "interim" in self.status.lower()

    def evaluated_on(self) -> str:
        """What the card's accuracy was measured on, e.g. 'validation split (validation.csv), 5,400 images of
        eurosat_rgb'; '' when the card does not say."""
        if self.head and self.training.get("polygons"):  # an adapted model: its own polygons, cross-validated
            chips = self.metrics.get("chips")
            count = f"{chips:,} chips of " if isinstance(chips, int) else ""
            return f"{count}the polygons in '{self.training['polygons']}', whole polygons held out"
        data = self.training.get("data") or {}
        images = self.metrics.get("val_images")
        if not isinstance(images, int) and not data:
            return ""
        split = f"validation split ({data['val_csv']})" if data.get("val_csv") else "validation split"
        count = f", {images:,} images" if isinstance(images, int) else ""
        source = f" of {data['source']}" if data.get("source") else ""
        return split + count + source

    def product_curves(self, product: str) -> list[tuple[list[float], list[float]]] | None:
        """Per channel (raw knots, value knots) of the card's mapping for ``product``; None without one."""
        mapping = self.product_mappings.get(product)
        if not mapping:
            return None
        return [(mapping["bands"][band]["raw"], mapping["bands"][band]["value"]) for band in self.bands]

    @property
    def resolution_cm(self) -> float:
        """Deepness' name for the ground sampling distance, in cm per pixel."""
        return self.gsd_m * 100.0

    def to_metadata(self) -> dict[str, str]:
        """The card as ONNX ``metadata_props``: every value a string."""
        meta = {}
        for key, value in asdict(self).items():
            if value is None or (key in ("head", "known_limits") and not value):
                continue
            meta[key] = value if isinstance(value, str) else json.dumps(value)
        meta["resolution"] = json.dumps(self.resolution_cm)
        return meta

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str], source: str = "the model") -> ModelCard:
        """Parse and validate ONNX ``metadata_props``; raise ModelError naming what is wrong."""
        missing = [key for key in REQUIRED_KEYS if key not in meta]
        if missing:
            raise ModelError(
                f"{source} has no complete model card: missing metadata keys "
                f"{', '.join(missing)}. Export the model with `python -m training export`, or "
                "add the keys to the ONNX file's metadata_props (see README, 'Model card')."
            )
        values = {}
        for key, kind in {**REQUIRED_KEYS, **OPTIONAL_KEYS}.items():
            if key in meta:
                values[key] = _parse(key, meta[key], kind, source)
        try:
            return cls(**values)
        except ModelError as error:
            raise ModelError(f"{source}: {error}") from None

    def distillation_text(self) -> str:
        """How the weights were learnt, from the card's training record: the method, its teacher and
        the teacher's accuracy and size against this model's. One sentence for info, About and the panel."""
        distill = self.training.get("distillation") or {}
        method = distill.get("method", "none") if isinstance(distill, dict) else str(distill)
        teacher = self.training.get("teacher") or {}
        if method == "none" or not teacher:
            return "none: trained from labels alone, without a teacher"
        settings = ", ".join(f"{key} {value:g}" for key, value in distill.items() if isinstance(value, (int, float)))
        text = f"{method.upper()} ({settings}) from a {teacher.get('architecture', 'teacher')}"
        if teacher.get("val_top1") is not None:
            text += f" of {100 * teacher['val_top1']:.2f} % validation top-1"
        size = self.teacher_size_text()
        return text + (f", {size}" if size else "")

    def teacher_size_text(self) -> str:
        """The teacher's parameters and MACs per tile against this model's, as ratios ('' without a teacher
        or its sizes): the distillation's point is a model that many times smaller."""
        teacher = self.training.get("teacher") or {}
        parts = []
        for key, unit, mine in (("parameters", "parameters", self.parameters), ("macs", "MACs per tile", self.macs)):
            theirs = teacher.get(key)
            if theirs and mine:
                parts.append(f"{theirs / 1e6:,.1f} M {unit} ({theirs / mine:.1f}x this model's)")
        return " and ".join(parts)

    def to_markdown(self) -> str:
        """The card rendered for people (README, model folder)."""
        lines = [
            f"# Model card: {self.architecture}",
            "",
            "| field | value |",
            "|---|---|",
            f"| type | {self.model_type} (format {self.format_version}) |",
            f"| classes | {self.num_classes} |",
            f"| input | {self.input_size} x {self.input_size} px, bands {', '.join(self.bands)} |",
            f"| tile on the ground | {self.tile_size} px at {self.gsd_m:g} m = {self.tile_size_m:g} m |",
            f"| input values | {self.value_range[0]:g}..{self.value_range[1]:g}"
            + (f"; raw {self.raw_range[0]:g}..{self.raw_range[1]:g} mapped there" if self.raw_range else "")
            + (
                "; per band from " + ", ".join(f"{lo:.6g}..{hi:.6g}" for lo, hi in self.band_raw_ranges)
                if self.band_raw_ranges
                else ""
            )
            + " |",
            f"| normalisation | mean {self.standardization_mean}, std {self.standardization_std} |",
            f"| confidence | softmax(logits / {self.temperature:.3f}) |",
        ]
        if self.parameters is not None:
            lines.append(f"| parameters | {self.parameters:,} |")
        if self.macs is not None:
            lines.append(f"| MACs per tile | {self.macs / 1e6:,.1f} M |")
        lines.append(f"| distillation | {self.distillation_text()} |")
        if self.created:
            lines.append(f"| created | {self.created} |")
        if self.head:
            dims = self.head["feature_dims"]
            lines.append(
                f"| head (adapted) | softmax over {dims} graph {self.head['source']} + mean and std of "
                f"{self.head['raster_bands']} raster bands |"
            )
        if self.known_limits:
            lines += ["", "## Known limits", ""] + [f"- {limit}" for limit in self.known_limits]
        lines += ["", "## Classes", "", "| id | class | colour |", "|---|---|---|"]
        lines += [f"| {i} | {n} | `{c}` |" for i, (n, c) in enumerate(zip(self.class_names, self.class_colors))]
        for title, section in (
            ("Radiometry", self.radiometry),
            ("Product mappings", self.product_mappings),
            ("Training", self.training),
            ("Metrics", self.metrics),
            ("Software", self.software),
        ):
            if section:
                lines += ["", f"## {title}", "", "```json", json.dumps(section, indent=2), "```"]
        return "\n".join(lines) + "\n"


def _parse(key: str, text: str, kind: type, source: str) -> Any:
    if kind is str:
        return text
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise ModelError(f"{source}: model card key '{key}' is not valid JSON: {text[:60]!r}.") from None
    if kind is float and isinstance(value, int):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ModelError(f"{source}: model card key '{key}' should be a {kind.__name__}, got {value!r}.")
    return value


def hex_rgb(colour: str) -> tuple[int, int, int]:
    """A card colour ``#rrggbb`` as (red, green, blue) in 0..255."""
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def _validate(card: ModelCard) -> None:
    if card.model_type != MODEL_TYPE:
        raise ModelError(f"model_type is '{card.model_type}'; this plugin runs '{MODEL_TYPE}' models.")
    if card.format_version > FORMAT_VERSION:
        raise ModelError(
            f"model card format {card.format_version} is newer than this plugin reads "
            f"({FORMAT_VERSION}); update the plugin."
        )
    if card.num_classes < 2:
        raise ModelError("class_names must list at least 2 classes.")
    if len(card.class_colors) != card.num_classes or not all(_COLOR.match(c) for c in card.class_colors):
        raise ModelError("class_colors must give one '#rrggbb' colour per class.")
    channels = len(card.bands)
    if channels < 1 or len(card.standardization_mean) != channels or len(card.standardization_std) != channels:
        raise ModelError("bands, standardization_mean and standardization_std must have one entry per channel.")
    if min(card.standardization_std) <= 0:
        raise ModelError("standardization_std must be positive.")
    if not all(isinstance(limit, str) and limit.strip() for limit in card.known_limits):
        raise ModelError("known_limits must be a list of sentences (non-empty strings).")
    if card.min_confidence is not None and not 0.0 <= card.min_confidence <= 1.0:
        raise ModelError(f"min_confidence must be between 0 and 1, not {card.min_confidence}.")
    if not card.temperature > 0:
        raise ModelError(f"temperature must be positive, not {card.temperature}.")
    if card.input_size < 1 or card.tile_size < 1 or card.gsd_m <= 0:
        raise ModelError("input_size, tile_size and gsd_m must be positive.")
    _validate_product_mappings(card)
    if card.head:
        check_head(card.head, card.num_classes)
    if card.band_raw_ranges is not None and (
        len(card.band_raw_ranges) != channels
        or not all(isinstance(pair, list) and len(pair) == 2 and pair[0] < pair[1] for pair in card.band_raw_ranges)
    ):
        raise ModelError("band_raw_ranges must give one [low, high] with low < high per band.")
    for name, pair in (("value_range", card.value_range), ("raw_range", card.raw_range)):
        if pair is not None and (len(pair) != 2 or pair[0] >= pair[1]):
            raise ModelError(f"{name} must be [low, high] with low < high.")


def _validate_product_mappings(card: ModelCard) -> None:
    """Each mapping gives every card band a strictly increasing raw axis and as many values."""
    for product, mapping in card.product_mappings.items():
        bands = mapping.get("bands") if isinstance(mapping, dict) else None
        for band in card.bands:
            curve = bands.get(band) if isinstance(bands, dict) else None
            raw = curve.get("raw") if isinstance(curve, dict) else None
            value = curve.get("value") if isinstance(curve, dict) else None
            if not (isinstance(raw, list) and isinstance(value, list) and len(raw) == len(value) >= 2):
                raise ModelError(
                    f"product_mappings['{product}'] needs for band '{band}' a 'raw' and a 'value' list of equal "
                    "length (at least 2)."
                )
            if any(b <= a for a, b in zip(raw, raw[1:])):
                raise ModelError(f"product_mappings['{product}'] band '{band}': 'raw' must increase strictly.")
