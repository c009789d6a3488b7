"""From a recipe and flags to a StageConfig, and the helpers the commands share (data, checks, meta).

Defaults have two homes and only two: ``StageConfig`` (training/train.py: the schedule, the
optimiser, augmentation, precision, the per-model learning-rate table) and ``losses.DEFAULTS``
(each distillation method's weights, temperature and warm-up). The command line's training flags
default to "not given" (None); a recipe sets them as a person would type them; ``stage_config``
is the one place that turns what was given into a StageConfig and fills the rest from those two
homes. ``unnamed_settings`` lists what a recipe left to them: every shipped recipe names all.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path
from typing import Any

from training import distributed
from training.checkpoint import TrainingError
from training.data import DatasetSplits, load_dataset
from training.losses import DEFAULTS as DISTILL_DEFAULTS
from training.train import StageConfig, default_base_lr

REPO = Path(__file__).resolve().parents[1]
# Where `run` looks for EuroSAT when no --data is given (the shared data folder beside the repo).
DEFAULT_DATA = (REPO / ".." / "shared" / "data" / "eurosat_rgb", Path.cwd() / "data" / "eurosat_rgb")
NO_DATA = (
    "no training data found: pass --data PATH (make train DATA=PATH). To get EuroSAT RGB (27,000 "
    "Sentinel-2 patches, 10 classes, MIT): download EuroSAT_RGB.zip from https://zenodo.org/records/7711810, "
    "unzip it and pass the folder that holds the 10 class folders. Your own data: a folder with one sub-folder "
    "of images per class (EuroSAT, AID, UC Merced, NWPU layouts; optional train.csv/validation.csv), or a "
    "raster with labelled polygons: --data scene.tif --polygons labels.gpkg --class-field name --gsd 10. "
    "See docs/TRAINING.md."
)
# `run` is the method: without --distill (flag or recipe) it distils with DKD. `train` distils
# with DKD when given a teacher (--teacher-checkpoint or --soft-labels), else trains alone.
RUN_DISTILL = "dkd"
DISTILL_FLAGS = ("alpha", "beta", "temperature", "warmup_epochs", "ce_weight", "kd_weight")
# StageConfig fields set by a flag of the same name (`augment` is the flag --no-augment, inverted).
STAGE_FLAGS = (
    "epochs",
    "batch_size",
    "lr",
    "base_lr",
    "weight_decay",
    "momentum",
    "input_size",
    "early_input_size",
    "early_fraction",
    "seed",
    "teacher_checkpoint",
    "soft_labels",
    "precision",
    "workers",
    "radiometric",
    "optimizer",
    "bn_batches",
    "weak_patches",
    "weak_batch",
    "weak_weight",
    "weak_kinds",
    "weak_contrast",
    "weak_brightness",
)
# The weak-supervision settings, named only by a run with --weak-patches.
WEAK_SETTINGS = ("weak_batch", "weak_weight", "weak_kinds", "weak_contrast", "weak_brightness")
# Switches whose absence means "off" or "the data's / the model's own", not a default value:
# a recipe leaves them out when it does not use them.
OPTIONAL = (
    "input_size",
    "early_input_size",
    "teacher_checkpoint",
    "soft_labels",
    "weak_patches",
    "dropout",
    "stem_stride",
    "lr",
    "base_lr",
)


def field_default(name: str) -> Any:
    """StageConfig's default for field ``name`` (for flags that other commands share, e.g. --seed)."""
    return {field.name: field.default for field in dataclasses.fields(StageConfig)}[name]


def distill_method(args: argparse.Namespace) -> str:
    """The distillation method: --distill (flag or recipe), else the command's rule (RUN_DISTILL for `run`)."""
    if args.distill:
        return args.distill
    if args.command == "run":
        return RUN_DISTILL
    return "dkd" if args.teacher_checkpoint or args.soft_labels else "none"


