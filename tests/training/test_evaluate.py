"""Evaluation of checkpoints and exported ONNX models, and the export command."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from rs_ghost_qgis.core.model.card import ModelCard
from tests.training.test_train import make_class_tree, train_args
from training import cli
from training.checkpoint import TrainingError
from training.evaluate import _labels_in_model_order


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(class tree, best checkpoint) of one short training run."""
    root = tmp_path_factory.mktemp("evaluate")
    tree = make_class_tree(root / "tree")
    assert cli.main(train_args(tree, root / "model")) == 0
    return tree, root / "model" / "best.pt"


@pytest.fixture(scope="module")
def exported(trained) -> Path:
    tree, checkpoint = trained
    path = checkpoint.parent / "model.onnx"
    assert cli.main(["export", "--checkpoint", str(checkpoint), "--out", str(path), "--gsd", "2.5"]) == 0
    return path


def evaluate_args(model: Path, tree: Path, out: Path, *extra: str) -> list[str]:
    data = ["--data", str(tree), "--cache-dir", str(tree.parent / "cache")]
    return ["evaluate", "--model", str(model), *data, "--out", str(out), *extra]


def test_data_labels_are_mapped_to_the_models_class_order():
    mapped = _labels_in_model_order(np.array([0, 1, 1]), ["Water", "Crop"], ["Crop", "Forest", "Water"])
    assert mapped.tolist() == [2, 0, 0]
    with pytest.raises(TrainingError, match="Cloud"):
        _labels_in_model_order(np.array([0]), ["Cloud"], ["Crop", "Water"])


@pytest.mark.slow
def test_evaluate_checkpoint_prints_top1_and_writes_its_files(trained, tmp_path, capsys):
    tree, checkpoint = trained
    out = tmp_path / "eval"
    assert cli.main(evaluate_args(checkpoint, tree, out)) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert f"top-1: {100 * metrics['top1']:.2f}%" in printed.splitlines()
    assert metrics["images"] == 12  # 20% of 3 x 20
    assert metrics["parameters"] > 9_000_000 and metrics["macs"] > 10_000_000 and metrics["input_size"] == 32
    assert metrics["latency"]["ms_per_tile_batch1"] > 0 and metrics["latency"]["ms_per_tile_batch32"] > 0
    confusion = json.loads((out / "confusion.json").read_text())
    assert confusion["class_names"] == ["Crop", "Forest", "Water"]
    assert np.trace(confusion["matrix"]) / 12 == pytest.approx(metrics["top1"])
    rows = list(csv.DictReader((out / "per_class.csv").open()))
    assert [row["class"] for row in rows] == ["Crop", "Forest", "Water"]
    assert sum(int(row["support"]) for row in rows) == 12
    assert (out / "confusion.png").stat().st_size > 1000


@pytest.mark.slow
def test_evaluate_onnx_agrees_with_the_checkpoint(trained, exported, tmp_path, capsys):
    tree, checkpoint = trained
    assert cli.main(evaluate_args(checkpoint, tree, tmp_path / "pt", "--no-latency")) == 0
    assert cli.main(evaluate_args(exported, tree, tmp_path / "onnx", "--no-latency")) == 0
    from_pt, from_onnx = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("pt", "onnx"))
    assert from_onnx["top1"] == from_pt["top1"]
    assert json.loads((tmp_path / "onnx/confusion.json").read_text()) == json.loads(
        (tmp_path / "pt/confusion.json").read_text()
    )
    assert from_onnx["parameters"] == from_pt["parameters"] and from_onnx["macs"] == from_pt["macs"]
    assert "latency" not in from_onnx


@pytest.mark.slow
def test_evaluate_scores_the_images_of_a_split_csv(trained, tmp_path, capsys):
    tree, checkpoint = trained
    listed = [("Forest/Forest_3.png", 1, "Forest"), ("Water/Water_0.png", 2, "Water"), ("Crop/Crop_9.png", 0, "Crop")]
    split = tmp_path / "some.csv"
    rows = "".join(f"{index},{name},{label},{cls}\n" for index, (name, label, cls) in enumerate(listed))
    split.write_text(",Filename,Label,ClassName\n" + rows)
    out = tmp_path / "eval"
    assert cli.main(evaluate_args(checkpoint, tree, out, "--split-csv", str(split), "--no-latency")) == 0
    assert json.loads((out / "metrics.json").read_text())["images"] == 3


