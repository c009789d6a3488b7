"""Label smoothing in every loss, progressive resizing, and G-Ghost 002 with a stride-1 stem."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from training import cli, commands
from training import config as config_module
from training.errors import TrainingError
from training.losses import DEFAULTS, KINDS, make_criterion
from training.models import build_model
from training.train import StageConfig, default_base_lr, make_optimizer, training_input_size


def one_line_error(capsys) -> str:
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "Traceback" not in error, error
    assert len(error.splitlines()) == 1, error
    return error


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(6, 5, generator=generator) * 3
    teacher = torch.randn(6, 5, generator=generator) * 3
    return student, teacher, torch.tensor([0, 1, 2, 3, 4, 2])


def smoothed_ce_by_hand(logits: torch.Tensor, target: torch.Tensor, smoothing: float) -> torch.Tensor:
    """(1 - e) * NLL of the target + e * mean over classes of -log p: Szegedy et al.'s definition."""
    log_probs = torch.log_softmax(logits.double(), dim=1)
    nll = -log_probs.gather(1, target[:, None]).squeeze(1)
    uniform = -log_probs.mean(dim=1)
    return ((1 - smoothing) * nll + smoothing * uniform).mean()


# ----------------------------------------------------------------------------- label smoothing


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_takes_label_smoothing_defaulting_to_zero(kind):
    assert DEFAULTS[kind]["label_smoothing"] == 0.0
    assert make_criterion(kind).hyperparameters["label_smoothing"] == 0.0
    assert make_criterion(kind, label_smoothing=0.1).hyperparameters["label_smoothing"] == 0.1


def test_other_kinds_options_are_still_refused():
    with pytest.raises(ValueError, match="temperature"):
        make_criterion("none", label_smoothing=0.1, temperature=4.0)


def test_smoothed_none_loss_is_smoothed_cross_entropy(batch):
    student, _, target = batch
    loss = make_criterion("none", label_smoothing=0.1)(student, None, target, epoch=0)
    assert loss.item() == pytest.approx(F.cross_entropy(student, target, label_smoothing=0.1).item(), rel=1e-6)
    assert loss.item() == pytest.approx(smoothed_ce_by_hand(student, target, 0.1).item(), rel=1e-5)
    assert loss.item() != pytest.approx(F.cross_entropy(student, target).item(), rel=1e-3)  # it does change


def test_default_none_loss_is_plain_cross_entropy(batch):
    student, _, target = batch
    loss = make_criterion("none")(student, None, target, epoch=0)
    assert loss.item() == pytest.approx(F.cross_entropy(student, target).item(), rel=1e-6)
    assert loss.item() == pytest.approx(smoothed_ce_by_hand(student, target, 0.0).item(), rel=1e-5)


def test_smoothed_loss_is_computed_in_fp32_from_half_logits(batch):
    student, _, target = batch
    loss = make_criterion("none", label_smoothing=0.2)(student.bfloat16(), None, target, epoch=0)
    assert loss.dtype == torch.float32
    oracle = F.cross_entropy(student.bfloat16().float(), target, label_smoothing=0.2)
    assert loss.item() == pytest.approx(oracle.item(), rel=1e-6)


@pytest.mark.parametrize(("kind", "epoch"), [("kd", 0.0), ("dkd", 0.0), ("dkd", 3.0), ("dkd", 50.0)])
def test_smoothing_changes_only_the_cross_entropy_term_of_distillation(batch, kind, epoch):
    student, teacher, target = batch
    plain = make_criterion(kind)(student, teacher, target, epoch)
    smoothed = make_criterion(kind, label_smoothing=0.1)(student, teacher, target, epoch)
    ce_weight = DEFAULTS[kind]["ce_weight"]
    ce_shift = F.cross_entropy(student, target, label_smoothing=0.1) - F.cross_entropy(student, target)
    assert (smoothed - plain).item() == pytest.approx(ce_weight * ce_shift.item(), rel=1e-4, abs=1e-6)


