"""The GPU path on the CPU: a data folder packed in parts, carried one part per call, and the
prepared script that unpacks it and runs the ablation with another Python, as on a GPU machine."""

from __future__ import annotations

import filecmp
import os
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from tests.training.test_ablation import recipe_subset, with_split_csvs
from tests.training.test_train import make_class_tree
from training.cli import main
from training.data.pack import MIB, pack_folder, part_file_name, unpack
from training.errors import DataError

REPO = Path(__file__).resolve().parents[2]
VENV_PYTHON = REPO / ".venv/bin/python"


def same_tree(left: Path, right: Path) -> bool:
    """Every file under both folders, compared byte for byte."""
    files = sorted(p.relative_to(left).as_posix() for p in left.rglob("*") if p.is_file())
    theirs = sorted(p.relative_to(right).as_posix() for p in right.rglob("*") if p.is_file())
    match, mismatch, errors = filecmp.cmpfiles(left, right, files, shallow=False)
    return files == theirs and not mismatch and not errors and len(match) == len(files)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return with_split_csvs(make_class_tree(tmp_path / "tiny_rgb", per_class=12, size=32))


def test_a_folder_packed_in_parts_unpacks_byte_for_byte(tree, tmp_path):
    total = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())
    parts = pack_folder(tree, tmp_path / "pack", part_mib=total / 3 / MIB)

    assert [p.name for p in parts] == [part_file_name("tiny_rgb", k, len(parts)) for k in range(1, len(parts) + 1)]
    assert len(parts) >= 3
    unpacked = unpack(tmp_path / "pack", tmp_path / "there")
    assert unpacked == tmp_path / "there/tiny_rgb"
    assert same_tree(tree, unpacked)
    # Reused, not written again, when the same pack comes back.
    before = (unpacked / "train.csv").stat().st_mtime_ns
    assert unpack(tmp_path / "pack", tmp_path / "there") == unpacked
    assert (unpacked / "train.csv").stat().st_mtime_ns == before


def test_a_missing_mixed_or_corrupt_part_is_named_and_leaves_no_folder(tree, tmp_path):
    parts = pack_folder(tree, tmp_path / "pack", part_mib=0.004)
    parts[1].unlink()
    with pytest.raises(DataError, match=f"lacks 1 of {len(parts)} parts: bring {parts[1].name}"):
        unpack(tmp_path / "pack", tmp_path / "there")

    other = make_class_tree(tmp_path / "other" / "tiny_rgb", per_class=3, size=32, seed=5)
    (tmp_path / "pack" / "other").mkdir()
    [extra] = pack_folder(other, tmp_path / "pack" / "other", part_mib=10)
    extra.rename(tmp_path / "pack" / "stray.part1-of-1.npz")
    with pytest.raises(DataError, match="mixes parts of different packs"):
        unpack(tmp_path / "pack", tmp_path / "there")

    parts = pack_folder(tree, tmp_path / "fresh", part_mib=10)
    with np.load(parts[0]) as archive:
        arrays = dict(archive)
    arrays["data"] = arrays["data"].copy()
    arrays["data"][100] ^= 0xFF  # one flipped byte in one image
    np.savez(parts[0], **arrays)
    with pytest.raises(DataError, match="does not reproduce the folder"):
        unpack(tmp_path / "fresh", tmp_path / "there")
    assert not (tmp_path / "there").exists() or not any((tmp_path / "there").iterdir())


def test_pack_and_unpack_answer_mistakes_in_one_line(tmp_path, capsys):
    assert main(["pack", "--data", str(tmp_path / "absent"), "--out", str(tmp_path / "pack")]) == 2
    assert "is not a folder; give --data the data folder to pack" in capsys.readouterr().err
    assert main(["unpack", "--pack", str(tmp_path), "--out", str(tmp_path / "there")]) == 2
    assert "holds no pack parts" in capsys.readouterr().err


def run_gpu_script(tmp_path: Path, carried: list[Path], **extra: str) -> subprocess.CompletedProcess:
    """scripts/gpu_ablation.sh as a device call runs it: the carried parts in ./.pack-like PACK."""
    pack = tmp_path / "carried"
    for old in pack.glob("*.npz"):
        old.unlink()  # a call carries only what it names
    pack.mkdir(exist_ok=True)
    for part in carried:
        (pack / part.name).write_bytes(part.read_bytes())
    env = {
        **os.environ,
        # The machine's own Python, given as a path: scripts/ablation.sh then runs no set-up.
        "PY": str(VENV_PYTHON),
        "PACK": str(pack),
        "STORE": str(tmp_path / "store"),
        "DATA_ROOT": str(tmp_path / "data_there"),
        "RUNS": str(tmp_path / "runs"),
        "OUT": str(tmp_path / "out"),
        "STUDENT": "g_ghost_regnetx_032",
        "EPOCHS": "1",
        "TEACHER_EPOCHS": "1",
        "SWEEP_EPOCHS": "1",
        "RECIPES": str(
            recipe_subset(
                tmp_path / "recipes", REPO / "recipes/gpu", ["none_seed0", "kd_seed0", "dkd_seed0", "sweep_beta2"]
            )
        ),
        "ARGS": f"--image-size 32 --batch-size 8 --workers 0 --lr 0.01 --gsd 10 --cache-dir {tmp_path / 'cache'}",
        "OMP_NUM_THREADS": "1",
        **extra,
    }
    return subprocess.run(
        ["bash", "scripts/gpu_ablation.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=1500
    )


@pytest.mark.slow
@pytest.mark.timeout(1800)  # tiny trainings, each a new process: a few minutes on 2 quiet cores
@pytest.mark.skipif(not VENV_PYTHON.exists(), reason="needs the project's .venv (make setup)")
def test_the_gpu_script_gathers_the_parts_call_by_call_then_runs_and_resumes_the_ablation(tree, tmp_path):
    total = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())
    parts = pack_folder(tree, tmp_path / "pack", part_mib=0.6 * total / MIB)
    assert len(parts) == 2

    first = run_gpu_script(tmp_path, parts[:1])
    assert first.returncode == 2
    assert f"bring {parts[1].name}" in first.stderr

    # The call that completes the pack starts the ablation; the time limit stops it, keeping what was done.
    stopped = run_gpu_script(tmp_path, parts[1:], TIME_LIMIT="1")
    assert stopped.returncode == 3, stopped.stdout + stopped.stderr
    assert "run the same command again on this warm machine to resume" in stopped.stdout
    assert same_tree(tree, tmp_path / "data_there/tiny_rgb")

    finished = run_gpu_script(tmp_path, [])
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    assert "| student_dkd_int8" in finished.stdout
    out = tmp_path / "out"
    assert (out / "g_ghost_regnetx_032_dkd_int8.onnx").is_file()
    assert (out / "g_ghost_regnetx_032_dkd_int8.md").is_file()
    with tarfile.open(out / "ablation_small.tar.gz") as archive:
        kept = set(archive.getnames())
    assert {"./results.md", "./beta_sweep.md", "./teacher/best.soft_labels.npz", "./ablation.log"} <= kept
    assert not any(name.endswith((".pt", ".onnx")) for name in kept)
