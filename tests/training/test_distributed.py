"""The training command under torchrun: 2 CPU processes, DistributedDataParallel over gloo."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.training.test_train import make_class_tree, train_args
from training.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow  # trains under torchrun in two processes

REPO = Path(__file__).resolve().parents[2]


def test_train_runs_in_two_processes_and_only_rank_0_writes(tmp_path):
    tree = make_class_tree(tmp_path / "tree")
    out = tmp_path / "ddp"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "training"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(
        launcher + train_args(tree, out, "--device", "cpu", epochs=1),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("epoch 1/1:") == 1  # rank 1 prints nothing
    state = load_checkpoint(out / "last.pt")
    assert state["meta"]["world_size"] == 2 and "2 process(es)" in state["meta"]["hardware"]
    # 48 training images shared by 2 ranks in batches of 8: each takes 3 steps, 24 images.
    assert state["lr"] == 0.01 and state["epoch"] == 1
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert len(rows) == 1 and 0 <= float(rows[0]["val_acc"]) <= 1
    expected = ["best.pt", "config.toml", "curves.png", "last.pt", "log.csv", "log.json"]
    assert sorted(path.name for path in out.iterdir()) == expected
