"""Fixtures shared by the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.training.test_train import SMALL
from training.checkpoint import save_checkpoint
from training.models import build_model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A checkpoint of an untrained small G-Ghost with everything `export` reads (one per module)."""
    names = ["Water", "Forest", "Crop"]
    config = {"stage": "student", "seed": 0, "epochs": 1, "batch_size": 4, "momentum": 0.9, "weight_decay": 5e-4}
    state = {
        "architecture": SMALL,
        "num_classes": len(names),
        "model_options": {},
        "state_dict": build_model(SMALL, len(names)).state_dict(),
        "class_names": names,
        "input_size": 32,
        "image_size": 32,
        "mean": [0.4, 0.4, 0.4],
        "std": [0.2, 0.2, 0.2],
        "best_epoch": 1,
        "best_acc": 0.5,
        "config": config,
        "meta": {},
    }
    return save_checkpoint(state, tmp_path_factory.mktemp("checkpoint") / "best.pt")
