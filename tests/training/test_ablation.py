"""`make ablation` end to end on a tiny tree: every stage, the tables, and a rerun that resumes."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.training.test_train import make_class_tree
from tests.training.weak_data import TREE_COLORS, weak_npz

pytestmark = pytest.mark.slow  # a dozen tiny trainings, each a new process

REPO = Path(__file__).resolve().parents[2]


def with_split_csvs(root: Path) -> Path:
    """EuroSAT's convention: train.csv and validation.csv (,Filename,Label,ClassName) in the root."""
    names = sorted(path.name for path in root.iterdir() if path.is_dir())
    rows = {"train": [], "validation": []}
    for label, name in enumerate(names):
        for index, path in enumerate(sorted((root / name).glob("*.png"))):
            split = "validation" if index % 4 == 0 else "train"
            rows[split].append([len(rows[split]), f"{name}/{path.name}", label, name])
    for split, lines in rows.items():
        with open(root / f"{split}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["", "Filename", "Label", "ClassName"])
            writer.writerows(lines)
    return root


def recipe_subset(folder: Path, source: Path, names: list[str]) -> Path:
    """A RECIPES folder holding some of ``source``'s recipe files, unchanged."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(source / f"{name}.toml", folder / f"{name}.toml")
    return folder


def run_ablation(tree: Path, out: Path, **extra: str) -> subprocess.CompletedProcess:
    rows = ["none_seed0", "kd_seed0", "dkd_seed0", "sweep_beta1", "sweep_beta8"]  # the shipped files, not seed 1
    env = {
        **os.environ,
        "DATA": str(tree),
        "OUT": str(out),
        "RECIPES": str(recipe_subset(out.parent / "recipes", REPO / "recipes/ablation", rows)),
        "STUDENT": "g_ghost_regnetx_032",
        "EPOCHS": "1",
        "TEACHER_EPOCHS": "1",
        "SWEEP_EPOCHS": "1",
        # The rows' weak supervision (recipes/ablation) reads these tiny L2A patches instead.
        "ARGS": f"--image-size 32 --batch-size 8 --lr 0.01 --gsd 10 --cache-dir {tree.parent / 'cache'} "
        f"--weak-patches {weak_npz(tree.parent / 'weak.npz')} --weak-batch 3",
        "OMP_NUM_THREADS": "1",
        **extra,
    }
    return subprocess.run(
        ["bash", "scripts/ablation.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=1500
    )


@pytest.mark.timeout(1800)  # a dozen tiny trainings, each a new process; a few minutes on 2 quiet cores
@pytest.mark.skipif(not (REPO / ".venv/bin/python").exists(), reason="needs the project's .venv (make setup)")
def test_the_ablation_runs_every_stage_writes_the_tables_and_resumes(tmp_path):
    tree = with_split_csvs(make_class_tree(tmp_path / "tree", per_class=12, size=32, colors=TREE_COLORS))
    out = tmp_path / "ablation"

    first = run_ablation(tree, out, JOBS="2")  # two rows at a time; the rerun below, one

    assert first.returncode == 0, first.stderr[-3000:]
    assert sorted(path.stem for path in (out / "logs").glob("*.log")) == sorted(
        ["none_seed0", "kd_seed0", "dkd_seed0", "sweep_beta1", "sweep_beta8"]
    )
    assert first.stdout.count("== dkd_seed0 (") == 1  # each row's log is shown once it ends
    assert (out / "teacher/best.soft_labels.npz").is_file()
    for name in ("none_seed0", "kd_seed0", "dkd_seed0", "sweep_beta1", "sweep_beta8"):
        assert list((out / name).glob("*.onnx")), name
    results = (out / "results.md").read_text().splitlines()
    assert results[0].startswith("| model | architecture | parameters | MACs (64 px) | val top-1 | robust val top-1")
    assert [row.split(" | ")[0] for row in results[2:]] == [
        "| teacher",
        "| student_none_seed0",
        "| student_kd_seed0",
        "| student_dkd_seed0",
        "| student_dkd_int8",
    ]
    assert len((out / "beta_sweep.md").read_text().splitlines()) == 2 + 2
    from rs_ghost_qgis.core.model.runtime import load_model

    for name in ("none_seed0", "dkd_seed0"):  # the twin and the distilled row carry the same weak supervision
        card = load_model(next((out / name).glob("*.onnx"))).card
        assert card.training["weak_supervision"]["jitter"] == {"contrast": 0.6, "brightness": 20.0}, name

    again = run_ablation(tree, out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("done before, skipped") == 5
