"""Checkpoints: plain dicts of state_dicts and primitives, written atomically, read with weights_only.

A checkpoint carries everything needed to rebuild its model without the command line that made
it: the architecture name and options, class names, input size and normalisation.
"""

from __future__ import annotations

import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import torch
from torch import nn

from rs_ghost_qgis.core.atomic import atomic_path
from rs_ghost_qgis.core.model.card import ModelCard
from training.colors import EUROSAT_CLASSES, class_colors
from training.errors import TrainingError, cannot_write
from training.l2a import with_mapping
from training.models import MODEL_NAMES, build_model, count_macs, count_parameters

FORMAT = 1
# Keys every checkpoint has; training checkpoints add optimiser, scheduler and RNG states.
MODEL_KEYS = ("format", "architecture", "num_classes", "model_options", "state_dict", "class_names", "input_size")


# What EuroSAT RGB patches are: Sentinel-2 B04/B03/B02 at 10 m; reflectance x 10,000 of about
# 0..2750 maps linearly onto their 1..255 (SENTINEL2_RAW_RANGE below; ../shared/data/README.md).
EUROSAT_BANDS = ["B04 red", "B03 green", "B02 blue"]
RGB_BANDS = ["red", "green", "blue"]
EUROSAT_GSD_M = 10.0
EUROSAT_TILE_SIZE = 64
# EuroSAT was made with `gdal_translate -scale 0 2750 1 255` from Sentinel-2 L1C digital numbers
# (reflectance x 10,000; phelber/EuroSAT issue #6). The card's raw_range maps linearly onto
# value_range 0..255, so the raw value that lands on 0 is -2750/254: then 0 -> 1 and 2750 -> 255
# exactly as EuroSAT did.
SENTINEL2_RAW_RANGE = [-2750.0 / 254.0, 2750.0]
EUROSAT_RADIOMETRY = {
    "product_level": "Sentinel-2 L1C top-of-atmosphere reflectance",
    "raw_unit": "reflectance x 10,000 (Sentinel-2 digital numbers)",
    "mapping": "linear, 0..2750 -> 1..255 for all bands, clipped (gdal_translate -scale 0 2750 1 255)",
    "offset": "none: reflectance x 10,000 with no offset. Products of processing baseline 04.00 and later "
    "(from 25 January 2022) add 1000 (RADIO_ADD_OFFSET / BOA_ADD_OFFSET = -1000): subtract it first",
    "robustness": "trained with haze added and removed (L1C vs L2A), gain, gamma, blur and noise",
}


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically (a crash never leaves a half-written file)."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            torch.save({"format": FORMAT, **state}, tmp)
    except OSError as error:
        raise cannot_write(path, error) from None
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; raise TrainingError when it is not one of ours."""
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"checkpoint {path} does not exist; give the path of a .pt file written by training.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unpickling failure means "not a checkpoint of ours"
        raise TrainingError(f"{path} is not a readable training checkpoint ({type(error).__name__}).") from None
    missing = [key for key in MODEL_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise TrainingError(f"{path} is not a training checkpoint of this project (missing {', '.join(missing)}).")
    if state["format"] > FORMAT:
        raise TrainingError(f"{path} was written by a newer version of this project; update it to read it.")
    return state


def check_model_name(name: str) -> None:
    """Raise TrainingError listing the known architectures when ``name`` is not one of them."""
    if name not in MODEL_NAMES:
        raise TrainingError(f"unknown model '{name}'; choose one of: {', '.join(MODEL_NAMES)}.")


def make_model(name: str, num_classes: int, options: dict[str, Any] | None = None) -> nn.Module:
    """``build_model`` with a user-facing error for unknown names."""
    check_model_name(name)
    return build_model(name, num_classes, **(options or {}))


def model_from_checkpoint(state: dict[str, Any]) -> nn.Module:
    """Rebuild the checkpoint's model with its weights, in eval mode on the CPU."""
    model = make_model(state["architecture"], state["num_classes"], state["model_options"])
    model.load_state_dict(state["state_dict"])
    return model.eval()


def is_eurosat(class_names: list[str]) -> bool:
    """Whether the classes are EuroSAT's ten (in any order)."""
    return sorted(class_names) == sorted(EUROSAT_CLASSES)


def resolve_gsd(class_names: list[str], gsd_m: float | None, recorded: float | None = None) -> float:
    """The ground sampling distance for the card: given, recorded with the data, or EuroSAT's 10 m."""
    for value in (gsd_m, recorded):
        if value:
            return float(value)
    if is_eurosat(class_names):
        return EUROSAT_GSD_M
    raise TrainingError(
        "the ground sampling distance of the training images is unknown: pass --gsd METRES "
        "(metres per pixel of your patches, e.g. 10 for Sentinel-2, 0.3 for UC Merced)."
    )


def default_raw_range(class_names: list[str]) -> list[float] | None:
    """Sentinel-2 reflectance scaling for EuroSAT models; none (percentile stretch) otherwise."""
    return list(SENTINEL2_RAW_RANGE) if is_eurosat(class_names) else None


def card_bands(class_names: list[str], channels: int) -> list[str]:
    """The bands a model trained on these classes and channels reads: EuroSAT's, or plain RGB."""
    return list(EUROSAT_BANDS) if is_eurosat(class_names) and channels == 3 else RGB_BANDS[:channels]


def default_radiometry(class_names: list[str], raw_range: list[float] | None) -> dict[str, Any]:
    """What the training values were: EuroSAT's definition, or what is known of one's own data."""
    if is_eurosat(class_names) and raw_range == SENTINEL2_RAW_RANGE:
        return dict(EUROSAT_RADIOMETRY)
    if raw_range:
        return {"mapping": f"linear, {raw_range[0]:g}..{raw_range[1]:g} -> 0..255 for all bands, clipped"}
    return {"mapping": "8-bit imagery as it is, or a percentile stretch of other data"}