def stage_config(args: argparse.Namespace, *, model: str, out: Path, stage: str, distill: str) -> StageConfig:
    """The StageConfig of one stage: what the recipe and flags gave, the rest from StageConfig and losses.DEFAULTS.

    The peak rate is explicit afterwards: without --lr or --base-lr, the per-model rate at batch
    256 (train.default_base_lr). The loss options hold every weight of the method.
    """
    given = {name: getattr(args, name) for name in STAGE_FLAGS if getattr(args, name, None) is not None}
    if getattr(args, "no_augment", None) is not None:
        given["augment"] = not args.no_augment
    config = StageConfig(
        model=model,
        out=str(out),
        stage=stage,
        distill=distill,
        resume=bool(getattr(args, "resume", False)),
        distill_options=_distill_options(args, distill),
        model_options=_model_options(args, model),
        **given,
    )
    if config.lr is None and config.base_lr is None:
        config.base_lr = default_base_lr(model, config.optimizer)
    return config


def _distill_options(args: argparse.Namespace, distill: str) -> dict[str, float]:
    """The loss's weights: losses.DEFAULTS[distill] with what was given; a weight the method lacks is refused."""
    accepted = DISTILL_DEFAULTS[distill]
    given = {name: getattr(args, name) for name in ("label_smoothing", *DISTILL_FLAGS)}
    given = {name: value for name, value in given.items() if value is not None}
    if distill != "none":
        wrong = sorted(set(given) - set(accepted))
        if wrong:
            flags = ", ".join("--" + name.replace("_", "-") for name in wrong)
            raise TrainingError(f"{flags} do(es) not apply to --distill {distill}; drop them.")
    # Without distillation only label smoothing applies: the KD flags `run` shares with its teacher are not its.
    return {**accepted, **{name: value for name, value in given.items() if name in accepted}}


def _model_options(args: argparse.Namespace, model: str) -> dict[str, float]:
    options = {name: getattr(args, name) for name in ("dropout", "stem_stride") if getattr(args, name) is not None}
    if model.startswith("vgg"):
        options.pop("stem_stride", None)  # a student option: `run` gives one set of flags for both stages
    return options


def unnamed_settings(args: argparse.Namespace, distill: str) -> list[str]:
    """The settings neither the recipe nor a flag gave, which StageConfig or losses.DEFAULTS then supply.

    Only those that apply: momentum with SGD, the weak-supervision weights with --weak-patches,
    the method's own loss weights; the rate as --lr or --base-lr. OPTIONAL switches are never listed.
    """
    wanted = [name for name in STAGE_FLAGS if name not in OPTIONAL]
    wanted += ["no_augment", "distill", "label_smoothing"]
    wanted += [name for name in DISTILL_FLAGS if name in DISTILL_DEFAULTS[distill]]
    if getattr(args, "optimizer", None) == "adamw":
        wanted.remove("momentum")
    if not getattr(args, "weak_patches", None):
        wanted = [name for name in wanted if name not in WEAK_SETTINGS]
    # A setting the command has no flag for (`run`: early_fraction) is not the recipe's to name.
    missing = [name for name in wanted if hasattr(args, name) and getattr(args, name) is None]
    if getattr(args, "lr", None) is None and getattr(args, "base_lr", None) is None:
        missing.append("lr or base_lr")
    return missing