@pytest.mark.slow
def test_export_writes_card_with_given_gsd_and_evaluation_metrics(trained, exported, tmp_path, capsys):
    card = ModelCard.from_metadata({p.key: p.value for p in onnx.load(str(exported)).metadata_props})
    assert card.gsd_m == 2.5 and card.tile_size_m == 80.0 and card.resolution_cm == 250.0
    assert set(card.metrics) == {"val_top1"}
    assert exported.with_suffix(".md").is_file()

    tree, checkpoint = trained
    assert cli.main(evaluate_args(checkpoint, tree, tmp_path / "eval", "--no-latency")) == 0
    path = tmp_path / "with_metrics.onnx"
    argv = ["export", "--checkpoint", str(checkpoint), "--out", str(path), "--gsd", "0.3", "--tile-size", "256"]
    argv += ["--raw-range", "0", "3000", "--metrics", str(tmp_path / "eval/metrics.json")]
    assert cli.main(argv) == 0
    assert f"model: {path}" in capsys.readouterr().out
    card = ModelCard.from_metadata({p.key: p.value for p in onnx.load(str(path)).metadata_props})
    assert card.raw_range == [0.0, 3000.0]
    # Patches of 256 px at 0.3 m, shrunk to 32 px for the model: the tile still covers 76.8 m.
    assert (card.input_size, card.tile_size, card.tile_size_m) == (32, 256, pytest.approx(76.8))
    assert set(card.metrics["per_class_f1"]) == {"Crop", "Forest", "Water"}
    assert np.asarray(card.metrics["confusion"]).shape == (3, 3)


@pytest.mark.slow
def test_export_of_unknown_imagery_needs_a_gsd(trained, tmp_path, capsys):
    _, checkpoint = trained
    assert cli.main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.onnx")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "--gsd" in error and len(error.strip().splitlines()) == 1
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.slow
def test_evaluate_refuses_data_with_classes_the_model_lacks(trained, tmp_path, capsys):
    _, checkpoint = trained
    other = make_class_tree(tmp_path / "other", per_class=5)
    (other / "Water").rename(other / "Cloud")
    assert cli.main(evaluate_args(checkpoint, other, tmp_path / "eval", "--no-latency")) == 2
    assert "Cloud" in capsys.readouterr().err


@pytest.mark.slow
def test_evaluate_of_a_file_that_is_no_model_fails_cleanly(trained, tmp_path, capsys):
    tree, _ = trained
    for name, content in (("junk.pt", b"not a checkpoint"), ("junk.onnx", b"not onnx either")):
        (tmp_path / name).write_bytes(content)
        assert cli.main(evaluate_args(tmp_path / name, tree, tmp_path / "eval")) == 2
        assert name in capsys.readouterr().err
    assert cli.main(evaluate_args(tmp_path / "missing.pt", tree, tmp_path / "eval")) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_report_tables_the_evaluations_in_the_given_order(trained, exported, tmp_path, capsys):
    tree, checkpoint = trained
    for name, model in (("int8_like", exported), ("teacher_like", checkpoint)):
        assert cli.main(evaluate_args(model, tree, tmp_path / name)) == 0
    capsys.readouterr()
    out = tmp_path / "results.md"
    assert cli.main(["report", str(tmp_path / "teacher_like"), str(tmp_path / "int8_like"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.strip()
    assert out.read_text().strip() == printed
    header, rule, *rows = printed.splitlines()
    assert header.startswith("| model | architecture | parameters") and len(rows) == 2
    for row, name in zip(rows, ("teacher_like", "int8_like"), strict=True):
        metrics = json.loads((tmp_path / name / "metrics.json").read_text())
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[:2] == [name, metrics["architecture"]]
        assert cells[4] == f"{100 * metrics['top1']:.2f}%"
        assert cells[5] == f"{100 * min(metrics['robust'].values()):.2f}%"  # the worst radiometric shift
        assert cells[7] == f"{1000 / metrics['latency']['ms_per_tile_batch32']:.0f}"


def test_report_of_a_folder_without_metrics_names_it(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert str(tmp_path / "metrics.json") in error and "evaluate" in error
