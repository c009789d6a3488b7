"""Checkpoints: plain dicts of state_dicts and primitives, written atomically, read with weights_only.

A checkpoint carries everything needed to rebuild its model without the command line that made
it: the architecture name and options, class names, input size and normalisation.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rs_ghost_qgis.core.errors import RsGhostError
from training.models import MODEL_NAMES, build_model

FORMAT = 1
# Keys every checkpoint has; training checkpoints add optimiser, scheduler and RNG states.
MODEL_KEYS = ("format", "architecture", "num_classes", "model_options", "state_dict", "class_names", "input_size")


class TrainingError(RsGhostError):
    """A training, evaluation or export request that cannot be carried out as given."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically (a crash never leaves a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(suffix=".pt.tmp", dir=path.parent)
    os.close(handle)
    try:
        torch.save({"format": FORMAT, **state}, tmp_name)
        Path(tmp_name).replace(path)
    finally:
        Path(tmp_name).unlink(missing_ok=True)
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


def make_model(name: str, num_classes: int, options: dict[str, Any] | None = None) -> nn.Module:
    """``build_model`` with a user-facing error for unknown names."""
    if name not in MODEL_NAMES:
        raise TrainingError(f"unknown model '{name}'; choose one of: {', '.join(MODEL_NAMES)}.")
    return build_model(name, num_classes, **(options or {}))


def model_from_checkpoint(state: dict[str, Any]) -> nn.Module:
    """Rebuild the checkpoint's model with its weights, in eval mode on the CPU."""
    model = make_model(state["architecture"], state["num_classes"], state["model_options"])
    model.load_state_dict(state["state_dict"])
    return model.eval()
