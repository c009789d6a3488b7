"""The commands of ``python -m training``: what each does once training/cli.py has parsed its flags.

Each ``<name>_command(args)`` takes the parsed namespace and returns the exit code; mistakes are
TrainingErrors (one line, exit code 2, printed by cli.main). Settings become a StageConfig in
training/config.py, the training loop is training/train.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from rs_ghost_qgis.core import atomic
from rs_ghost_qgis.core.errors import OutputError
from rs_ghost_qgis.core.model.runtime import load_model
from rs_ghost_qgis.core.options import face_message
from rs_ghost_qgis.core.outputs import check_not_input
from training import distributed, l2a
from training.checkpoint import (
    TrainingError,
    card_from_checkpoint,
    check_model_name,
    default_raw_range,
    load_checkpoint,
    model_from_checkpoint,
    resolve_gsd,
)
from training.config import (
    check_positive,
    check_stage,
    distill_method,
    field_default,
    find_default_data,
    load_data,
    load_data_once,
    run_meta,
    stage_config,
)
from training.data.pack import MIB, pack_folder, unpack
from training.evaluate import card_metrics, evaluate, load_scorer, measure_latency, save_metrics
from training.export import check_model_out, write_model
from training.quantize import check_out, evaluation_folder, format_table, load_fp32, quantize
from training.report import results_table
from training.soft_labels import default_path as default_soft_labels_path
from training.train import StageConfig, soft_labels_for, train_stage


def input_files(args: argparse.Namespace, *names: str) -> dict[str, str | None]:
    """The files a command reads, by flag: none of them may be its --out (core/outputs.py)."""
    return {"--" + name.replace("_", "-"): getattr(args, name, None) for name in names}


def run_command(args: argparse.Namespace) -> int:
    """`run`: teacher (unless given), distilled student, evaluation and the ONNX export with its card."""
    if args.polygons and not args.data:
        raise TrainingError("--polygons labels the raster given with --data: add --data scene.tif.")
    out = Path(args.out)
    student = stage_config(args, model=args.student, out=out / "student", stage="student", distill=distill_method(args))
    check_stage(student)
    args.data = args.data or find_default_data()
    check_positive(args, "epochs", "teacher_epochs", "batch_size", "teacher_input_size", "tile_size", "image_size")
    for name in (args.student, args.teacher):  # before the data, which may take minutes to load
        check_model_name(name)
    world = distributed.start(args.device)
    data = load_data_once(args, world, image_size=args.image_size or 64)
    gsd_m = resolve_gsd(data.class_names, args.gsd, data.summary.get("gsd_m"))  # before hours of training
    meta = run_meta(args, data, world, gsd_m)
    if student.distill != "none" and not (student.teacher_checkpoint or student.soft_labels):
        teacher = stage_config(args, model=args.teacher, out=out / "teacher", stage="teacher", distill="none")
        teacher = dataclasses.replace(
            teacher, epochs=args.teacher_epochs or teacher.epochs, input_size=args.teacher_input_size
        )
        student.teacher_checkpoint = str(train_stage(teacher, data, world, meta).best_path)
        distributed.barrier(world)
    result = train_stage(student, data, world, meta)
    if not world.is_main:
        return 0
    state = load_checkpoint(result.best_path)
    metrics = evaluate(load_scorer(result.best_path), data.val, data.class_names, out / "evaluation", latency=False)
    card = card_from_checkpoint(
        state,
        gsd_m=gsd_m,
        tile_size=args.tile_size,
        raw_range=args.raw_range or default_raw_range(state["class_names"]),
        temperature=metrics["calibration"]["temperature"],
        metrics=card_metrics(metrics, _read_json(out / "evaluation" / "confusion.json")),
    )
    onnx_path = write_model(model_from_checkpoint(state), card, out / f"{args.student}_{student.distill}.onnx")
    metrics["latency"] = measure_latency(load_scorer(onnx_path), out)
    save_metrics(metrics, out / "evaluation")
    _print_summary(out, onnx_path, metrics, state)
    return 0


def train_command(args: argparse.Namespace) -> int:
    """`train`: one model, alone or distilled from a teacher checkpoint or its soft labels."""
    check_positive(args, "epochs", "batch_size", "input_size", "image_size", "early_input_size")
    distill = distill_method(args)
    stage = "teacher" if distill == "none" else "student"
    config = stage_config(args, model=args.model, out=Path(args.out), stage=stage, distill=distill)
    check_stage(config)
    check_model_name(args.model)
    if args.teacher and not args.teacher_checkpoint:
        raise TrainingError(
            "`train` trains one model: give --teacher-checkpoint PATH of a trained teacher, or use "
            "`python -m training run` to train the teacher too."
        )
    if args.teacher and args.teacher != load_checkpoint(args.teacher_checkpoint)["architecture"]:
        raise TrainingError(f"--teacher {args.teacher} does not match the architecture in {args.teacher_checkpoint}.")
    world = distributed.start(args.device)
    data = load_data_once(args, world, image_size=args.image_size or 64)
    result = train_stage(config, data, world, run_meta(args, data, world, args.gsd or data.summary.get("gsd_m")))
    if world.is_main:
        print(f"best val top-1: {100 * result.best_acc:.2f}% (epoch {result.best_epoch})")
        print(f"checkpoints: {result.best_path} (best), {result.last_path} (last); logs and curves in {args.out}")
    return 0


def evaluate_command(args: argparse.Namespace) -> int:
    """`evaluate`: a checkpoint or ONNX model scored on labelled images."""
    scorer = load_scorer(args.model)
    data = load_data(args, image_size=args.image_size or scorer.image_size, scoring=True)
    metrics = evaluate(
        scorer, data.val, data.class_names, args.out, batch_size=args.batch_size, latency=not args.no_latency
    )
    print(f"top-1: {100 * metrics['top1']:.2f}%")
    print(f"macro F1: {100 * metrics['macro_f1']:.2f}% on {metrics['images']} images")
    if metrics.get("latency"):
        print(f"onnxruntime CPU: {metrics['latency']['ms_per_tile_batch1']:.2f} ms per tile (batch 1)")
    print(f"metrics, per-class scores and confusion matrix: {args.out}")
    return 0


def export_command(args: argparse.Namespace) -> int:
    """`export`: a checkpoint as one ONNX file with its model card."""
    out = check_model_out(args.out, input_files(args, "checkpoint", "metrics"), args.overwrite)
    state = load_checkpoint(args.checkpoint)
    metrics, temperature = None, 1.0
    if args.metrics:
        scored = _read_json(Path(args.metrics))
        metrics = card_metrics(scored, _read_json(Path(args.metrics).parent / "confusion.json"))
        temperature = scored.get("calibration", {}).get("temperature", 1.0)
    card = card_from_checkpoint(
        state,
        gsd_m=resolve_gsd(state["class_names"], args.gsd, state["meta"].get("gsd_m")),
        tile_size=args.tile_size or state["meta"].get("tile_size"),
        raw_range=args.raw_range or default_raw_range(state["class_names"]),
        temperature=temperature,
        metrics=metrics,
    )
    path = write_model(model_from_checkpoint(state), card, out)
    print(f"model: {path}\nmodel card: {path.with_suffix('.md')}")
    return 0


def quantize_command(args: argparse.Namespace) -> int:
    """`quantize`: the int8 copy of an exported model, compared with fp32."""
    check_positive(args, "calibration_images", "image_size")
    inputs = input_files(args, "data", "polygons", "split_csv", "val_csv")
    check_out(args.out, args.model, args.overwrite, inputs)  # before the data is loaded
    data = load_data(args, image_size=args.image_size or load_fp32(args.model).image_size)
    report = quantize(
        args.model,
        args.out,
        data,
        calibration_images=args.calibration_images,
        seed=field_default("seed") if args.seed is None else args.seed,
        overwrite=args.overwrite,
        inputs=inputs,
    )
    print(format_table(report))
    out = Path(args.out)
    print(f"model: {out}\nmodel card: {out.with_suffix('.md')}\nevaluation: {evaluation_folder(out)}")
    return 0


def soft_labels_command(args: argparse.Namespace) -> int:
    """`soft-labels`: the teacher's logits for every training image and view, written once."""
    world = distributed.start(args.device)
    data = load_data_once(args, world, image_size=args.image_size or 64)
    given = {name: getattr(args, name) for name in ("batch_size", "precision") if getattr(args, name) is not None}
    config = StageConfig(
        model="unused",
        out="unused",
        distill="dkd",
        teacher_checkpoint=args.teacher_checkpoint,
        stage="teacher",
        **given,
    )
    labels = soft_labels_for(config, data, world)
    path = default_soft_labels_path(args.teacher_checkpoint)
    print(f"soft labels: {path} ({tuple(labels.logits.shape)}, {labels.meta.get('img_per_s', '?')} img/s)")
    return 0


