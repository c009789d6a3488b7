import importlib.util
from pathlib import Path

import numpy as np
import pytest
import rasterio

from rs_ghost_qgis.core.errors import ModelError
from tests.core.engine_data import class_pattern, write_raster

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def demo():
    spec = importlib.util.spec_from_file_location("demo", REPO / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_end_to_end_with_a_given_model(demo, tiny_model, tmp_path, capsys):
    scene = write_raster(tmp_path / "scene.tif", class_pattern(np.array([[0, 1], [2, 1]]), 32))
    out = tmp_path / "demo"
    assert demo.main(["--model", str(tiny_model), "--input", str(scene), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for name in ("scene_tiles.gpkg", "scene_classes.tif", "scene_preview.png"):
        assert (out / name).is_file() and str(out / name) in printed
    with rasterio.open(out / "scene_classes.tif") as ds:
        np.testing.assert_array_equal(ds.read(1), [[0, 1], [2, 1]])
    # Run again: the demo overwrites its own outputs.
    assert demo.main(["--model", str(tiny_model), "--input", str(scene), "--out", str(out)]) == 0


def test_demo_without_bundled_model_says_how_to_get_it(demo, tmp_path, capsys, monkeypatch):
    def missing():
        raise ModelError("The bundled model is not there yet (no .onnx file in x).")

    monkeypatch.setattr(demo, "default_model_path", missing)
    assert demo.main(["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not there yet" in err and "make train" in err and "--model" in err
    assert list(tmp_path.iterdir()) == []


def test_demo_scene_prefers_shared_then_downloads(demo, tmp_path, monkeypatch):
    shared = tmp_path / "shared.tif"
    shared.write_bytes(b"x")
    assert demo.locate_scene(shared, tmp_path / "cache" / "s.tif") == shared
    calls = []
    monkeypatch.setattr(demo, "fetch", lambda url, dest, sha: calls.append((url, dest, sha)) or dest)
    cached = tmp_path / "cache" / "s.tif"
    assert demo.locate_scene(tmp_path / "absent.tif", cached) == cached
    assert calls == [(demo.SCENE_URL, cached, demo.SCENE_SHA256)]
    assert demo.SCENE_URL.endswith("d547b64611c202182a2dafe36f0407f372cd3cc7/data/sentinel2_fields.tif")