def card_from_checkpoint(
    state: dict[str, Any],
    *,
    gsd_m: float,
    tile_size: int | None = None,
    raw_range: list[float] | None = None,
    radiometry: dict[str, Any] | None = None,
    temperature: float = 1.0,
    metrics: dict[str, Any] | None = None,
) -> ModelCard:
    """The model card of a checkpoint: what it expects, how it was trained and how well it did.

    ``gsd_m`` is the metres per pixel of the original patches and ``tile_size`` their side in
    pixels (default: EuroSAT's 64 for EuroSAT patches, else the side the images were trained
    at); the model sees ``input_size``.
    """
    model = model_from_checkpoint(state)
    names = list(state["class_names"])
    config, meta = state["config"], state["meta"]
    channels = len(state["mean"])
    bands = card_bands(names, channels)
    training = {
        "stage": config["stage"],
        "data": meta.get("data"),
        "command": meta.get("command"),
        "recipe": meta.get("recipe"),
        "seed": config["seed"],
        "epochs": config["epochs"],
        "weights_from_epoch": state["best_epoch"],
        "batch_size": config["batch_size"],
        "optimizer": describe_optimizer(config),
        "lr": state.get("lr"),
        "schedule": describe_schedule(config),
        "augmentation": describe_augmentation(config),
        "distillation": state.get("distill"),
        "teacher": state.get("teacher"),
        "weak_supervision": _weak_summary(state.get("weak"), config),
        "hardware": meta.get("hardware"),
        "precision": state.get("precision"),
        "img_per_s": _median_speed(state),
    }
    card = ModelCard(
        class_names=names,
        class_colors=class_colors(names),
        input_size=int(state["input_size"]),
        tile_size=int(tile_size or _native_tile_size(state)),
        gsd_m=gsd_m,
        bands=bands,
        standardization_mean=[float(v) for v in state["mean"]],
        standardization_std=[float(v) for v in state["std"]],
        architecture=state["architecture"],
        value_range=[0.0, 255.0],
        raw_range=raw_range,
        band_raw_ranges=_training_stretch(meta),
        radiometry=radiometry if radiometry is not None else default_radiometry(names, raw_range),
        temperature=float(temperature),
        parameters=count_parameters(model),
        macs=count_macs(model, int(state["input_size"]), channels),
        training={key: value for key, value in training.items() if value is not None},
        metrics={"val_top1": state["best_acc"], **(metrics or {})},
        software=software_versions(),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    # A model trained on L2A patches through these curves must be fed L2A through the same ones.
    weak = state.get("weak")
    return with_mapping(card, weak["mapping"]) if weak else card


def describe_optimizer(config: dict[str, Any]) -> str:
    """The optimiser a stage ran with, as its config stored it."""
    if config.get("optimizer", "sgd") == "adamw":
        return f"AdamW, weight decay {config['weight_decay']} (decoupled)"
    return f"SGD nesterov, momentum {config['momentum']}, weight decay {config['weight_decay']}"


def describe_schedule(config: dict[str, Any]) -> str:
    """The learning-rate schedule and input sizes a stage ran with."""
    text = "linear warm-up over the first epoch, cosine decay to zero per step"
    early = config.get("early_input_size")
    if early and config.get("early_fraction"):
        text += f"; the first {config['early_fraction']:.0%} of the epochs at {early} px"
    return text


def describe_augmentation(config: dict[str, Any]) -> str:
    """The augmentation and target smoothing a stage ran with."""
    if not config.get("augment", True):
        return "none"
    text = "flips and quarter turns"
    if config.get("radiometric"):
        text += f"; haze, gain, gamma, noise and blur on {config['radiometric']:.0%} of the images"
    smoothing = (config.get("distill_options") or {}).get("label_smoothing")
    if smoothing:
        text += f"; label smoothing {smoothing}"
    return text


def _weak_summary(weak: dict[str, Any] | None, config: dict[str, Any]) -> dict[str, Any] | None:
    if not weak:
        return None
    keep = ("source", "patches", "rules")
    jitter = {"contrast": config.get("weak_contrast", 0.0), "brightness": config.get("weak_brightness", 0.0)}
    return {
        **{key: weak[key] for key in keep},
        "per_batch": config["weak_batch"],
        "weight": config["weak_weight"],
        "jitter": jitter,
    }


def _training_stretch(meta: dict[str, Any]) -> list[list[float]] | None:
    """[low, high] per band that raster chips were stretched from (None: folders, or 8-bit chips)."""
    stretch = (meta.get("data") or {}).get("stretch")
    if not stretch:
        return None
    return [[float(low), float(high)] for low, high in zip(stretch["low"], stretch["high"], strict=True)]


def _median_speed(state: dict[str, Any]) -> float | None:
    speeds = sorted(row["img_per_s"] for row in state.get("history", []) if "img_per_s" in row)
    return round(speeds[len(speeds) // 2], 1) if speeds else None


def _native_tile_size(state: dict[str, Any]) -> int:
    # EuroSAT patches are 64 px whatever --image-size made of them; raster chips are cut at the
    # image size itself, so their tile is what the model saw.
    from_patches = (state["meta"].get("data") or {}).get("kind") != "raster_polygons"
    return EUROSAT_TILE_SIZE if from_patches and is_eurosat(state["class_names"]) else int(state["image_size"])


def software_versions() -> dict[str, str]:
    """Versions of what trained and exported the model."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
    }
