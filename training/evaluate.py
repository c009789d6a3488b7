"""Score a checkpoint or an exported ONNX model on labelled images and write what it did.

Files written to the output folder: ``metrics.json`` (top-1, macro F1, per-class precision,
recall and F1, parameters, MACs, onnxruntime CPU latency), ``per_class.csv``,
``confusion.json`` and ``confusion.png``.
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rs_ghost_qgis.core import atomic
from rs_ghost_qgis.core.assess import Assessment, confusion_matrix
from rs_ghost_qgis.core.errors import ModelError
from rs_ghost_qgis.core.model.runtime import create_session, load_model
from training.calibration import calibrate, expected_calibration_error
from training.checkpoint import card_from_checkpoint, load_checkpoint, model_from_checkpoint
from training.data import ImageArrays
from training.errors import TrainingError
from training.export import export_onnx
from training.inputs import InputPipeline, predict
from training.models import count_macs, count_parameters
from training.plots import plot_confusion, plot_reliability
from training.robustness import SHIFTS


@dataclass
class Scorer:
    """What evaluation needs from a model of either kind."""

    name: str
    architecture: str
    class_names: list[str]
    pipeline: InputPipeline  # its normalisation and input size
    image_size: int  # side the images are loaded at: what the model was trained on
    forward: Callable[[torch.Tensor], torch.Tensor]  # pipeline.network_input (B, C, S, S) -> logits
    parameters: int | None
    macs: int | None
    onnx_for_latency: Callable[[Path], Path]  # writes (or finds) the ONNX to time; returns its path
    temperature: float = 1.0  # the card's, for an exported model


def load_scorer(path: str | Path) -> Scorer:
    """A Scorer for a training checkpoint (.pt) or an exported model (.onnx)."""
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"model {path} does not exist; give a checkpoint (.pt) or an exported model (.onnx).")
    return _onnx_scorer(path) if path.suffix.lower() == ".onnx" else _checkpoint_scorer(path)


def _checkpoint_scorer(path: Path) -> Scorer:
    state = load_checkpoint(path)
    model = model_from_checkpoint(state)

    def write_onnx(folder: Path) -> Path:
        # The card's ground sampling distance is irrelevant to timing; any valid value will do.
        return export_onnx(model, card_from_checkpoint(state, gsd_m=1.0), folder / "model.onnx")

    return Scorer(
        name=str(path),
        architecture=str(state["architecture"]),
        class_names=list(state["class_names"]),
        pipeline=InputPipeline.from_checkpoint(state),
        image_size=int(state["image_size"]),
        forward=model,
        parameters=count_parameters(model),
        macs=count_macs(model, int(state["input_size"]), len(state["mean"])),
        onnx_for_latency=write_onnx,
    )


def _onnx_scorer(path: Path) -> Scorer:
    try:
        # The plugin's own loader: the input shape and classes checked against the card, and
        # one probe tile run, so a model the plugin would refuse is refused here too.
        model = load_model(path)
    except ModelError as error:
        raise TrainingError(str(error)) from None
    card, session, input_name = model.card, model.session, model.input_name
    # The logits are the first output; a model may carry more after them (the features of adapt).
    first = session.get_outputs()[0].name

    def forward(x: torch.Tensor) -> torch.Tensor:
        (logits,) = session.run([first], {input_name: x.cpu().numpy().astype(np.float32)})
        return torch.from_numpy(logits)

    return Scorer(
        name=str(path),
        architecture=card.architecture,
        class_names=list(card.class_names),
        pipeline=InputPipeline(tuple(card.standardization_mean), tuple(card.standardization_std), card.input_size),
        image_size=card.input_size,  # the runtime resizes every tile to this side
        forward=forward,
        parameters=card.parameters,
        macs=card.macs,
        onnx_for_latency=lambda _folder: path,
        temperature=card.temperature,
    )


def evaluate(
    scorer: Scorer,
    arrays: ImageArrays,
    data_class_names: list[str],
    out: str | Path,
    *,
    batch_size: int = 256,
    latency: bool = True,
    robust: bool = True,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Score ``scorer`` on ``arrays`` (labels index ``data_class_names``); write and return the metrics.

    Besides top-1 and per-class scores: top-1 under each radiometric shift of
    ``robustness.SHIFTS`` (``robust``), and the calibration of the confidence: the temperature
    fitted on these images, the ECE before and after it, and at the model card's temperature.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():  # said before the scoring, not after it
        raise TrainingError(f"cannot create --out {out}: a file of that name exists; choose another folder.")
    labels = _labels_in_model_order(arrays.labels, data_class_names, scorer.class_names)
    logits, _ = predict(scorer.forward, arrays, scorer.pipeline, torch.device("cpu"), batch_size)
    out = _make_out(out)  # only now: a refused evaluation leaves no empty --out behind
    predictions = logits.argmax(1).numpy()
    # The plugin's accuracy maths (rsghost:assess), so both sides score a model the same way.
    matrix = confusion_matrix(labels, predictions, len(scorer.class_names))
    report = Assessment(list(scorer.class_names), matrix)
    metrics: dict[str, Any] = {
        "model": scorer.name,
        "architecture": scorer.architecture,
        "images": int(len(labels)),
        "top1": report.overall_accuracy,
        "macro_f1": report.macro_f1,
        "per_class": report.per_class(),
        "parameters": scorer.parameters,
        "macs": scorer.macs,
        "input_size": scorer.pipeline.size,
        "calibration": _calibration(logits, labels, scorer.temperature, out),
        **(extra or {}),
    }
    if robust:
        metrics["robust"] = _robust_top1(scorer, arrays, labels, batch_size)
        metrics["robust_top1_min"] = min(metrics["robust"].values())
    if latency:
        metrics["latency"] = measure_latency(scorer, out)
    _write(metrics, matrix, scorer.class_names, out)
    return metrics


def _make_out(out: Path) -> Path:
    """Create the --out folder (and its parents), or say why it cannot be."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise TrainingError(f"cannot create --out {out}: {error.strerror or error}; choose another folder.") from None
    return out


