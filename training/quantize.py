"""Post-training static int8 quantisation of an exported model, measured against the fp32 model.

onnxruntime's ``quantize_static`` in QDQ format: int8 weights per output channel, uint8
activations whose ranges come from percentile calibration (99.999th) on normalised training
images. Measured on an earlier G-Ghost 040 student (validation top-1 lost, two draws of 512
calibration images):
- MinMax, everything int8: 0.87 points; the layer that reads the image kept fp32: 0.26;
- MinMax, first layer and classifier kept fp32: 0.13 and 1.00 (the draw of images matters);
- percentile, first layer and classifier kept fp32: 0.00 and 0.37 (this module's choice).
More calibration images made every method worse (2,048 images: 3 to 20 points), so the default
stays at 512 (plain MinMax widens its ranges with every outlier it sees; with a moving average
of the ranges it lost 0.06 points at 512 images and 0.09 at 2,048 on the bundled DKD student,
against a gain of 0.03 for this module's choice). Keeping the two edge layers fp32 costs no file
size. Weights keep all 8 bits: onnxruntime suggests 7 (``reduce_range``) against saturation on
x86 CPUs without VNNI, but on such a CPU (AVX2 only) the 8-bit model lost half as much as the
7-bit one. The int8 file carries
the fp32 model card, with a ``quantization`` entry in its metrics: the method and the measured
fp32 and int8 validation top-1 and CPU tiles per second.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from rs_ghost_qgis.core import atomic
from rs_ghost_qgis.core.model.card import ModelCard
from training.data import DatasetSplits, ImageArrays, make_loader
from training.errors import TrainingError, cannot_write
from training.evaluate import Scorer, card_metrics, evaluate, load_scorer, measure_latency, save_metrics
from training.export import check_model_out, embed_card

CALIBRATION_IMAGES = 512
CALIBRATION_BATCH = 32
THREADS = (1, 2)  # the plugin's usual settings on a laptop: one core, or two
METHOD = (
    "onnxruntime quantize_static, QDQ: int8 per-channel weights, uint8 activations, percentile (99.999) "
    "calibration on training images; the first layer and the classifier stay fp32"
)
WEIGHTED_OPS = ("Conv", "Gemm", "MatMul")
# Operators only a quantised graph holds (QDQ, QOperator and dynamic formats).
INT8_OPS = frozenset(
    {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul"}
    | {"ConvInteger", "MatMulInteger", "QGemm", "QLinearAdd", "QLinearMul"}
)

EVALUATION_FILES = ("metrics.json", "confusion.json")


def quantize(
    model: str | Path,
    out: str | Path,
    data: DatasetSplits,
    *,
    calibration_images: int = CALIBRATION_IMAGES,
    seed: int = 0,
    overwrite: bool = False,
    inputs: Mapping[str, str | Path | None] | None = None,
) -> dict[str, Any]:
    """Write ``model`` (an exported fp32 .onnx) quantised to int8 at ``out``; return the comparison.

    Calibration uses ``calibration_images`` training images drawn with ``seed``; accuracy is
    measured on ``data.val``. Evaluation files go to ``<out stem>_evaluation/{fp32,int8}`` and a
    markdown card beside ``out``. An ``out`` not ending in .onnx, one that is ``model`` or another
    of ``inputs`` (flag -> path), existing outputs without ``overwrite``, a folder that cannot be
    written or a full disk is a TrainingError.
    """
    model, out = Path(model), check_out(out, model, overwrite, inputs)
    fp32 = load_fp32(model)
    card = ModelCard.from_metadata(_metadata(model), source=str(model))
    try:
        return _quantize_and_measure(model, out, fp32, card, data, calibration_images, seed)
    except OSError as error:
        raise cannot_write(failed_output(error, out), error) from None


def _quantize_and_measure(
    model: Path, out: Path, fp32: Scorer, card: ModelCard, data: DatasetSplits, calibration_images: int, seed: int
) -> dict[str, Any]:
    """The work of ``quantize``: the int8 file published atomically, then its report and card."""
    folder = evaluation_folder(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # The scratch folder holds onnxruntime's intermediate models; the int8 file itself is written
    # through atomic_path, so a failure or kill never leaves a partial one at ``out``.
    with tempfile.TemporaryDirectory(dir=out.parent) as scratch, atomic.atomic_path(out) as draft:
        scratch = Path(scratch)
        batches = calibration_batches(data.train, fp32, calibration_images, seed)
        _quantize_file(model, draft, batches, scratch)
        embed_card(draft, card)  # evaluation reads the normalisation from the card
        report = {"method": METHOD, "calibration_images": sum(len(b) for b in batches), "seed": seed}
        report["onnxruntime"] = ort.__version__
        report.update(compare(fp32, load_scorer(draft), data, folder))
        report.update(fp32_mb=_megabytes(model), int8_mb=_megabytes(draft))
        # The shipped file must state its own accuracy; the fp32 figures stay under "quantization".
        int8 = card_metrics(*(json.loads((folder / "int8" / name).read_text()) for name in EVALUATION_FILES))
        embed_card(draft, dataclasses.replace(card, metrics={**card.metrics, **int8, "quantization": report}))
    atomic.write_text(folder / "quantization.json", json.dumps(report, indent=2))
    atomic.write_text(out.with_suffix(".md"), ModelCard.from_metadata(_metadata(out)).to_markdown())
    return report


def failed_output(error: OSError, out: Path) -> Path:
    """The output a failed write was for: its card or evaluation file when named, else ``out``.

    Temporary files and onnxruntime's scratch folder are no name the user gave.
    """
    named = Path(error.filename) if error.filename else None
    if named is not None and (named == out.with_suffix(".md") or named.is_relative_to(evaluation_folder(out))):
        return named
    return out


def check_out(
    out: str | Path,
    model: str | Path,
    overwrite: bool = False,
    inputs: Mapping[str, str | Path | None] | None = None,
) -> Path:
    """``out`` as a Path, checked before anything is made (core/outputs.py's rule; see check_model_out).

    It must end in .onnx, be no input (``model`` or another of ``inputs``) and, like its card and
    its evaluation folder, replace nothing without ``overwrite``.
    """
    out = Path(out)
    # The int8 file is measured through load_scorer, which tells models from checkpoints by the suffix.
    if out.suffix.lower() != ".onnx":
        raise TrainingError(
            f"--out {out} must end in .onnx: quantize writes an ONNX model; for example --out {out.stem}_int8.onnx."
        )
    check_model_out(out, {"--model": model, **(inputs or {})}, overwrite)
    folder = evaluation_folder(out)
    if folder.exists() and not overwrite:
        raise TrainingError(
            f"{folder} (the evaluation beside --out) already exists; use --overwrite to replace it, or choose "
            "another --out."
        )
    return out


def load_fp32(model: str | Path) -> Scorer:
    """The Scorer of an exported fp32 model; TrainingError for anything but a readable .onnx file."""
    model = Path(model)
    if model.suffix.lower() != ".onnx":
        raise TrainingError(
            f"quantize takes an exported model (.onnx), not {model.name}; export the checkpoint first "
            "with `python -m training export`."
        )
    scorer = load_scorer(model)
    # Quantising twice crashes in onnx's checker; an int8 model is recognised by its operators.
    quantised = sorted({node.op_type for node in onnx.load(str(model), load_external_data=False).graph.node} & INT8_OPS)
    if quantised:
        raise TrainingError(
            f"--model {model} is already int8 (it holds {', '.join(quantised)}); quantize takes the fp32 model "
            "that `python -m training export` wrote."
        )
    return scorer


def evaluation_folder(out: str | Path) -> Path:
    """Where ``quantize`` writes the evaluation of both models, beside the int8 file."""
    return Path(out).parent / f"{Path(out).stem}_evaluation"


def calibration_batches(arrays: ImageArrays, scorer: Scorer, count: int, seed: int) -> list[np.ndarray]:
    """``count`` images drawn from ``arrays`` with ``seed``, normalised as for evaluation, in batches."""
    if len(arrays) == 0:
        raise TrainingError("the training split is empty; calibration needs training images: check --split-csv.")
    chosen = np.sort(np.random.default_rng(seed).choice(len(arrays), size=min(count, len(arrays)), replace=False))
    sample = ImageArrays(arrays.images[chosen], arrays.labels[chosen])
    loader = make_loader(sample, batch_size=CALIBRATION_BATCH, train=False)
    return [scorer.pipeline.network_input(batch.images).numpy() for batch in loader]


def compare(fp32: Scorer, int8: Scorer, data: DatasetSplits, folder: Path) -> dict[str, Any]:
    """Validation top-1 and CPU tiles per second (batch 32) of both models; evaluation files in ``folder``."""
    report: dict[str, Any] = {"val_images": len(data.val), "batch": 32}
    for name, scorer in (("fp32", fp32), ("int8", int8)):
        metrics = evaluate(scorer, data.val, data.class_names, folder / name, latency=False)
        speed = {f"threads_{threads}": _tiles_per_second(scorer, folder, threads) for threads in THREADS}
        metrics["tiles_per_s_batch32"] = speed
        save_metrics(metrics, folder / name)
        report[f"{name}_val_top1"] = metrics["top1"]
        report[f"{name}_tiles_per_s"] = speed
    return report


def format_table(report: dict[str, Any]) -> str:
    """fp32 against int8: validation top-1, tiles per second at batch 32 per thread count, file size."""
    speeds = [f"tiles/s {threads} thr" for threads in THREADS]
    lines = [f"{'model':6} {'val top-1':>10} " + " ".join(f"{h:>14}" for h in speeds) + f" {'size MB':>9}"]
    for name in ("fp32", "int8"):
        rate = report[f"{name}_tiles_per_s"]
        cells = " ".join(f"{rate[f'threads_{threads}']:14.1f}" for threads in THREADS)
        top1 = f"{100 * report[f'{name}_val_top1']:9.2f}%"
        lines.append(f"{name:6} {top1:>10} {cells} {report[f'{name}_mb']:9.1f}")
    lines.append(f"({report['val_images']} validation images, {report['calibration_images']} calibration images)")
    return "\n".join(lines)


class _Feeds(CalibrationDataReader):
    """Hands the calibration batches to onnxruntime, one input dict at a time."""

    def __init__(self, input_name: str, batches: list[np.ndarray]) -> None:
        self._feeds = iter([{input_name: batch} for batch in batches])

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next batch, or None when all were given."""
        return next(self._feeds, None)


def _quantize_file(model: Path, out: Path, batches: list[np.ndarray], scratch: Path) -> None:
    # quant_pre_process infers every tensor's shape and folds constants, so that no tensor
    # is left unquantised for want of a known shape.
    prepared = scratch / "prepared.onnx"
    quant_pre_process(str(model), str(prepared))
    graph = onnx.load(str(prepared), load_external_data=False).graph
    quantize_static(
        str(prepared),
        str(out),
        _Feeds(graph.input[0].name, batches),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        reduce_range=False,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.Percentile,
        nodes_to_exclude=edge_layers(graph),
    )


def edge_layers(graph: onnx.GraphProto) -> list[str]:
    """Names of the weighted layers that read the network's input or write its output."""
    ends = {value.name for value in graph.input} | {value.name for value in graph.output}
    return [node.name for node in graph.node if node.op_type in WEIGHTED_OPS and ends & {*node.input, *node.output}]


def _tiles_per_second(scorer: Scorer, scratch: Path, threads: int) -> float:
    return round(1000 / measure_latency(scorer, scratch, threads=threads)["ms_per_tile_batch32"], 1)


def _megabytes(path: Path) -> float:
    # Rounded: the int8 file grows by the few bytes of this very number when the card is embedded.
    return round(path.stat().st_size / 1e6, 2)


def _metadata(path: Path) -> dict[str, str]:
    graph = onnx.load(str(path), load_external_data=False)
    return {prop.key: prop.value for prop in graph.metadata_props}
