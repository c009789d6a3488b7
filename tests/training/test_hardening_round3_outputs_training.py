"""Issue 30, output safety of training's commands: none replaces an input or an unrelated file.

The rule lives in core/outputs.py (tests/core/test_hardening_round3_outputs.py checks the plugin's
commands); every case here runs ``python -m training`` by its ``main``, as a user would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from rs_ghost_qgis.core.model.runtime import load_model
from tests.core.test_hardening_round3_outputs import _error_line, _snapshot, _spellings
from tests.tiny_model import tiny_card
from tests.training.test_train import SMALL, make_class_tree
from training import cli as training_cli
from training import commands as training_commands
from training import l2a
from training import quantize as quantize_module
from training.errors import TrainingError
from training.export import export_onnx
from training.models import build_model


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return make_class_tree(tmp_path_factory.mktemp("round3") / "tree", per_class=6)


@pytest.fixture(scope="module")
def fp32(tree) -> Path:
    torch.manual_seed(0)
    card = dataclasses.replace(tiny_card(), architecture=SMALL, class_names=sorted(("Water", "Forest", "Crop")))
    return export_onnx(build_model(SMALL, card.num_classes), card, tree.parent / "fp32" / "model.onnx")


def _quantize(model: Path, tree: Path, out: Path, *extra: str) -> int:
    data = ["--data", str(tree), "--cache-dir", str(tree.parent / "cache"), "--calibration-images", "8"]
    return training_cli.main(["quantize", "--model", str(model), *data, "--out", str(out), *extra])


def _export(checkpoint: Path, out: Path, *extra: str) -> int:
    return training_cli.main(["export", "--checkpoint", str(checkpoint), "--out", str(out), "--gsd", "10", *extra])


def _l2a_fit(model: Path, out: Path, *extra: str) -> int:
    # The refusals come before anything is read: the data and patches need not exist.
    data = ["--data", "no_data", "--patches", "no_patches.npz"]
    return training_cli.main(["l2a-fit", "--model", str(model), *data, "--out", str(out), *extra])


@pytest.mark.parametrize("overwrite", [(), ("--overwrite",)])
def test_quantize_never_replaces_its_own_model(tree, fp32, tmp_path, capsys, overwrite):
    # `quantize --out` equal to `--model` replaced the fp32 model it read, without a word.
    before = fp32.read_bytes()
    for out in _spellings(fp32, tmp_path):
        assert _quantize(fp32, tree, out, *overwrite) == 2
        line = _error_line(capsys)
        assert "--out" in line and "--model" in line and "never replaces an input" in line, line
        assert "--overwrite" in line
    assert fp32.read_bytes() == before
    assert sorted(p.name for p in fp32.parent.iterdir()) == ["model.onnx"]


def test_quantize_keeps_an_existing_evaluation_folder_without_overwrite(tree, fp32, tmp_path, capsys):
    folder = tmp_path / "new_evaluation"
    (folder / "int8").mkdir(parents=True)
    (folder / "int8" / "metrics.json").write_text("{}")
    assert _quantize(fp32, tree, tmp_path / "new.onnx") == 2
    assert f"{folder} (the evaluation beside --out) already exists; use --overwrite" in _error_line(capsys)
    assert _snapshot(tmp_path) == {"new_evaluation/int8/metrics.json": b"{}"}


@pytest.mark.slow
def test_quantize_replaces_an_existing_file_only_with_overwrite(tree, fp32, tmp_path, capsys, monkeypatch):
    # quantize replaced an unrelated .onnx at --out; it had no --overwrite at all.
    out = tmp_path / "mine.onnx"
    out.write_bytes(b"someone's model")
    assert _quantize(fp32, tree, out) == 2
    line = _error_line(capsys)
    assert f"{out} already exists; use --overwrite" in line, line
    assert _snapshot(tmp_path) == {"mine.onnx": b"someone's model"}

    fast = functools.partial(quantize_module.measure_latency, seconds=0)
    monkeypatch.setattr(quantize_module, "measure_latency", fast)
    with contextlib.redirect_stdout(io.StringIO()):
        assert _quantize(fp32, tree, out, "--overwrite") == 0
    assert out.read_bytes() != b"someone's model" and (tmp_path / "mine.md").exists()

    # Its card beside the model is an output too: an unrelated one stops a new --out.
    (tmp_path / "other.md").write_text("notes")
    assert _quantize(fp32, tree, tmp_path / "other.onnx") == 2
    assert "other.md already exists; use --overwrite" in _error_line(capsys)
    assert (tmp_path / "other.md").read_text() == "notes" and not (tmp_path / "other.onnx").exists()

    # Quantising the int8 model crashed in onnx's checker.
    assert _quantize(out, tree, tmp_path / "twice.onnx") == 2
    line = _error_line(capsys)
    assert f"--model {out} is already int8" in line and "QuantizeLinear" in line, line
    assert not (tmp_path / "twice.onnx").exists()


@pytest.mark.parametrize("overwrite", [(), ("--overwrite",)])
def test_export_never_replaces_its_checkpoint(checkpoint, tmp_path, capsys, overwrite):
    before = checkpoint.read_bytes()
    link = tmp_path / "model.onnx"
    link.symlink_to(checkpoint)
    assert _export(checkpoint, link, *overwrite) == 2
    line = _error_line(capsys)
    assert "--out" in line and "--checkpoint" in line and "never replaces an input" in line, line
    assert checkpoint.read_bytes() == before and link.is_symlink()


def test_export_into_a_read_only_file_system_is_refused_before_the_work(checkpoint, tmp_path, capsys, monkeypatch):
    # The folder is probed before the checkpoint is read; quantize and l2a-fit named a temporary there.
    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(Path, "touch", read_only)
    monkeypatch.setattr(training_commands, "load_checkpoint", lambda path: pytest.fail("read before the check"))
    assert _export(checkpoint, tmp_path / "m.onnx") == 2
    line = _error_line(capsys)
    assert f"Cannot write the model (--out) into {tmp_path}: Read-only file system." in line, line
    assert list(tmp_path.iterdir()) == []


def test_quantize_never_writes_into_its_training_data(tree, fp32, capsys):
    # The int8 model, its card and its evaluation folder (PNGs in sub-folders) landed in --data,
    # where the next run would read them as images of a class.
    before = _snapshot(tree)
    assert _quantize(fp32, tree, tree / "int8.onnx") == 2
    line = _error_line(capsys)
    assert f"lies inside --data {tree}" in line and "a folder the command reads" in line, line
    assert _snapshot(tree) == before


def test_export_replaces_an_existing_model_only_with_overwrite(checkpoint, tmp_path, capsys):
    # `training export` replaced an unrelated existing .onnx.
    out = tmp_path / "model.onnx"
    out.write_bytes(b"someone's model")
    assert _export(checkpoint, out) == 2
    assert f"{out} already exists; use --overwrite" in _error_line(capsys)
    assert _snapshot(tmp_path) == {"model.onnx": b"someone's model"}
    with contextlib.redirect_stdout(io.StringIO()):
        assert _export(checkpoint, out, "--overwrite") == 0
    assert out.read_bytes() != b"someone's model" and sorted(_snapshot(tmp_path)) == ["model.md", "model.onnx"]


@pytest.mark.parametrize("overwrite", [(), ("--overwrite",)])
def test_l2a_fit_never_replaces_its_model(fp32, tmp_path, capsys, overwrite):
    # Its help said --out "may be --model": the rule now holds there too.
    before = fp32.read_bytes()
    for out in _spellings(fp32, tmp_path):
        assert _l2a_fit(fp32, out, *overwrite) == 2
        line = _error_line(capsys)
        assert "--out" in line and "--model" in line and "never replaces an input" in line, line
    assert fp32.read_bytes() == before


def test_l2a_fit_writes_a_new_model_with_its_mapping_and_card(tree, fp32, tmp_path, capsys):
    # The happy path of the write that moved to l2a.write_fitted.
    patches = tmp_path / "patches.npz"
    values = np.random.default_rng(0).uniform(100, 3000, size=(6, 4, 8, 8)).astype(np.float32)
    np.savez(patches, patches=values, bands=np.array(["B02", "B03", "B04", "B08"]))
    out = tmp_path / "l2a" / "model_l2a.onnx"
    data = ["--data", str(tree), "--cache-dir", str(tree.parent / "cache"), "--patches", str(patches)]
    with contextlib.redirect_stdout(io.StringIO()):
        assert training_cli.main(["l2a-fit", "--model", str(fp32), *data, "--out", str(out)]) == 0
    card = load_model(out).card
    assert set(card.product_mappings["l2a"]["bands"]) == set(load_model(fp32).card.bands)
    assert "l2a" in out.with_suffix(".md").read_text().lower()
    assert sorted(p.name for p in out.parent.iterdir()) == ["model_l2a.md", "model_l2a.onnx"]


def test_l2a_fit_on_a_full_disk_is_one_line_and_leaves_nothing(fp32, tmp_path, monkeypatch):
    # It wrote through atomic_path without catching OSError: a full disk was a traceback.
    def full_disk(source, target):
        Path(target).write_bytes(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))

    monkeypatch.setattr(l2a.shutil, "copyfile", full_disk)
    card = load_model(fp32).card
    with pytest.raises(TrainingError, match=f"cannot write .*: {os.strerror(errno.ENOSPC)}.*free disk space"):
        l2a.write_fitted(fp32, card, tmp_path / "l2a.onnx")
    assert list(tmp_path.iterdir()) == []


def test_l2a_fit_replaces_an_existing_file_only_with_overwrite(fp32, tmp_path, capsys):
    out = tmp_path / "l2a.onnx"
    out.write_bytes(b"kept")
    assert _l2a_fit(fp32, out) == 2
    assert f"{out} already exists; use --overwrite" in _error_line(capsys)
    assert out.read_bytes() == b"kept"


def test_report_never_writes_its_table_into_a_folder_it_summarises(tmp_path, capsys):
    folder = tmp_path / "evaluation"
    folder.mkdir()
    (folder / "metrics.json").write_text("{}")
    assert training_cli.main(["report", str(folder), "--out", str(folder / "table.md")]) == 2
    error = capsys.readouterr().err
    assert "inside evaluation folder #1" in error and "--out" in error and len(error.strip().splitlines()) == 1
    assert sorted(path.name for path in folder.iterdir()) == ["metrics.json"]