def test_smoothed_loss_gradient_pulls_towards_the_smoothed_target(batch):
    student, _, target = batch
    logits = student.clone().requires_grad_(True)
    make_criterion("none", label_smoothing=0.3)(logits, None, target, epoch=0).backward()
    smoothed_target = torch.full_like(student, 0.3 / 5)
    smoothed_target[torch.arange(6), target] += 0.7
    expected = (torch.softmax(student, dim=1) - smoothed_target) / 6
    torch.testing.assert_close(logits.grad, expected, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- progressive resizing


def test_the_early_epochs_train_at_the_early_size():
    config = StageConfig(model="m", out="o", epochs=10, early_fraction=0.4, early_input_size=32)
    assert [training_input_size(config, epoch, 64) for epoch in range(10)] == [32] * 4 + [64] * 6


def test_the_teacher_recipes_schedule_gives_six_early_epochs_of_fifteen():
    config = StageConfig(model="vgg16_bn", out="o", epochs=15, early_fraction=0.4, early_input_size=32)
    assert [training_input_size(config, epoch, 64) for epoch in range(15)] == [32] * 6 + [64] * 9


@pytest.mark.parametrize(("early_input_size", "early_fraction"), [(None, 0.5), (None, 0.0), (32, 0.0), (0, 0.5)])
def test_without_an_early_size_or_share_every_epoch_is_at_the_input_size(early_input_size, early_fraction):
    config = StageConfig(model="m", out="o", epochs=6, early_fraction=early_fraction, early_input_size=early_input_size)
    assert [training_input_size(config, epoch, 48) for epoch in range(6)] == [48] * 6


def test_stage_config_has_no_progressive_resizing_by_default():
    config = StageConfig(model="m", out="o")
    assert config.early_input_size is None and config.early_fraction == 0.0
    assert {training_input_size(config, epoch, 64) for epoch in range(config.epochs)} == {64}


@pytest.mark.parametrize(("epochs", "early_fraction"), [(2, 0.75), (1, 0.6), (10, 0.96)])
def test_the_last_epoch_trains_at_the_full_size_for_any_accepted_fraction(epochs, early_fraction):
    # `train` accepts any --early-fraction in [0, 1) and promises "the last epochs train at the full input size".
    config = StageConfig(model="m", out="o", epochs=epochs, early_fraction=early_fraction, early_input_size=16)
    assert training_input_size(config, epochs - 1, 32) == 32


def _train_argv(tmp_path: Path, *extra: str) -> list[str]:
    # The data folder does not exist: the flags must be refused before any data is read.
    out = tmp_path / "out"
    return ["train", "--model", "g_ghost_regnetx_002", "--data", str(tmp_path / "none"), "--out", str(out), *extra]


@pytest.mark.parametrize("fraction", ["1", "1.0", "1.5", "-0.1"])
def test_an_early_share_that_leaves_no_full_size_epoch_is_refused(tmp_path, capsys, fraction):
    argv = _train_argv(tmp_path, "--epochs", "4", "--early-input-size", "32", "--early-fraction", fraction)
    assert cli.main(argv) == 2
    error = one_line_error(capsys)
    assert f"--early-fraction {float(fraction)}" in error and "below 1" in error
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("size", ["0", "-16"])
def test_the_early_size_must_be_positive(tmp_path, capsys, size):
    assert cli.main(_train_argv(tmp_path, "--early-input-size", size, "--early-fraction", "0.5")) == 2
    assert "--early-input-size" in one_line_error(capsys)


def test_an_accepted_early_share_gets_past_the_check(tmp_path, capsys):
    # 0.5 is fine: the run goes on and stops at the missing data folder instead.
    assert cli.main(_train_argv(tmp_path, "--early-input-size", "32", "--early-fraction", "0.5")) == 2
    error = one_line_error(capsys)
    assert "does not exist" in error and "--early-fraction" not in error


# ----------------------------------------------------------------------------- G-Ghost 002, stride-1 stem


def test_g_ghost_002_with_a_stride_one_stem_trains_one_step_on_64_px():
    torch.manual_seed(0)
    model = build_model("g_ghost_regnetx_002", 10, stem_stride=1).train()
    images, target = torch.randn(2, 3, 64, 64), torch.tensor([3, 7])
    logits = model(images)
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    loss = make_criterion("none", label_smoothing=0.1)(logits, None, target, epoch=0)
    loss.backward()
    grads = [parameter.grad for parameter in model.parameters() if parameter.requires_grad]
    assert grads and all(grad is not None and torch.isfinite(grad).all() for grad in grads)
    assert all(grad.abs().sum() > 0 for grad in (model.stem[0].weight.grad, grads[-1]))

    before = [parameter.detach().clone() for parameter in model.parameters()]
    torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9).step()
    moved = sum(not torch.equal(old, new) for old, new in zip(before, model.parameters(), strict=True))
    assert moved == len(before)
    with torch.no_grad():
        assert torch.isfinite(model.eval()(images)).all()


def test_the_stem_stride_sets_the_stem_convolution_stride():
    for stride in (1, 2):
        stem = build_model("g_ghost_regnetx_002", 3, stem_stride=stride).stem[0]
        assert isinstance(stem, torch.nn.Conv2d) and stem.stride == (stride, stride)
    assert build_model("g_ghost_regnetx_002", 3).stem[0].stride == (2, 2)  # the ImageNet default