def _robust_top1(scorer: Scorer, arrays: ImageArrays, labels: np.ndarray, batch_size: int) -> dict[str, float]:
    scores = {}
    for name, shift in SHIFTS.items():
        logits, _ = predict(scorer.forward, arrays, scorer.pipeline, torch.device("cpu"), batch_size, shift)
        scores[name] = float((logits.argmax(1).numpy() == labels).mean())
    return scores


def _calibration(logits: torch.Tensor, labels: np.ndarray, card_temperature: float, out: Path) -> dict[str, Any]:
    report = calibrate(logits, torch.from_numpy(labels))
    plot_reliability(report, out / "reliability.png")
    probabilities = torch.softmax(logits.double() / card_temperature, dim=1).numpy()
    report["card_temperature"] = card_temperature
    report["ece_at_card_temperature"] = expected_calibration_error(probabilities, labels)["ece"]
    return report


def _labels_in_model_order(labels: np.ndarray, data_names: list[str], model_names: list[str]) -> np.ndarray:
    unknown = sorted(set(data_names) - set(model_names))
    if unknown:
        raise TrainingError(
            f"the data has classes the model does not know: {', '.join(unknown)}; the model predicts "
            f"{', '.join(model_names)}. Evaluate on data with the model's classes."
        )
    mapping = np.array([model_names.index(name) for name in data_names], dtype=np.int64)
    return mapping[labels]


def measure_latency(scorer: Scorer, scratch: Path, seconds: float = 2.0, threads: int | None = None) -> dict[str, Any]:
    """onnxruntime CPU time per tile: one tile at a time, and in batches of 32 (median of repeats).

    The session is the plugin's (runtime.create_session); ``threads`` None uses every core.
    """
    with tempfile.TemporaryDirectory(dir=scratch) as folder:
        path = scorer.onnx_for_latency(Path(folder))
        session = create_session(path, threads)
        name = session.get_inputs()[0].name
        channels, size = len(scorer.pipeline.mean), scorer.pipeline.size
        result = {"threads": threads or os.cpu_count(), "provider": "CPUExecutionProvider"}
        for batch in (1, 32):
            sample = np.random.default_rng(0).standard_normal((batch, channels, size, size))
            feed = {name: sample.astype(np.float32)}
            session.run(None, feed)  # warm-up: first runs allocate and pick kernels
            times = []
            deadline = time.perf_counter() + seconds / 2
            while len(times) < 3 or (time.perf_counter() < deadline and len(times) < 200):
                started = time.perf_counter()
                session.run(None, feed)
                times.append(time.perf_counter() - started)
            result[f"ms_per_tile_batch{batch}"] = 1000 * statistics.median(times) / batch
        return result


def card_metrics(metrics: dict[str, Any], confusion: dict[str, Any]) -> dict[str, Any]:
    """The model card's metrics from ``evaluate``'s metrics and its confusion.json contents.

    Validation top-1 clean and under each radiometric shift, and the expected calibration error
    before and after the temperature.
    """
    card = {
        "val_top1": metrics["top1"],
        "val_macro_f1": metrics["macro_f1"],
        "val_images": metrics["images"],
        "per_class_f1": {name: row["f1"] for name, row in metrics["per_class"].items()},
        "confusion": confusion["matrix"],
    }
    if "robust" in metrics:
        card["robust_val_top1"] = metrics["robust"]
        card["robust_val_top1_min"] = metrics["robust_top1_min"]
    if "calibration" in metrics:
        calibration = metrics["calibration"]
        card["val_ece"] = {"before": calibration["ece_before"], "after": calibration["ece_after"]}
    return card


def save_metrics(metrics: dict[str, Any], out: Path) -> Path:
    """Write ``metrics.json`` into ``out``."""
    return atomic.write_text(Path(out) / "metrics.json", json.dumps(metrics, indent=2))


def _write(metrics: dict[str, Any], matrix: np.ndarray, class_names: list[str], out: Path) -> None:
    save_metrics(metrics, out)
    confusion = {"class_names": class_names, "matrix": matrix.tolist()}
    atomic.write_text(out / "confusion.json", json.dumps(confusion, indent=2))
    with atomic.atomic_path(out / "per_class.csv") as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["class", "precision", "recall", "f1", "support"])
        for name, row in metrics["per_class"].items():
            scores = [f"{row[key]:.4f}" for key in ("precision", "recall", "f1")]
            writer.writerow([name, *scores, row["support"]])
    plot_confusion(matrix, class_names, out / "confusion.png", title=f"top-1 {100 * metrics['top1']:.2f}%")
