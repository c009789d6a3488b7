"""The teacher's soft labels: computed once per (teacher, data), keyed, refused when stale, view-matched."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.training.test_data_loader import numpy_view
from tests.training.test_train import SMALL, make_class_tree, train_args
from training import cli, soft_labels
from training import train as train_module
from training.checkpoint import load_checkpoint
from training.data import load_dataset
from training.inputs import InputPipeline


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return make_class_tree(tmp_path_factory.mktemp("soft") / "tree", per_class=12)


@pytest.fixture(scope="module")
def teacher(tree: Path) -> Path:
    out = tree.parent / "teacher"
    assert cli.main(train_args(tree, out, "--precision", "fp32", epochs=1)) == 0
    return out / "best.pt"


def student_args(tree: Path, out: Path, *extra: str) -> list[str]:
    return train_args(tree, out, "--distill", "dkd", "--precision", "fp32", *extra, epochs=1)


@pytest.mark.slow
def test_first_use_computes_the_teachers_logits_for_every_image_and_view(tree, teacher, tmp_path):
    assert cli.main(student_args(tree, tmp_path / "student", "--teacher-checkpoint", str(teacher))) == 0

    path = teacher.with_name("best.soft_labels.npz")
    labels = soft_labels.load(path)
    data = load_dataset(tree, image_size=32, cache_dir=tree.parent / "cache")
    assert labels.logits.shape == (len(data.train), 8, 3) and labels.logits.dtype == torch.float16
    assert labels.meta["teacher_sha256"] == soft_labels.file_sha256(teacher)
    assert labels.meta["data_sha256"] == soft_labels.data_fingerprint(data.train, data.class_names)
    # Oracle: the teacher run by hand on numpy's flips and turns of a few images.
    frozen = train_module.load_teacher(teacher, data.class_names, torch.device("cpu"))
    for index in (0, 7, len(data.train) - 1):
        image = data.train.images[index].transpose(2, 0, 1).astype(np.float32) / 255
        views = torch.from_numpy(np.stack([numpy_view(image, view).copy() for view in range(8)]))
        np.testing.assert_allclose(labels.logits[index].float(), frozen(views), rtol=2e-3, atol=2e-2)
    state = load_checkpoint(tmp_path / "student/last.pt")
    assert state["teacher"]["teacher_sha256"] == labels.meta["teacher_sha256"]


@pytest.mark.slow
def test_current_soft_labels_are_reused_and_stale_ones_recomputed(tree, teacher, tmp_path, monkeypatch):
    assert cli.main(student_args(tree, tmp_path / "first", "--teacher-checkpoint", str(teacher))) == 0
    path = teacher.with_name("best.soft_labels.npz")
    written = path.read_bytes()

    def no_compute(*args, **kwargs):
        raise AssertionError("current soft labels must not be recomputed")

    monkeypatch.setattr(soft_labels, "compute", no_compute)
    assert cli.main(student_args(tree, tmp_path / "second", "--teacher-checkpoint", str(teacher))) == 0
    monkeypatch.undo()

    # Other training images (another seed's noise) make the file beside the teacher stale.
    other = make_class_tree(tmp_path / "other", per_class=12, seed=5)
    assert cli.main(student_args(other, tmp_path / "third", "--teacher-checkpoint", str(teacher))) == 0
    assert path.read_bytes() != written
    data = load_dataset(other, image_size=32, cache_dir=other.parent / "cache")
    assert soft_labels.load(path).meta["data_sha256"] == soft_labels.data_fingerprint(data.train, data.class_names)


@pytest.mark.slow
def test_named_soft_labels_train_a_student_without_the_teacher(tree, teacher, tmp_path):
    assert cli.main(student_args(tree, tmp_path / "first", "--teacher-checkpoint", str(teacher))) == 0
    kept = tmp_path / "kept.soft_labels.npz"
    kept.write_bytes(teacher.with_name("best.soft_labels.npz").read_bytes())

    assert cli.main(student_args(tree, tmp_path / "alone", "--soft-labels", str(kept))) == 0
    state = load_checkpoint(tmp_path / "alone/last.pt")
    assert state["distill"]["method"] == "dkd" and state["teacher"]["architecture"] == SMALL


def test_named_stale_soft_labels_are_refused_with_the_fix(tree, teacher, tmp_path, capsys):
    assert cli.main(student_args(tree, tmp_path / "first", "--teacher-checkpoint", str(teacher))) == 0
    kept = tmp_path / "kept.soft_labels.npz"
    kept.write_bytes(teacher.with_name("best.soft_labels.npz").read_bytes())
    other = make_class_tree(tmp_path / "other", per_class=12, seed=5)
    capsys.readouterr()

    assert cli.main(student_args(other, tmp_path / "refused", "--soft-labels", str(kept))) == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith(f"error: --soft-labels {kept} cannot be used: they were computed for other training")
    assert "\n" not in message and not (tmp_path / "refused" / "last.pt").exists()

    kept.write_bytes(b"not an archive")
    assert cli.main(student_args(tree, tmp_path / "refused", "--soft-labels", str(kept))) == 2
    assert "is not a soft-label file" in capsys.readouterr().err


def test_the_student_sees_the_view_the_teacher_logits_belong_to(tree, tmp_path, monkeypatch):
    """Soft labels that encode (image, view) let the test decode which logits met which input."""
    data = load_dataset(tree, image_size=32, cache_dir=tree.parent / "cache")
    count = len(data.train)
    codes = np.zeros((count, 8, 3), np.float16)
    codes[:, :, 0] = np.arange(count)[:, None]
    codes[:, :, 1] = np.arange(8)[None, :]
    path = tmp_path / "codes.soft_labels.npz"
    soft_labels.save(path, codes, {"data_sha256": soft_labels.data_fingerprint(data.train, data.class_names)})

    events = []  # ("teacher", decoded (image, view) pairs) and ("input", the student's images), in order
    original = InputPipeline.network_input

    def spy_network_input(pipeline, images):
        events.append(("input", images.clone()))
        return original(pipeline, images)

    original_call = soft_labels.SoftLabels.__call__

    def spy_call(self, indices, views):
        logits = original_call(self, indices, views)
        events.append(("teacher", logits[:, :2].round().long()))
        return logits

    monkeypatch.setattr(InputPipeline, "network_input", spy_network_input)
    monkeypatch.setattr(soft_labels.SoftLabels, "__call__", spy_call)
    train_module.train_stage(
        train_module.StageConfig(
            model=SMALL,
            out=str(tmp_path / "spy"),
            epochs=1,
            batch_size=8,
            distill="dkd",
            soft_labels=str(path),
            precision="fp32",
            bn_batches=0,
        ),
        data,
        train_module.distributed.start("cpu"),
    )
    steps = [(a[1], b[1]) for a, b in zip(events, events[1:], strict=False) if (a[0], b[0]) == ("teacher", "input")]
    assert len(steps) == count // 8
    shown_views = set()
    for pairs, inputs in steps:
        for shown, (index, view) in zip(inputs, pairs.tolist(), strict=True):
            shown_views.add(view)
            original_image = data.train.images[index].transpose(2, 0, 1).astype(np.float32) / 255
            scores = [np.corrcoef(numpy_view(original_image, v).ravel(), shown.numpy().ravel())[0, 1] for v in range(8)]
            assert int(np.argmax(scores)) == view
    assert len(shown_views) >= 6


def test_soft_label_files_hold_no_pickles(tree, teacher, tmp_path):
    assert cli.main(student_args(tree, tmp_path / "student", "--teacher-checkpoint", str(teacher))) == 0
    with np.load(teacher.with_name("best.soft_labels.npz"), allow_pickle=False) as archive:
        assert set(archive.files) == {"logits", "meta"}
        assert json.loads(str(archive["meta"]))["format"] == 1


def test_the_soft_labels_command_computes_them_once(tree, teacher, tmp_path, capsys):
    data = ["--data", str(tree), "--image-size", "32", "--cache-dir", str(tree.parent / "cache")]
    argv = ["soft-labels", *data, "--teacher-checkpoint", str(teacher), "--precision", "fp32", "--batch-size", "8"]
    teacher.with_name("best.soft_labels.npz").unlink(missing_ok=True)
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    labels = soft_labels.load(teacher.with_name("best.soft_labels.npz"))
    assert f"soft labels: {teacher.with_name('best.soft_labels.npz')} (({labels.logits.shape[0]}, 8, 3)" in printed
    assert labels.meta["teacher_sha256"] == soft_labels.file_sha256(teacher)
