"""The teacher's soft labels: its logits for every training image in each of the 8 views, once.

A KD or DKD student then reads the teacher's answer for the view it is shown instead of running
the teacher: a VGG-16 forward pass costs more than the student's whole training step. The
logits are computed on the clean view; radiometric shifts go on the student's input only, so
the student learns to give the teacher's clean answer under a shifted radiometry.

The file (``.npz``, arrays only, read without pickle) is keyed to its teacher (the checkpoint's
sha256) and to the data (a sha256 of the training images and labels in their order). A stale
file is never used: found next to a teacher checkpoint it is recomputed; named explicitly with
``--soft-labels`` it is refused. Logits are stored as float16 (about 0.01 off at |z| = 30,
nothing at temperature 4): 3 MB for EuroSAT's 18,900 images.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rs_ghost_qgis.core.atomic import atomic_path
from training.data import VIEWS, ImageArrays, dihedral, make_loader
from training.errors import TrainingError

FORMAT = 1
SUFFIX = ".soft_labels.npz"


@dataclass(frozen=True)
class SoftLabels:
    """Teacher logits (N, 8, C) for the training images, and where they came from."""

    logits: torch.Tensor
    meta: dict[str, Any]

    def __call__(self, indices: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
        """The teacher's fp32 logits for image ``indices[i]`` in view ``views[i]``."""
        return self.logits[indices, views].float()


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def data_fingerprint(arrays: ImageArrays, class_names: list[str]) -> str:
    """sha256 of the training images, labels and class names, in order: the data the logits belong to."""
    digest = hashlib.sha256(json.dumps(list(class_names)).encode())
    digest.update(str(arrays.images.shape).encode())
    digest.update(np.ascontiguousarray(arrays.images).data)
    digest.update(np.ascontiguousarray(arrays.labels, dtype=np.int64).data)
    return digest.hexdigest()


def default_path(teacher_checkpoint: str | Path) -> Path:
    """Where the soft labels of a teacher checkpoint live: beside it (``best.pt`` -> ``best.soft_labels.npz``)."""
    checkpoint = Path(teacher_checkpoint)
    return checkpoint.with_name(checkpoint.stem + SUFFIX)


def compute(teacher, arrays: ImageArrays, batch_size: int = 128, progress=None) -> np.ndarray:
    """float16 logits (N, 8, C) of ``teacher`` (0..1 images -> logits) for every image in every view."""
    outputs = []
    loader = make_loader(arrays, batch_size=batch_size, train=False)
    for batch in loader:
        views = [teacher(dihedral(batch.images.clone(), torch.full_like(batch.labels, v))) for v in range(VIEWS)]
        outputs.append(torch.stack(views, dim=1).float().numpy().astype(np.float16))
        if progress is not None:
            progress(len(batch.labels))
    return np.concatenate(outputs) if outputs else np.zeros((0, VIEWS, 0), np.float16)


def save(path: str | Path, logits: np.ndarray, meta: dict[str, Any]) -> Path:
    """Write the logits and their key atomically."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, logits=logits, meta=np.array(json.dumps({"format": FORMAT, **meta})))
    return path


def load(path: str | Path) -> SoftLabels:
    """Read a soft-label file without unpickling anything."""
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"soft labels {path} do not exist; check --soft-labels, or give --teacher-checkpoint.")
    try:
        with np.load(path, allow_pickle=False) as archive:
            logits, meta = archive["logits"], json.loads(str(archive["meta"]))
    except (OSError, ValueError, KeyError) as error:
        raise TrainingError(f"{path} is not a soft-label file of this project ({type(error).__name__}).") from None
    if logits.ndim != 3 or logits.shape[1] != VIEWS or meta.get("format", 0) > FORMAT:
        raise TrainingError(f"{path} is not a soft-label file this version reads; recompute it from the teacher.")
    return SoftLabels(torch.from_numpy(logits), meta)


def stale_reason(labels: SoftLabels, fingerprint: str, teacher_sha256: str | None) -> str | None:
    """Why ``labels`` do not belong to this data (and teacher, when known), or None when they do."""
    if labels.meta.get("data_sha256") != fingerprint:
        return "they were computed for other training images (data, split, image size or order differ)"
    if teacher_sha256 is not None and labels.meta.get("teacher_sha256") != teacher_sha256:
        return "they were computed by another teacher checkpoint"
    return None
