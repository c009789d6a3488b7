"""Export a trained classifier to one self-describing ONNX file (weights + model card).

The file is checked against torch before it is written: onnxruntime must reproduce the torch
logits on a batch, or nothing is written. Files are written atomically (core/atomic.py); a folder
that cannot be written or a full disk is one TrainingError naming ``--out`` (errors.cannot_write).
``check_model_out`` applies the plugin's output rule (core/outputs.py) to the model a training
command writes and the card beside it: never an input, an existing file only with ``--overwrite``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from rs_ghost_qgis.core import atomic
from rs_ghost_qgis.core.errors import OutputError
from rs_ghost_qgis.core.model.card import ModelCard
from rs_ghost_qgis.core.options import face_message
from rs_ghost_qgis.core.outputs import check_folder, check_output_file
from training.errors import ExportError, TrainingError, cannot_write

OPSET = 17
MAX_LOGIT_DIFFERENCE = 1e-4
FEATURES_OUTPUT = "features"  # the second output: the input of the last linear layer (rs_ghost_qgis adapt)


class WithFeatures(torch.nn.Module):
    """``model`` with a second output: the vector its last ``nn.Linear`` receives (the pooled features).

    ``python -m rs_ghost_qgis adapt`` fits a new classifier on these; the plugin keeps reading
    the first output (the logits) for classifying.
    """

    def __init__(self, model: torch.nn.Module, last: torch.nn.Linear) -> None:
        super().__init__()
        self.model = model
        self.last = last

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, features) for a batch."""
        seen: list[torch.Tensor] = []
        handle = self.last.register_forward_pre_hook(lambda _module, inputs: seen.append(inputs[0]))
        try:
            logits = self.model(x)
        finally:
            handle.remove()
        return logits, torch.flatten(seen[-1], 1)


def with_features(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` wrapped to output its features too (WithFeatures), or as it is when it has no linear layer."""
    linears = [module for module in model.modules() if isinstance(module, torch.nn.Linear)]
    return WithFeatures(model, linears[-1]) if linears else model


def export_onnx(model: torch.nn.Module, card: ModelCard, path: str | Path, *, seed: int = 0) -> Path:
    """Write ``model`` with ``card`` embedded to ``path`` (opset 17, dynamic batch, one file).

    The model takes the normalised input the card describes: (N, channels, input_size,
    input_size) float32. Raises ExportError when onnxruntime's logits differ from torch's by
    more than 1e-4 on a random batch.
    """
    path = Path(path)
    model = model.float().eval().cpu()
    sample = torch.randn(
        2, len(card.bands), card.input_size, card.input_size, generator=torch.Generator().manual_seed(seed)
    )
    try:
        with atomic.atomic_path(path) as tmp:
            _trace(model, sample, tmp)
            embed_card(tmp, card)
            _check_against_torch(model, sample, tmp)
    except OSError as error:
        raise cannot_write(path, error) from None
    return path


def check_model_out(out: str | Path, inputs: Mapping[str, str | Path | None], overwrite: bool) -> Path:
    """``out`` as a Path, once it and its .md card may be written (core/outputs.py), worded for the command line.

    ``inputs`` maps each input's flag to its value, e.g. {"--model": "m.onnx"}: none of them is
    ever replaced; an existing model or card only with ``overwrite``. Call it before the work.
    """
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise TrainingError(
            f"--out {out} must end in .onnx: the command writes an ONNX model, e.g. --out {out.stem}.onnx."
        )
    try:
        check_output_file(out, "the model (--out)", inputs, overwrite)
        check_output_file(out.with_suffix(".md"), "the model card beside --out", inputs, overwrite)
        check_folder(out, "the model (--out)")
    except OutputError as error:
        raise OutputError(face_message(error, "cli")) from None
    return out


def write_model(model: torch.nn.Module, card: ModelCard, path: str | Path) -> Path:
    """Export ``model`` to ``path`` (see export_onnx) and its card as markdown beside it."""
    path = export_onnx(model, card, path)
    try:
        atomic.write_text(path.with_suffix(".md"), card.to_markdown())
    except OSError as error:
        raise cannot_write(path.with_suffix(".md"), error) from None
    return path


def _trace(model: torch.nn.Module, sample: torch.Tensor, path: Path) -> None:
    # The TorchScript exporter writes a single self-contained file with a dynamic batch axis,
    # and every operator of our models (grouped conv, slice, concat, pooling) maps to opset 17.
    # The logits stay the first output; the pooled features follow (adapt reads them).
    model = with_features(model).eval()  # a new wrapper starts in training mode, and export restores it
    outputs = ["logits", FEATURES_OUTPUT] if isinstance(model, WithFeatures) else ["logits"]
    with torch.no_grad():
        torch.onnx.export(
            model,
            (sample,),
            str(path),
            input_names=["input"],
            output_names=outputs,
            dynamic_axes={"input": {0: "batch"}, **{name: {0: "batch"} for name in outputs}},
            opset_version=OPSET,
            dynamo=False,
        )


def embed_card(path: Path, card: ModelCard) -> None:
    """Replace the metadata_props of the ONNX file at ``path`` with ``card``.

    The file is rewritten through a temporary beside it and renamed into place: a crash or a full
    disk leaves the model as it was, never half a model.
    """
    graph = onnx.load(str(path))
    del graph.metadata_props[:]
    for key, value in card.to_metadata().items():
        graph.metadata_props.add(key=key, value=value)
    graph.producer_name = "rs_ghost_qgis training"
    onnx.checker.check_model(graph)
    with atomic.atomic_path(path) as tmp:
        onnx.save(graph, str(tmp), save_as_external_data=False)


def _check_against_torch(model: torch.nn.Module, sample: torch.Tensor, path: Path) -> None:
    with torch.no_grad():
        expected = model(sample).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    actual = session.run(None, {session.get_inputs()[0].name: sample.numpy()})[0]
    # fp32 rounding grows with the logits' size: compare relative to the largest (at least 1).
    scale = max(1.0, float(np.max(np.abs(expected))))
    difference = float(np.max(np.abs(actual - expected))) / scale
    if not difference <= MAX_LOGIT_DIFFERENCE:
        raise ExportError(
            f"onnxruntime logits differ from torch by {difference:.2e} of the largest logit "
            f"(> {MAX_LOGIT_DIFFERENCE:g}); the ONNX file was not written."
        )
