"""Weak supervision from near infrared (training/weak.py): labels from NDVI/NDWI, the loss, the
batches, the fit half, and what a run records."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.training.weak_data import (
    SURFACES,
    TREE_COLORS,
    make_tree,
    mixed_patch,
    surface_patch,
    weak_npz,
    write_patches,
)
from training import cli, l2a, weak
from training import train as train_module
from training.checkpoint import load_checkpoint, model_from_checkpoint
from training.colors import EUROSAT_CLASSES
from training.errors import TrainingError
from training.inputs import InputPipeline

BANDS = ["B02", "B03", "B04", "B08"]


def kinds_of(*patches: np.ndarray) -> list[int]:
    return weak.label_patches(np.stack(patches).astype(np.float32), BANDS).tolist()


def test_each_surface_gets_its_kind_and_a_shore_gets_none():
    water, vegetation, dry = (weak.KINDS.index(kind) for kind in ("water", "vegetation", "dry"))
    assert kinds_of(*(surface_patch(kind) for kind in SURFACES), mixed_patch()) == [water, vegetation, dry, -1]


def test_dark_water_is_water_and_a_dark_shadow_is_not():
    dark_water = surface_patch("water")
    dark_water[:] = np.asarray([200, 250, 150, 180], dtype=np.uint16)[:, None, None]  # NDWI 0.16, below 0.2
    shadow = dark_water.copy()
    shadow[3] = 280  # as dark, but more NIR than green: land in shade
    bright_wet = dark_water.copy()
    bright_wet[1:] = np.asarray([1300, 1200, 1200], dtype=np.uint16)[:, None, None]  # NDWI 0.04, NIR 1,200: no water
    assert kinds_of(dark_water, shadow, bright_wet) == [weak.KINDS.index("dark_water"), weak.KINDS.index("dry"), -1]


def test_one_wet_pixel_makes_a_bare_patch_uncertain():
    patch = surface_patch("dry")
    patch[:, 3, 5] = SURFACES["water"]
    assert kinds_of(patch) == [-1]


def test_the_class_groups_follow_the_physics():
    groups = {
        kind: [name for name, ok in zip(EUROSAT_CLASSES, mask, strict=True) if ok]
        for kind, mask in weak.class_groups(list(EUROSAT_CLASSES)).items()
    }
    assert groups["water"] == groups["dark_water"] == ["River", "SeaLake"]
    assert groups["dry"] == [name for name in EUROSAT_CLASSES if name not in ("River", "SeaLake")]
    assert groups["vegetation"] == ["AnnualCrop", "Forest", "HerbaceousVegetation", "Pasture", "PermanentCrop"]


def test_classes_without_water_are_refused_naming_the_flag():
    with pytest.raises(TrainingError, match="--weak-patches needs a water class"):
        weak.class_groups(["Forest", "Crop"])


def test_the_loss_is_minus_the_log_of_the_allowed_probability():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 4, generator=generator) * 3
    allowed = torch.tensor([[1, 0, 0, 0], [0, 1, 1, 0], [1, 1, 1, 0], [0, 0, 0, 1], [1, 0, 1, 0]], dtype=torch.bool)
    probabilities = np.exp(logits.numpy()) / np.exp(logits.numpy()).sum(1, keepdims=True)
    expected = -np.log((probabilities * allowed.numpy()).sum(1)).mean()
    assert weak.weak_loss(logits, allowed).item() == pytest.approx(expected, rel=1e-5)


def test_the_loss_stays_finite_when_the_network_is_sure_and_wrong():
    logits = torch.tensor([[1e4, 0.0, 0.0]])
    loss = weak.weak_loss(logits, torch.tensor([[False, True, True]]))
    assert torch.isfinite(loss) and loss.item() == pytest.approx(1e4 - np.log(2), rel=1e-4)


def test_a_draw_takes_each_kind_equally_in_random_views():
    kind = np.array([0] * 2 + [1] * 10 + [2] * 30)
    allowed = torch.from_numpy(np.eye(3, dtype=bool)[kind])
    images = torch.arange(len(kind), dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 1, 2, 2).contiguous()
    patches = weak.WeakPatches(images, allowed, kind, {})
    drawn, drawn_allowed = patches.draw(7, torch.Generator().manual_seed(3))
    counts = drawn_allowed.long().sum(0).tolist()
    assert counts == [3, 2, 2]  # the two water patches as often as the thirty dry ones
    indices = drawn[:, 0, 0, 0].long()  # a flip or a turn keeps a constant image constant
    assert torch.equal(torch.from_numpy(kind)[indices], drawn_allowed.long().argmax(1))
    again, _ = patches.draw(7, torch.Generator().manual_seed(3))
    assert torch.equal(drawn, again)


def test_jitter_scales_each_patchs_texture_about_its_mean_and_moves_its_brightness_within_bounds():
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.uniform(0.3, 0.5, (64, 3, 8, 8)).astype(np.float32))
    deviation = images - images.mean(dim=(2, 3), keepdim=True)
    textured = weak.jitter_texture(images, 0.6, 0.0, torch.Generator().manual_seed(1))
    np.testing.assert_allclose(textured.mean(dim=(2, 3)), images.mean(dim=(2, 3)), atol=1e-6)  # no clipping here
    factors = (textured - textured.mean(dim=(2, 3), keepdim=True)).flatten(1).norm(dim=1) / deviation.flatten(1).norm(
        dim=1
    )
    assert factors.min() >= 0.4 - 1e-5 and factors.max() <= 1.6 + 1e-5
    assert factors.max() - factors.min() > 0.6  # a factor per patch, spread over the range
    shifted = weak.jitter_texture(images, 0.0, 20.0, torch.Generator().manual_seed(1))
    moves = (shifted - images).flatten(1)
    assert torch.allclose(moves.min(dim=1).values, moves.max(dim=1).values, atol=1e-6)  # one shift for all bands
    assert moves.abs().max() <= 20 / 255 + 1e-6 and moves.abs().max() > 10 / 255
    assert weak.jitter_texture(images, 0.0, 0.0, torch.Generator()) is images
    bright = weak.jitter_texture(torch.ones(4, 3, 2, 2), 0.5, 255.0, torch.Generator().manual_seed(0))
    assert bright.min() >= 0 and bright.max() <= 1


@pytest.mark.parametrize(
    ("flag", "value", "words"), [("--weak-contrast", "1", "below 1"), ("--weak-brightness", "300", "0 to 255")]
)
def test_a_jitter_out_of_range_is_refused_with_its_flag(tree, tmp_path, flag, value, words, capsys):
    npz = weak_npz(tmp_path / "weak.npz")
    args = ["train", "--model", "g_ghost_regnetx_002", "--weak-patches", str(npz), flag, value]
    assert cli.main(args + stage(tree, tmp_path / "out", epochs=1)) == 2
    err = capsys.readouterr().err
    assert flag in err and words in err and not (tmp_path / "out").exists()


def test_only_the_fit_half_is_loaded_and_mapped_as_the_card_will_map_it(tmp_path):
    rng = np.random.default_rng(0)
    # Even positions (the fit half) hold vegetation and soil; every odd one is water, held out.
    patches = [
        surface_patch("vegetation" if i % 4 == 0 else "dry", 16, rng) if i % 2 == 0 else surface_patch("water", 16, rng)
        for i in range(24)
    ]
    path = write_patches(tmp_path / "p.npz", patches)
    train_images = np.random.default_rng(1).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    bands = ["B04 red", "B03 green", "B02 blue"]
    loaded = weak.load_weak_patches(path, list(EUROSAT_CLASSES), bands, train_images)
    assert loaded.info["patches"] == {"water": 0, "vegetation": 6, "dry": 6}  # the default kinds
    raw = np.stack(patches).astype(np.float32)
    assert loaded.info["mapping"] == l2a.fit_mapping(
        raw[::2], BANDS, bands, train_images, loaded.info["source"], "linear"
    )
    assert tuple(loaded.images.shape) == (12, 3, 32, 32)  # resized to the training images' side
    red_curve = loaded.info["mapping"]["bands"]["B04 red"]
    red = np.interp(raw[0][2], red_curve["raw"], red_curve["value"]).clip(0, 255) / 255
    assert loaded.images[0, 0].mean().item() == pytest.approx(red.mean(), abs=1e-3)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("weak") / "tree", per_class=20)


def stage(tree, out, *extra, epochs=2):
    return [
        "--data",
        str(tree),
        "--image-size",
        "32",
        "--epochs",
        str(epochs),
        "--batch-size",
        "8",
        "--lr",
        "0.01",
        "--precision",
        "fp32",
        "--cache-dir",
        str(tree.parent / "cache"),
        "--out",
        str(out),
        *extra,
    ]


@pytest.mark.slow
def test_a_run_records_its_weak_supervision_and_ships_its_curves(tree, tmp_path):
    npz = weak_npz(tmp_path / "weak.npz")
    out = tmp_path / "run"
    args = ["run", "--student", "g_ghost_regnetx_002", "--distill", "none", "--gsd", "10", "--weak-patches", str(npz)]
    assert (
        cli.main(args + stage(tree, out, "--weak-batch", "6", "--weak-contrast", "0.6", "--weak-brightness", "20")) == 0
    )
    state = load_checkpoint(out / "student" / "best.pt")
    assert state["weak"]["patches"] == {"water": 4, "vegetation": 4, "dry": 4}
    log = (out / "student" / "log.csv").read_text().splitlines()
    assert "train_weak" in log[0].split(",")
    from rs_ghost_qgis.core.model.runtime import load_model

    card = load_model(next(out.glob("*.onnx"))).card
    assert card.training["weak_supervision"]["patches"] == {"water": 4, "vegetation": 4, "dry": 4}
    assert card.training["weak_supervision"]["per_batch"] == 6
    assert card.training["weak_supervision"]["jitter"] == {"contrast": 0.6, "brightness": 20.0}
    assert card.product_mappings["l2a"] == state["weak"]["mapping"]


def test_the_patches_share_the_forward_pass_with_the_batch(tree, tmp_path, monkeypatch):
    npz = weak_npz(tmp_path / "weak.npz")
    rows = []
    real = torch.nn.Conv2d.forward

    def spy(self, x):
        if self.in_channels == 3 and torch.is_grad_enabled():
            rows.append(len(x))
        return real(self, x)

    monkeypatch.setattr(torch.nn.Conv2d, "forward", spy)
    args = [
        "train",
        "--model",
        "g_ghost_regnetx_002",
        "--weak-patches",
        str(npz),
        "--weak-batch",
        "5",
        "--bn-batches",
        "0",
    ]
    assert cli.main(args + stage(tree, tmp_path / "out", epochs=1)) == 0
    assert rows and set(rows) == {8 + 5}  # 18 images: two batches of 8, each with 5 patches, never apart


@pytest.mark.slow
def test_weak_labels_teach_what_the_labelled_images_never_show(tree, tmp_path, monkeypatch):
    """Yellow tiles, a colour no labelled image has, labelled water by NIR: only the weak loss can
    make the network call them SeaLake."""
    yellow = torch.tensor([220, 200, 40], dtype=torch.float32).div(255).view(1, 3, 1, 1)
    images = (yellow + 0.05 * torch.randn(12, 3, 32, 32, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    names = sorted(TREE_COLORS)
    allowed = torch.tensor([[name == "SeaLake" for name in names]] * 12)
    yellow_water = weak.WeakPatches(images, allowed, np.zeros(12, dtype=int), {"patches": {"water": 12}})
    monkeypatch.setattr(train_module, "load_weak_patches", lambda *args: yellow_water)
    scores = {}
    for name, extra in (
        ("with", ["--weak-patches", "stub.npz", "--weak-batch", "8", "--weak-weight", "2"]),
        ("without", []),
    ):
        out = tmp_path / name
        assert (
            cli.main(
                [
                    "train",
                    "--model",
                    "g_ghost_regnetx_002",
                    *extra,
                    *stage(tree, out, "--optimizer", "adamw", "--lr", "0.003", epochs=6),
                ]
            )
            == 0
        )
        state = load_checkpoint(out / "last.pt")
        network = model_from_checkpoint(state).eval()
        with torch.no_grad():
            probabilities = network(InputPipeline.from_checkpoint(state).network_input(images)).softmax(1)
        scores[name] = probabilities[:, names.index("SeaLake")].mean().item()
    assert scores["with"] > 0.6 and scores["with"] > scores["without"] + 0.3, scores


def test_only_the_chosen_kinds_are_trained_on(tmp_path):
    rng = np.random.default_rng(0)
    dark = surface_patch("water", 16, rng)
    dark[:] = np.asarray([200, 250, 150, 180], dtype=np.uint16)[:, None, None]  # dark water, NDWI 0.16
    patches = [dark if i % 3 == 0 else surface_patch("dry" if i % 3 == 1 else "water", 16, rng) for i in range(24)]
    path = write_patches(tmp_path / "p.npz", patches)
    train_images = np.random.default_rng(1).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    bands = ["B04 red", "B03 green", "B02 blue"]
    default = weak.load_weak_patches(path, list(EUROSAT_CLASSES), bands, train_images)
    assert default.info["patches"] == {"water": 4, "vegetation": 0, "dry": 4}  # even positions 0..22
    assert "dark_water" not in default.info["rules"]
    chosen = weak.load_weak_patches(path, list(EUROSAT_CLASSES), bands, train_images, ["dark_water", "dry"])
    assert chosen.info["patches"] == {"dark_water": 4, "dry": 4} and len(chosen.images) == 8
    with pytest.raises(TrainingError, match="--weak-kinds"):
        weak.load_weak_patches(path, list(EUROSAT_CLASSES), bands, train_images, ["wet"])