def l2a_fit_command(args: argparse.Namespace) -> int:
    """`l2a-fit`: a model given its Sentinel-2 L2A mapping by quantile matching."""
    inputs = input_files(args, "model", "patches", "data", "polygons", "split_csv", "val_csv")
    out = check_model_out(args.out, inputs, args.overwrite)
    scorer_card = load_model(args.model).card
    patches, bands = l2a.load_patches(args.patches)
    data = load_data(args, image_size=args.image_size or 64)
    fit, _ = l2a.fit_split(len(patches))
    source = (
        f"{Path(args.patches).name}, patches {l2a.FIT_PARITY}, {l2a.FIT_PARITY + 2}, ... ({len(fit)} of {len(patches)})"
    )
    mapping = l2a.fit_mapping(patches[fit], bands, scorer_card.bands, data.train.images, source, args.method)
    l2a.write_fitted(args.model, l2a.with_mapping(scorer_card, mapping), out)
    for band, curve in mapping["bands"].items():
        median = float(
            np.interp(np.median(patches[fit][:, bands.index(l2a.patch_band(band))]), curve["raw"], curve["value"])
        )
        print(f"{band}: {len(curve['raw'])} knots; the L2A median maps to {median:.1f}")
    print(f"model with its L2A mapping: {out}")
    return 0


