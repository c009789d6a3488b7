"""Training's writes go through core/atomic.py: a failed write is one line and keeps the earlier file."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.training.test_train import SMALL
from training import cli
from training import export as export_module
from training.checkpoint import save_checkpoint
from training.data import cache
from training.errors import TrainingError

REPO = Path(__file__).resolve().parents[2]


def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _export(checkpoint: Path, out: Path, *extra: str) -> int:
    return cli.main(["export", "--checkpoint", str(checkpoint), "--out", str(out), "--gsd", "10", *extra])


def _one_line(capfd) -> str:
    err = capfd.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err


@pytest.mark.slow
def test_export_to_a_full_disk_is_one_line_and_keeps_the_earlier_model(checkpoint, tmp_path, capfd, monkeypatch):
    out = tmp_path / "model.onnx"
    assert _export(checkpoint, out) == 0
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    assert set(before) == {"model.onnx", "model.md"}
    capfd.readouterr()
    monkeypatch.setattr(export_module.onnx, "save", _full_disk)  # the card is embedded: the model file is written
    assert _export(checkpoint, out, "--overwrite") == 2
    line = _one_line(capfd)
    assert f"cannot write {out}: No space left on device" in line and "--out" in line
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before  # no part left, nothing changed


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; the full-disk test covers this")
def test_export_to_a_read_only_folder_is_one_line(checkpoint, tmp_path, capfd):
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        assert _export(checkpoint, folder / "model.onnx") == 2
        assert "Permission denied" in _one_line(capfd) and list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


@pytest.mark.slow
def test_module_entry_point_export_failure_is_one_line(checkpoint, tmp_path):
    """`python -m training export` itself: a file in the way of the output folder (fails for root too)."""
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    command = [sys.executable, "-m", "training", "export", "--checkpoint", str(checkpoint), "--gsd", "10"]
    command += ["--out", str(blocker / "model.onnx")]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"error: Cannot write the model (--out) {blocker / 'model.onnx'}: ") and "is a file" in line


def test_checkpoint_write_failure_is_a_training_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "save", _full_disk)
    with pytest.raises(TrainingError, match="cannot write .*last.pt: No space left on device"):
        save_checkpoint({"architecture": SMALL}, tmp_path / "last.pt")
    assert list(tmp_path.iterdir()) == []


def test_dataset_cache_that_cannot_be_written_costs_only_speed(tmp_path, monkeypatch):
    images = np.zeros((2, 4, 4, 3), np.uint8)
    monkeypatch.setattr(cache.np, "save", _full_disk)
    cache._write(tmp_path / "tree.npy", tmp_path / "tree.json", images, {"format": 1})  # logs, does not raise
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    cache._write(tmp_path / "tree.npy", tmp_path / "tree.json", images, {"format": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tree.json", "tree.npy"]
    np.testing.assert_array_equal(np.load(tmp_path / "tree.npy"), images)


def test_training_curves_and_logs_are_published_whole(tmp_path, monkeypatch):
    # A crash while a figure is being written (a full disk) keeps the last epoch's curves and
    # leaves no half-written or temporary file in the run folder.
    import matplotlib.figure

    from training.train import write_logs

    history = [{"epoch": 1, "lr": 0.1, "train_loss": 1.0, "train_acc": 0.5, "val_loss": 1.1, "val_acc": 0.4}]
    write_logs(history, tmp_path, "student")
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    assert set(before) == {"log.csv", "log.json", "curves.png"}

    def half_written(self, fname, **kwargs):
        Path(fname).write_bytes(b"half a PNG")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", half_written)
    with pytest.raises(OSError, match="No space"):
        write_logs([*history, {**history[0], "epoch": 2}], tmp_path, "student")
    assert (tmp_path / "curves.png").read_bytes() == before["curves.png"]
    assert {path.name for path in tmp_path.iterdir()} == set(before)
