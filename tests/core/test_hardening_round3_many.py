"""Issue 30: two invariants of classify-many's resume that no test guarded (core/many/).

- the resume key holds the stride: a rerun with another stride classifies again;
- a block counts as done only when both of its files (.gpkg and .tif) are stored.
Broken, either gives a silent wrong answer: the outputs of the earlier stride, or a merge
from half a block. And the output rule (core/outputs.py): no output replaces the mask.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from osgeo import ogr

from rs_ghost_qgis.cli.main import main
from rs_ghost_qgis.core.classify.pipeline import ClassifyOptions, classify
from rs_ghost_qgis.core.many.job import run_job
from rs_ghost_qgis.core.many.manifest import WORK
from rs_ghost_qgis.core.sources.rasterio_source import RasterioSource
from tests.core.engine_data import class_pattern, write_raster

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    """A raster of 6 x 6 tiles of the tiny model (32 px), classes drawn at random."""
    classes = np.random.default_rng(3).integers(0, 3, size=(6, 6))
    return write_raster(tmp_path_factory.mktemp("round3_many") / "scene.tif", class_pattern(classes, 32))


def _tiles(out: Path) -> int:
    dataset = ogr.Open(str(out / "scene.gpkg"))
    return dataset.GetLayer(0).GetFeatureCount()


def _classified_alone(scene: Path, model: Path, stride: int, tmp_path: Path) -> int:
    """The tiles ``classify`` writes for the raster at ``stride``."""
    options = ClassifyOptions(model_path=str(model), stride=stride, threads=1, out_vector=str(tmp_path / "alone.gpkg"))
    with RasterioSource(scene) as source:
        return classify(source, options).tiles_total


def _options(model: Path, stride: int | None) -> ClassifyOptions:
    return ClassifyOptions(model_path=str(model), stride=stride, threads=1)


def test_a_rerun_with_another_stride_classifies_again(client, scene, tiny_model, tmp_path):
    out = tmp_path / "out"
    first = run_job([str(scene)], out, _options(tiny_model, None), client)
    assert not first.failures and _tiles(out) == 36  # 6 x 6 tiles, one per tile step
    second = run_job([str(scene)], out, _options(tiny_model, 16), client, overwrite=True)
    assert not second.failures
    assert second.blocks_skipped == 0 and second.blocks_run == second.blocks_total > 0
    assert _tiles(out) == _classified_alone(scene, tiny_model, 16, tmp_path) > 36


@pytest.mark.slow
def test_a_block_stored_with_one_file_is_classified_again(client, scene, tiny_model, tmp_path):
    # The whole run, for the answer; then one interrupted after three blocks.
    whole = tmp_path / "whole"
    assert not run_job([str(scene)], whole, _options(tiny_model, 16), client, 2).failures

    def interrupt_after_three(blocks_done, blocks, tiles_done, tiles):
        if blocks_done >= 3:
            raise KeyboardInterrupt

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_job([str(scene)], out, _options(tiny_model, 16), client, 2, progress=interrupt_after_three)
    stored = sorted((out / WORK).glob("*/*.tif"))
    assert len(stored) >= 3
    stored[0].unlink()  # a block with its .gpkg alone (its .tif lost)
    result = run_job([str(scene)], out, _options(tiny_model, 16), client, 2)
    assert not result.failures
    assert result.blocks_skipped == len(stored) - 1
    assert result.blocks_run == result.blocks_total - result.blocks_skipped
    with rasterio.open(out / "scene.tif") as got, rasterio.open(whole / "scene.tif") as want:
        np.testing.assert_array_equal(got.read(), want.read())
    assert _tiles(out) == _tiles(whole)


def test_classify_many_never_replaces_its_mask(client, scene, tiny_model, tmp_path, capsys):
    # The tiles of a first run used as the mask of a second into the same folder, with --overwrite.
    out = tmp_path / "out"
    assert not run_job([str(scene)], out, _options(tiny_model, None), client).failures
    mask = out / "scene.gpkg"
    before = mask.read_bytes()
    argv = ["classify-many", str(scene), "--out-dir", str(out), "--model", str(tiny_model), "--mask", str(mask)]
    assert main([*argv, "--scheduler", client.scheduler.address, "--overwrite"]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert "Traceback" not in err and len(lines) == 1, err
    assert "is the same file as the mask (--mask)" in err and "never replaces an input" in err, err
    assert mask.read_bytes() == before


def test_a_class_map_of_an_earlier_run_is_not_classified_as_an_image(client, scene, tiny_model, tmp_path, capsys):
    # `classify-many 'data/**/*.tif' --out-dir data/out` run twice: the second run's glob found the
    # first run's class maps; they failed as "2 usable bands" (or, given --bands, were classified
    # like images). Now they are named for what they are and left alone.
    out = tmp_path / "out"
    assert not run_job([str(scene)], out, _options(tiny_model, None), client).failures
    class_map = out / "scene.tif"
    before = class_map.read_bytes()
    result = run_job([str(scene), str(class_map)], out, _options(tiny_model, None), client)
    assert [job.path for job in result.failures] == [str(class_map)]
    assert "a class map an earlier run wrote into" in str(result.failures[0].error)
    assert result.blocks_run == 0 and class_map.read_bytes() == before
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "manifest.jsonl",
        "scene.gpkg",
        "scene.tif",
        "summary.csv",
    ]