# ----------------------------------------------------------------------------- optimizer and colour shifts


def test_adamw_is_built_with_decoupled_weight_decay_and_the_adamw_rate():
    model = torch.nn.Linear(3, 2)
    config = StageConfig(model="g_ghost_regnetx_002", out="x", optimizer="adamw", weight_decay=0.05)
    optimizer = make_optimizer(model, config, lr=3e-3)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.defaults["weight_decay"] == 0.05 and optimizer.defaults["lr"] == 3e-3
    sgd = make_optimizer(model, StageConfig(model="g_ghost_regnetx_002", out="x"), lr=0.1)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"]
    assert default_base_lr("g_ghost_regnetx_002", "adamw") == 3e-3 and default_base_lr("g_ghost_regnetx_002") == 0.1


@pytest.mark.parametrize("share", ["-0.1", "1.5", "nan"])
def test_a_radiometric_share_outside_0_to_1_is_refused(tmp_path, capsys, share):
    assert cli.main(_train_argv(tmp_path, "--radiometric", share)) == 2
    assert "--radiometric" in one_line_error(capsys)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("flag", "value"), [("--base-lr", "0"), ("--base-lr", "inf"), ("--momentum", "1.5")])
def test_a_base_rate_or_momentum_out_of_range_is_refused_before_the_data(tmp_path, capsys, flag, value):
    assert cli.main(_train_argv(tmp_path, flag, value)) == 2
    assert flag in one_line_error(capsys)
    assert not (tmp_path / "out").exists()


def test_an_unknown_optimizer_is_refused_by_its_choices(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(_train_argv(tmp_path, "--optimizer", "adam"))
    assert "--optimizer" in capsys.readouterr().err


def test_the_flags_reach_the_stage_config(tmp_path, monkeypatch):
    seen = {}

    def fake_train_stage(config, data, world, meta=None):
        seen["config"] = config
        raise TrainingError("stop here")

    monkeypatch.setattr(commands, "train_stage", fake_train_stage)
    monkeypatch.setattr(config_module, "load_data", lambda args, **kwargs: _tiny_splits())
    argv = _train_argv(tmp_path, "--optimizer", "adamw", "--radiometric", "0.2", "--epochs", "1")
    assert cli.main(argv) == 2
    assert seen["config"].optimizer == "adamw" and seen["config"].radiometric == 0.2


def _tiny_splits():
    import numpy as np

    from training.data import DatasetSplits, ImageArrays

    arrays = ImageArrays(np.zeros((4, 8, 8, 3), dtype=np.uint8), np.array([0, 1, 0, 1]))
    return DatasetSplits(train=arrays, val=arrays, class_names=["a", "b"], summary={"source": "x"})


def test_resuming_with_another_optimizer_is_refused_naming_the_flag():
    from training.train import _restore

    saved = {"architecture": "g_ghost_regnetx_002", "class_names": ["a", "b"], "config": {}}  # older: SGD
    config = StageConfig(model="g_ghost_regnetx_002", out="runs/x", optimizer="adamw")
    with pytest.raises(TrainingError, match="--optimizer sgd"):
        _restore(saved, {"class_names": ["a", "b"]}, None, None, None, None, config)


def _curve_labels(history, tmp_path, monkeypatch) -> list[str]:
    """The labels of the lines plot_curves draws for ``history``."""
    import matplotlib.axes

    from training.plots import plot_curves

    labels = []
    original = matplotlib.axes.Axes.plot

    def recording(self, *args, label=None, **kwargs):
        labels.append(label)
        return original(self, *args, label=label, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", recording)
    plot_curves(history, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 0
    return labels


def test_the_curves_show_each_distillation_term(tmp_path, monkeypatch):
    row = {"epoch": 1, "lr": 0.1, "train_loss": 3.0, "train_acc": 0.5, "val_loss": 1.0, "val_acc": 0.6}
    dkd = [{**row, "train_ce": 1.0, "train_tckd": 0.5, "train_nckd": 1.5}, {**row, "epoch": 2, "train_ce": 0.9}]
    labels = _curve_labels(dkd, tmp_path, monkeypatch)
    assert {"train ce term", "train tckd term", "train nckd term"} <= set(labels)
    # A plain run's single term is its objective: no second line for it.
    plain = _curve_labels([{**row, "train_ce": 3.0}], tmp_path, monkeypatch)
    assert not [label for label in plain if label and label.endswith("term")]
