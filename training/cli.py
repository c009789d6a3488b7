"""Command line: ``python -m training COMMAND``, COMMAND one of run, train, evaluate, export, quantize,
soft-labels, l2a-fit, spectral-check, report, pack and unpack.

``run`` is the whole method: train the teacher (stage 1), distil the student from it (stage 2),
evaluate the student on the validation split and export it as one ONNX file with its model card.
The other commands do one of those steps. Mistakes in the input end with a one-line message
and exit code 2, never a traceback. This module parses and dispatches: what each command does is
training/commands.py, how flags and a recipe become a StageConfig is training/config.py.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from rs_ghost_qgis.core.errors import RsGhostError
from training import commands, distributed, l2a
from training.config import field_default
from training.export import ExportError
from training.losses import DEFAULTS as DISTILL_DEFAULTS
from training.models import MODEL_NAMES
from training.precision import CHOICES as PRECISIONS
from training.quantize import CALIBRATION_IMAGES
from training.recipe import apply_recipe, read_recipe, recipe_path
from training.train import OPTIMIZERS
from training.weak import DEFAULT_KINDS, KINDS

RECIPE_COMMANDS = ("run", "train")  # the commands that read --recipe FILE


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: sys.argv[1:]), run the command and return the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parse_arguments(argv)
        return args.handler(args)
    except ExportError as error:  # a TrainingError too, but the exporter failed, not the request
        print(f"error: {error}", file=sys.stderr)
        return 1
    except RsGhostError as error:  # TrainingError, DataError and the plugin's own
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; continue later with the same command plus --resume", file=sys.stderr)
        return 130
    finally:
        distributed.stop()


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    """``argv`` parsed, a --recipe's settings as the command's defaults (flags given win)."""
    parser = _parser()
    recipe = None
    if argv and argv[0] in RECIPE_COMMANDS and recipe_path(argv):
        recipe = read_recipe(recipe_path(argv))
        apply_recipe(parser.commands[argv[0]], recipe)
    args = parser.parse_args(argv)
    args.command_line = "python -m training " + shlex.join(argv)
    args.recipe_settings = recipe
    return args


# ----------------------------------------------------------------------------- arguments


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.split("\n\n")[0])
    subcommands = parser.add_subparsers(dest="command", required=True)

    run = subcommands.add_parser("run", help="teacher -> distilled student -> evaluate -> export ONNX")
    _data_arguments(run, data_required=False)
    _training_arguments(run)
    run.add_argument("--teacher", default="vgg16_bn", help="teacher architecture (default vgg16_bn)")
    run.add_argument("--student", default="g_ghost_regnetx_040", help="student architecture")
    run.add_argument("--distill", choices=tuple(DISTILL_DEFAULTS), help="default dkd; none trains no teacher")
    run.add_argument("--teacher-epochs", type=int, help="teacher epochs (default: --epochs)")
    run.add_argument("--teacher-input-size", type=int, help="teacher input side, resized on the fly (default: data's)")
    run.add_argument("--teacher-checkpoint", help="skip stage 1 and distil from this teacher checkpoint")
    run.add_argument("--out", default="runs/train", help="output folder (default runs/train)")
    _card_arguments(run)
    _recipe_argument(run)
    run.set_defaults(handler=commands.run_command)

    train = subcommands.add_parser("train", help="train one model (optionally distilled from a teacher checkpoint)")
    _data_arguments(train, data_required=True)
    _training_arguments(train)
    train.add_argument("--model", required=True, help=f"architecture: {', '.join(MODEL_NAMES)}")
    train.add_argument("--input-size", type=int, help="model input side, resized on the fly (default: data's)")
    train.add_argument("--early-input-size", type=int, help="progressive resizing: train the first epochs at this side")
    train.add_argument("--early-fraction", type=float, help="share of the epochs at --early-input-size (default 0)")
    train.add_argument("--teacher", help="teacher architecture (checked against --teacher-checkpoint)")
    train.add_argument("--teacher-checkpoint", help="teacher checkpoint (.pt) to distil from")
    train.add_argument("--distill", choices=tuple(DISTILL_DEFAULTS), help="default: dkd with a teacher, else none")
    train.add_argument("--out", required=True, help="output folder: last.pt, best.pt, log.csv/json, curves.png")
    _recipe_argument(train)
    train.set_defaults(handler=commands.train_command)

    evaluation = subcommands.add_parser("evaluate", help="score a checkpoint or ONNX model on labelled images")
    evaluation.add_argument("--model", required=True, help="checkpoint (.pt) or exported model (.onnx)")
    _data_arguments(evaluation, data_required=True, scoring=True)
    evaluation.add_argument("--batch-size", type=int, default=128)
    evaluation.add_argument("--no-latency", action="store_true", help="skip the onnxruntime timing")
    evaluation.add_argument("--out", required=True, help="output folder for metrics and the confusion matrix")
    evaluation.set_defaults(handler=commands.evaluate_command)

    export = subcommands.add_parser("export", help="write a checkpoint as one ONNX file with its model card")
    export.add_argument("--checkpoint", required=True, help="checkpoint (.pt), e.g. runs/train/student/best.pt")
    export.add_argument("--out", required=True, help="ONNX file to write; a .md model card goes beside it")
    export.add_argument("--metrics", help="metrics.json written by `evaluate`, to include in the card")
    export.add_argument("--gsd", type=float, help="metres per pixel of the training images (EuroSAT: 10)")
    _overwrite_argument(export)
    _card_arguments(export)
    export.set_defaults(handler=commands.export_command)

    quantization = subcommands.add_parser("quantize", help="int8 copy of an exported model, compared with fp32")
    quantization.add_argument("--model", required=True, help="exported fp32 model (.onnx)")
    _data_arguments(quantization, data_required=True)
    quantization.add_argument(
        "--calibration-images",
        type=int,
        default=CALIBRATION_IMAGES,
        help=f"training images that calibrate the activation ranges (default {CALIBRATION_IMAGES})",
    )
    quantization.add_argument("--out", required=True, help="int8 ONNX file to write; a .md model card goes beside it")
    _overwrite_argument(quantization)
    quantization.set_defaults(handler=commands.quantize_command)

    soft = subcommands.add_parser("soft-labels", help="the teacher's logits for every training image and view, once")
    _data_arguments(soft, data_required=True)
    soft.add_argument("--teacher-checkpoint", required=True, help="teacher checkpoint (.pt)")
    soft.add_argument("--batch-size", type=int, help="(default 128)")
    soft.add_argument("--precision", choices=PRECISIONS, help="number format (default auto: bf16 if native)")
    soft.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    soft.set_defaults(handler=commands.soft_labels_command)

    fitting = subcommands.add_parser("l2a-fit", help="give a model its Sentinel-2 L2A mapping (quantile matching)")
    fitting.add_argument("--model", required=True, help="exported model (.onnx) trained on L1C-like images")
    _data_arguments(fitting, data_required=True)
    fitting.add_argument("--patches", required=True, help="unlabelled L2A patches (.npz: patches, bands)")
    fitting.add_argument("--out", required=True, help="ONNX file to write (not --model); a .md card goes beside it")
    _overwrite_argument(fitting)
    fitting.add_argument("--method", choices=l2a.METHODS, default="linear", help="default linear (see training/l2a.py)")
    fitting.set_defaults(handler=commands.l2a_fit_command)

    check = subcommands.add_parser("spectral-check", help="score models on L2A patches with weak NDVI/NDWI labels")
    check.add_argument("--model", required=True, nargs="+", help="exported models (.onnx)")
    check.add_argument("--patches", required=True, help="L2A patches with B02, B03, B04, B08 (.npz)")
    check.add_argument("--out", required=True, help="folder for spectral_check.md and .json")
    check.add_argument("--scene", help="the Demmin L2A scene: also score its wheat fields (wheat_check.md)")
    check.set_defaults(handler=commands.spectral_check_command)

    report = subcommands.add_parser("report", help="markdown results table from evaluation folders")
    report.add_argument("folders", nargs="+", help="folders written by evaluate or quantize; rows in this order")
    report.add_argument("--out", help="markdown file to write as well as printing the table")
    report.set_defaults(handler=commands.report_command)

    packing = subcommands.add_parser("pack", help="a data folder as parts small enough to carry to a GPU machine")
    packing.add_argument("--data", required=True, help="the data folder (every file under it is packed)")
    packing.add_argument("--out", required=True, help="folder for the parts (<name>.partK-of-N.npz)")
    packing.add_argument("--part-mib", type=float, default=30.0, help="largest part in MiB (default 30)")
    packing.set_defaults(handler=commands.pack_command)

    unpacking = subcommands.add_parser("unpack", help="the data folder again, from all of its parts")
    unpacking.add_argument("--pack", required=True, help="folder holding every part")
    unpacking.add_argument("--out", required=True, help="the folder is written to <out>/<name>")
    unpacking.set_defaults(handler=commands.unpack_command)
    parser.commands = subcommands.choices  # name -> sub-parser, for --recipe
    return parser


def _overwrite_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out (never an input)")


def _recipe_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--recipe",
        help="TOML file of this command's settings (recipes/*.toml: the shipped models'); flags given here win",
    )


def _data_arguments(parser: argparse.ArgumentParser, *, data_required: bool, scoring: bool = False) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--data", required=data_required, help="class-folder tree, or a raster with --polygons")
    group.add_argument("--image-size", type=int, help="side of the images in pixels (default 64; evaluate: model's)")
    if scoring:
        group.add_argument("--split-csv", help="CSV (,Filename,Label,ClassName) of the images to score")
    else:
        group.add_argument("--split-csv", help="CSV (,Filename,Label,ClassName) of the training images")
        group.add_argument("--val-csv", help="CSV of the validation images")
    group.add_argument("--val-fraction", type=float, default=0.2, help="held out when no CSV gives the split")
    group.add_argument("--limit-per-class", type=int, help="at most N images per class in each split")
    group.add_argument("--seed", type=int, help="seed for splits, initialisation and augmentation (default 0)")
    group.add_argument("--cache-dir", help="where decoded images are cached (default ./cache/datasets)")
    group.add_argument("--polygons", help="GeoPackage/Shapefile of labelled polygons over the --data raster")
    group.add_argument("--class-field", default="class", help="polygon attribute holding the class")
    group.add_argument("--gsd", type=float, help="metres per pixel (raster chips; model card; EuroSAT: 10)")
    group.add_argument("--chip-stride", type=int, help="pixels between raster chips (default: image size)")


def _training_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("training")
    # Every default below is StageConfig's (training/train.py) or losses.DEFAULTS': the flags default
    # to "not given" (None), and training/config.py:stage_config fills what neither they nor a recipe set.
    group.add_argument("--epochs", type=int, help="epochs (student in `run`; default 30)")
    group.add_argument("--batch-size", type=int, help="batch per process (default 128)")
    group.add_argument(
        "--lr", type=float, help="peak learning rate, as it is (default: --base-lr x global batch / 256)"
    )
    group.add_argument(
        "--base-lr",
        type=float,
        help="peak learning rate at a global batch of 256, scaled with the batch (default per model: G-Ghost 0.1, "
        "VGG-16-BN 0.02, VGG-16 0.01; 3e-3 with AdamW)",
    )
    group.add_argument("--weight-decay", type=float, help="(default 5e-4)")
    group.add_argument("--momentum", type=float, help="SGD's Nesterov momentum (default 0.9)")
    group.add_argument("--optimizer", choices=OPTIMIZERS, help="sgd (Nesterov momentum) or adamw (default sgd)")
    group.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    group.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="number format of the training steps (auto: bf16 where the CPU or GPU computes it natively and "
        "it measures faster, else fp32; fp16 is CUDA only)",
    )
    group.add_argument("--workers", type=int, help="data loader worker processes (default 0)")
    group.add_argument(
        "--no-augment", action="store_true", default=None, help="no flips, turns or colour jitter (recipe: true/false)"
    )
    group.add_argument(
        "--radiometric",
        type=float,
        help=f"share of training images given each radiometric shift: haze, gain, gamma, blur, noise "
        f"(0: flips and turns only; default {field_default('radiometric')})",
    )
    group.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    group.add_argument("--dropout", type=float, help="dropout before the classifier (model default otherwise)")
    group.add_argument(
        "--stem-stride", type=int, choices=(1, 2), help="G-Ghost stem stride: 2 as on ImageNet, 1 for 64 px tiles"
    )
    group.add_argument(
        "--bn-batches", type=int, help="batches that re-estimate BatchNorm statistics per epoch (0: off; default 20)"
    )
    weak = parser.add_argument_group("weak supervision from near infrared (training/weak.py)")
    weak.add_argument(
        "--weak-patches",
        help="unlabelled Sentinel-2 L2A patches with B08 (.npz, e.g. ../shared/data/l2a_unlabelled/"
        "patches_b02_b03_b04_b08.npz): NIR-labelled water, vegetation and dry land join every batch",
    )
    weak.add_argument("--weak-batch", type=int, help="L2A patches added to each batch (default 24)")
    weak.add_argument("--weak-weight", type=float, help="weight of their loss (default 1)")
    weak.add_argument(
        "--weak-kinds",
        nargs="+",
        choices=KINDS,
        help=f"which NIR labels to train on (default: {' '.join(DEFAULT_KINDS)}; see training/weak.py)",
    )
    weak.add_argument(
        "--weak-contrast",
        type=float,
        help="their texture amplitude x U(1 - c, 1 + c), e.g. 0.6 (default 0: off)",
    )
    weak.add_argument(
        "--weak-brightness", type=float, help="their brightness moved by U(-b, b) on 0..255, e.g. 20 (default 0: off)"
    )
    distill = parser.add_argument_group(
        "distillation (defaults, losses.DEFAULTS: DKD alpha 1, beta 8, T 4, warm-up 20 epochs; KD T 4, CE 0.1, KD 0.9)"
    )
    distill.add_argument(
        "--soft-labels",
        help="the teacher's logits file (.soft_labels.npz) to distil from without the teacher checkpoint "
        "(default: computed once beside --teacher-checkpoint)",
    )
    distill.add_argument("--alpha", type=float, help="DKD weight of the target-class term (TCKD)")
    distill.add_argument("--beta", type=float, help="DKD weight of the non-target-class term (NCKD)")
    distill.add_argument("--temperature", type=float, help="softmax temperature T")
    distill.add_argument(
        "--warmup-epochs", type=float, help="epochs over which DKD's distillation term ramps in (default 20)"
    )
    distill.add_argument("--ce-weight", type=float, help="weight of the cross-entropy term")
    distill.add_argument("--kd-weight", type=float, help="KD weight of the distillation term")
    distill.add_argument(
        "--label-smoothing", type=float, help="share of each one-hot target spread over all classes (default 0)"
    )


def _card_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model card")
    group.add_argument(
        "--tile-size",
        type=int,
        help="side in pixels of the original patches, when --image-size shrank them (UC Merced: 256); "
        "with --gsd it gives the tile's footprint on the ground (default: the image size)",
    )
    group.add_argument(
        "--raw-range",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="raw values mapped to 0..255 at inference (EuroSAT's default: Sentinel-2 reflectance x 10,000, "
        "0..2750 -> 1..255)",
    )