def spectral_check_command(args: argparse.Namespace) -> int:
    """`spectral-check`: models scored on L2A patches with weak NDVI/NDWI labels."""
    patches, bands = l2a.load_patches(args.patches)
    checked = [
        (model, product)
        for model in args.model
        for product in ["l1c"] + (["l2a"] if load_model(model).card.product_mappings.get("l2a") else [])
    ]
    reports = [l2a.spectral_check(model, patches, bands, product) for model, product in checked]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = l2a.format_report(reports)
    atomic.write_text(out / "spectral_check.md", table)
    atomic.write_text(out / "spectral_check.json", json.dumps(reports, indent=2))
    print(table)
    if args.scene:
        wheat = [
            l2a.wheat_check(report_model, args.scene, product, out, water_rule=rule)
            for report_model, product in checked
            for rule in (False, True)
        ]
        atomic.write_text(out / "wheat_check.md", l2a.format_wheat(wheat))
        atomic.write_text(out / "wheat_check.json", json.dumps(wheat, indent=2))
        print(l2a.format_wheat(wheat))
    return 0


def report_command(args: argparse.Namespace) -> int:
    """`report`: the markdown results table of evaluation folders."""
    if args.out:  # before any folder is read: the table may not land in, or on, what it summarises
        inputs = {f"evaluation folder #{number}": folder for number, folder in enumerate(args.folders, 1)}
        try:
            check_not_input(args.out, "the table (--out)", inputs)
        except OutputError as error:
            raise OutputError(face_message(error, "cli")) from None
    table = results_table([Path(folder) for folder in args.folders])
    print(table)
    if args.out:
        atomic.write_text(args.out, table + "\n")
    return 0


def pack_command(args: argparse.Namespace) -> int:
    """`pack`: a data folder as parts small enough to carry to a GPU machine."""
    for path in pack_folder(args.data, args.out, args.part_mib):
        print(f"{path} ({path.stat().st_size / MIB:.1f} MiB)")
    return 0


def unpack_command(args: argparse.Namespace) -> int:
    """`unpack`: the data folder again, from all of its parts."""
    print(f"data: {unpack(args.pack, args.out)}")
    return 0


# ----------------------------------------------------------------------------- helpers


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise TrainingError(f"cannot read {path} ({error}); give the metrics.json that `evaluate` wrote.") from None


def _print_summary(out: Path, onnx_path: Path, metrics: dict, state: dict) -> None:
    latency = metrics["latency"]
    teacher = state.get("teacher") or {}
    lines = [
        "",
        f"student {state['architecture']} ({state['distill']['method']}): val top-1 {100 * metrics['top1']:.2f}%, "
        f"macro F1 {100 * metrics['macro_f1']:.2f}% on {metrics['images']} images",
    ]
    if teacher.get("val_top1") is not None:
        lines.append(f"teacher {teacher['architecture']}: val top-1 {100 * teacher['val_top1']:.2f}%")
    robust = metrics.get("robust", {})
    if robust:
        shifts = ", ".join(f"{name} {100 * value:.2f}%" for name, value in robust.items())
        lines.append(f"robust val top-1: min {100 * min(robust.values()):.2f}% ({shifts})")
    calibration = metrics["calibration"]
    lines.append(
        f"confidence: temperature {calibration['temperature']:.3f}, validation ECE "
        f"{100 * calibration['ece_before']:.2f}% -> {100 * calibration['ece_after']:.2f}%"
    )
    lines += [
        f"onnxruntime CPU: {latency['ms_per_tile_batch1']:.2f} ms per tile (batch 1), "
        f"{latency['ms_per_tile_batch32']:.2f} ms per tile (batch 32)",
        f"model:        {onnx_path}",
        f"model card:   {onnx_path.with_suffix('.md')}",
        f"evaluation:   {out / 'evaluation'} (metrics.json, per_class.csv, confusion.json/png)",
        f"checkpoints:  {out / 'student'}" + (f", {out / 'teacher'}" if (out / "teacher").is_dir() else ""),
        "              (best.pt, last.pt, log.csv, log.json, curves.png)",
    ]
    print("\n".join(lines))
