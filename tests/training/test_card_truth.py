"""Every shipped recipe trains (one epoch, tiny data) and its model card says what ran: a card that
contradicts its recipe fails here (issue 33: the AdamW recipe's card once said SGD)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from rs_ghost_qgis.core.model.runtime import load_model
from tests.training.weak_data import make_tree, weak_npz
from training import cli
from training.checkpoint import card_from_checkpoint, load_checkpoint
from training.recipe import read_recipe
from training.soft_labels import default_path

pytestmark = pytest.mark.slow  # trains every shipped recipe

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "recipes").rglob("*.toml"))
SEEDS = sorted({read_recipe(path)["seed"] for path in SHIPPED})


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """A tiny tree with a water class, weak L2A patches, and soft labels of a tiny teacher for the tree."""
    root = tmp_path_factory.mktemp("truth")
    tree = make_tree(root / "tree", per_class=5)
    teacher = root / "teacher"
    common = ["--data", str(tree), "--image-size", "32", "--cache-dir", str(root / "cache")]
    train = ["train", "--model", "g_ghost_regnetx_002", *common, "--epochs", "1", "--batch-size", "8"]
    assert cli.main([*train, "--precision", "fp32", "--out", str(teacher)]) == 0
    soft = {}
    for seed in SEEDS:  # the seed draws the split, and soft labels belong to one split
        checkpoint = root / f"teacher_seed{seed}.pt"
        shutil.copyfile(teacher / "best.pt", checkpoint)
        flags = ["--teacher-checkpoint", str(checkpoint), "--precision", "fp32", "--seed", str(seed)]
        assert cli.main(["soft-labels", *common, *flags]) == 0
        soft[seed] = default_path(checkpoint)
    return {"tree": tree, "cache": root / "cache", "weak": weak_npz(root / "weak.npz"), "soft": soft}


def tiny_run(recipe_path: Path, inputs: dict[str, Path], out: Path):
    """Train the recipe for one epoch on the tiny inputs; its model card."""
    recipe = read_recipe(recipe_path)
    command = "train" if "model" in recipe else "run"
    args = [command, "--recipe", str(recipe_path), "--data", str(inputs["tree"]), "--cache-dir", str(inputs["cache"])]
    args += ["--image-size", "32", "--epochs", "1", "--batch-size", "8", "--precision", "fp32", "--out", str(out)]
    args += ["--workers", "0"]  # the GPU recipes' 8 loader processes would only slow a tiny run
    if recipe.get("weak_patches"):
        args += ["--weak-patches", str(inputs["weak"]), "--weak-batch", "3"]
    if recipe.get("soft_labels"):
        args += ["--soft-labels", str(inputs["soft"][recipe["seed"]])]
    if command == "run":
        args += ["--gsd", "10"]
    assert cli.main(args) == 0
    if command == "train":
        return card_from_checkpoint(load_checkpoint(out / "best.pt"), gsd_m=10.0)
    return load_model(next(out.glob("*.onnx"))).card


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.relative_to(REPO / "recipes").as_posix())
def test_a_shipped_recipe_trains_and_its_card_tells_what_ran(path, inputs, tmp_path):
    recipe = read_recipe(path)
    training = tiny_run(path, inputs, tmp_path / "out").training

    optimizer = recipe.get("optimizer", "sgd")
    assert training["optimizer"].lower().startswith({"sgd": "sgd nesterov", "adamw": "adamw"}[optimizer])
    if "weight_decay" in recipe:
        assert f"weight decay {recipe['weight_decay']}" in training["optimizer"]
    if recipe.get("early_input_size"):
        assert f"at {recipe['early_input_size']} px" in training["schedule"]
    radiometric = recipe.get("radiometric")
    if radiometric is not None:
        assert ("haze" in training["augmentation"]) == (radiometric > 0)
        assert radiometric == 0 or f"on {radiometric:.0%} of the images" in training["augmentation"]
    distillation = training["distillation"]
    assert distillation["method"] == recipe.get("distill", "none")
    assert distillation["label_smoothing"] == recipe.get("label_smoothing", 0.0)
    for key in ("alpha", "beta", "temperature"):
        if key in recipe:
            assert distillation[key] == recipe[key]
    assert ("weak_supervision" in training) == bool(recipe.get("weak_patches"))
    if recipe.get("soft_labels"):
        expected = hashlib.sha256(inputs["soft"][recipe["seed"]].read_bytes()).hexdigest()
        assert training["teacher"]["soft_labels_sha256"] == expected
        assert training["teacher"]["parameters"] > 0