def check_stage(config: StageConfig) -> None:
    """Refuse settings that torch would refuse only once the data is loaded, naming their flags.

    NaN and infinity are refused too. So is a learning rate of 0: the stage would take it for
    "the default rate" without a word.
    """
    for name in ("lr", "base_lr"):
        value = getattr(config, name)
        if value is not None and not 0 < value < math.inf:
            flag = "--" + name.replace("_", "-")
            raise TrainingError(
                f"{flag} must be a number above 0, not {value}: it is the peak learning rate (e.g. 0.1)."
            )
    if not 0 <= config.weight_decay < math.inf:
        raise TrainingError(f"--weight-decay must be 0 (none) or a number above it, not {config.weight_decay}.")
    if not 0 <= config.momentum < 1:
        raise TrainingError(f"--momentum must be at least 0 and below 1, not {config.momentum}.")
    if config.weak_patches:
        check_positive(config, "weak_batch")
        if not 0 < config.weak_weight < math.inf:
            raise TrainingError(f"--weak-weight must be a number above 0, not {config.weak_weight}.")
        if not 0 <= config.weak_contrast < 1:
            raise TrainingError(
                f"--weak-contrast must be at least 0 and below 1, not {config.weak_contrast}: the texture is "
                "scaled by a factor from 1 - c to 1 + c."
            )
        if not 0 <= config.weak_brightness <= 255:
            raise TrainingError(f"--weak-brightness must be from 0 to 255, not {config.weak_brightness}.")
    check_positive(config, "workers", least=0)
    if not 0 <= config.radiometric <= 1:
        raise TrainingError(f"--radiometric must be a share from 0 to 1, not {config.radiometric}.")
    if not 0.0 <= config.early_fraction < 1.0:
        raise TrainingError(
            f"--early-fraction {config.early_fraction} must be at least 0 and below 1: the last epochs train at the "
            "full input size."
        )


def check_positive(values: Any, *names: str, least: int = 1) -> None:
    """Refuse a count below ``least`` among ``values``' attributes (flags or StageConfig), naming its flag."""
    for name in names:
        value = getattr(values, name, None)
        if value is not None and value < least:
            raise TrainingError(f"--{name.replace('_', '-')} must be at least {least}, not {value}.")


def find_default_data() -> str:
    """The EuroSAT folder beside the repository (or under ./data), when no --data is given."""
    for candidate in DEFAULT_DATA:
        if candidate.is_dir():
            return str(candidate.resolve())
    raise TrainingError(NO_DATA)


def load_data_once(args: argparse.Namespace, world: distributed.World, *, image_size: int) -> DatasetSplits:
    """Load the data on the main process first, so the others read its cache instead of decoding too."""
    if world.is_main:
        data = load_data(args, image_size=image_size)
    distributed.barrier(world)
    if not world.is_main:
        data = load_data(args, image_size=image_size)
    return data


def load_data(args: argparse.Namespace, *, image_size: int, scoring: bool = False) -> DatasetSplits:
    """The data the flags name, split; undecodable images are reported on stderr and left out."""
    # Scoring: the images of --split-csv are the ones evaluated (the validation side of the split).
    data = load_dataset(
        args.data,
        image_size=image_size,
        split_csv=None if scoring else args.split_csv,
        val_csv=args.split_csv if scoring else args.val_csv,
        val_fraction=args.val_fraction,
        limit_per_class=args.limit_per_class,
        seed=field_default("seed") if args.seed is None else args.seed,
        cache_dir=args.cache_dir,
        polygons=args.polygons,
        class_field=args.class_field,
        gsd_m=args.gsd,
        chip_stride=args.chip_stride,
    )
    _report_skipped(data.summary)
    return data


def _report_skipped(summary: dict[str, Any]) -> None:
    """Say on screen which images were left out as undecodable (training goes on without them)."""
    if not summary.get("skipped"):
        return
    listed = summary.get("skipped_files", [])
    examples = "; ".join(f"{item['file']} ({item['reason']})" for item in listed)
    more = summary["skipped"] - len(listed)
    print(
        f"warning: {summary['skipped']} image(s) could not be decoded and are left out: {examples}"
        + (f"; and {more} more" if more > 0 else "")
        + ". Replace or delete them.",
        file=sys.stderr,
    )


def run_meta(args: argparse.Namespace, data: DatasetSplits, world: distributed.World, gsd_m: float | None) -> dict:
    """What goes into checkpoints and the card: local cache paths and file lists stay out."""
    summary = {key: value for key, value in data.summary.items() if key not in ("cache", "skipped_files")}
    summary["source"] = Path(str(summary.get("source", args.data))).name
    return {
        "data": summary,
        "command": args.command_line,
        "hardware": distributed.describe_hardware(world),
        "world_size": world.size,
        "gsd_m": gsd_m,
        "tile_size": getattr(args, "tile_size", None),
        "recipe": {"file": Path(args.recipe).name, "settings": args.recipe_settings} if args.recipe else None,
    }
