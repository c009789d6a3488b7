"""Training's writers are atomic (issue 31): the card embedder, the shipping script and unpack never
leave half a file, no bundled model, or a half-replaced data folder when they fail midway."""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
from pathlib import Path

import onnx
import pytest

from rs_ghost_qgis.core.model.runtime import load_model
from tests.tiny_model import export_tiny_model
from tests.training.test_ablation import with_split_csvs
from tests.training.test_train import make_class_tree
from training import export
from training.data import pack

REPO = Path(__file__).resolve().parents[2]


def ship_module():
    spec = importlib.util.spec_from_file_location("ship_model", REPO / "scripts" / "ship_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def failing_save(graph, path, **kwargs):
    """onnx.save that writes half a file, then fails as a full disk would."""
    Path(path).write_bytes(b"half a model")
    raise OSError(28, "No space left on device")


def test_a_failed_card_embedding_leaves_the_model_as_it_was(tmp_path, monkeypatch):
    model = export_tiny_model(tmp_path / "tiny.onnx")
    before = model.read_bytes()
    card = load_model(model).card
    monkeypatch.setattr(export.onnx, "save", failing_save)

    with pytest.raises(OSError, match="No space"):
        export.embed_card(model, dataclasses.replace(card, training={"status": "new"}))

    assert model.read_bytes() == before
    assert [path.name for path in tmp_path.iterdir()] == ["tiny.onnx"]  # no temporary left behind


def test_shipping_keeps_the_previous_bundled_model_when_the_copy_fails(tmp_path, monkeypatch):
    ship_model = ship_module()
    models = tmp_path / "models"
    models.mkdir()
    old = export_tiny_model(models / "old.onnx")
    (models / "default.txt").write_text("old.onnx\n")
    new = export_tiny_model(tmp_path / "run" / "new.onnx")
    monkeypatch.setattr(ship_model, "MODELS", models)

    def failing_copy(source, destination):
        Path(destination).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    real_copy = shutil.copyfile
    monkeypatch.setattr(ship_model.shutil, "copyfile", failing_copy)
    with pytest.raises(OSError):
        ship_model.ship(new, "a status")
    assert sorted(path.name for path in models.iterdir()) == ["default.txt", "old.onnx"]
    assert (models / "default.txt").read_text() == "old.onnx\n"
    assert load_model(old).card.class_names

    monkeypatch.setattr(ship_model.shutil, "copyfile", real_copy)
    target = ship_model.ship(new, "a status")
    assert sorted(path.name for path in models.iterdir()) == ["default.txt", "new.md", "new.onnx"]
    assert (models / "default.txt").read_text() == "new.onnx\n"
    assert load_model(target).card.training["status"] == "a status"
    assert onnx.load(str(new)).metadata_props  # the run's own copy carries the status too


def test_unpacking_over_an_earlier_folder_keeps_it_until_the_new_one_is_complete(tmp_path, monkeypatch):
    tree = with_split_csvs(make_class_tree(tmp_path / "tiny_rgb", per_class=4, size=32))
    pack.pack_folder(tree, tmp_path / "pack", part_mib=1)
    earlier = tmp_path / "there" / "tiny_rgb"
    earlier.mkdir(parents=True)
    (earlier / "mine.txt").write_text("an earlier unpack")

    def failing_extract(path, folder):
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "half.bin").write_bytes(b"half")
        raise OSError(28, "No space left on device")

    real_extract = pack._extract
    monkeypatch.setattr(pack, "_extract", failing_extract)
    with pytest.raises(OSError):
        pack.unpack(tmp_path / "pack", tmp_path / "there")
    assert sorted(path.name for path in (tmp_path / "there").iterdir()) == ["tiny_rgb"]
    assert (earlier / "mine.txt").read_text() == "an earlier unpack"

    monkeypatch.setattr(pack, "_extract", real_extract)
    unpacked = pack.unpack(tmp_path / "pack", tmp_path / "there")
    assert not (unpacked / "mine.txt").exists() and (unpacked / "train.csv").is_file()
    assert sorted(path.name for path in (tmp_path / "there").iterdir()) == ["tiny_rgb", "tiny_rgb.sha256"]
