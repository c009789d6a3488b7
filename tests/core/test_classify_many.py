"""classify-many on a 2-worker Dask LocalCluster (loopback, processes, one thread each).

The same as `classify` (attribute for attribute, cell for cell) on two rasters, with an
overlapping stride and small blocks so that halo tiles and an all-nodata block occur; a
worker killed mid-task; a job interrupted and resumed; broken inputs among good ones.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from osgeo import ogr

from rs_ghost_qgis.cli.main import main
from rs_ghost_qgis.cli.many import EXIT_SOME_FAILED
from rs_ghost_qgis.core.classify.pipeline import ClassifyOptions, classify
from rs_ghost_qgis.core.many.job import run_job
from rs_ghost_qgis.core.many.manifest import MANIFEST
from rs_ghost_qgis.core.many.worker import worker_model
from rs_ghost_qgis.core.options import Area
from rs_ghost_qgis.core.sources.rasterio_source import RasterioSource
from tests.core.engine_data import class_pattern, write_raster

distributed = pytest.importorskip("distributed")

REPO = Path(__file__).resolve().parents[2]
STRIDE = 16  # half the tiny model's 32 px tile: tiles overlap, blocks need a halo
BLOCK_CELLS = 4  # small blocks: a dozen per raster


@pytest.fixture(scope="module")
def rasters(tmp_path_factory) -> list[Path]:
    """Two rasters: one whose size is not a multiple of the cell, one with a nodata corner (a block of nodata)."""
    folder = tmp_path_factory.mktemp("many_in")
    rng = np.random.default_rng(1)
    first = class_pattern(rng.integers(0, 3, size=(7, 8)), 32)[:, :210, :245]
    second = class_pattern(rng.integers(0, 3, size=(6, 6)), 32)
    second[:, :80, :80] = 0  # nodata: the top-left block has no tile to classify
    return [
        write_raster(folder / "first.tif", np.ascontiguousarray(first)),
        write_raster(folder / "second.tif", second, nodata=0, origin=(520_000.0, 6_010_000.0)),
    ]


@pytest.fixture(scope="module")
def expected(rasters, tiny_model, tmp_path_factory) -> dict[str, dict]:
    """The single-process `classify` of each raster: features by (tile_row, tile_col), and the class map."""
    out = tmp_path_factory.mktemp("many_single")
    found = {}
    for raster in rasters:
        options = ClassifyOptions(
            model_path=str(tiny_model),
            stride=STRIDE,
            threads=1,
            out_vector=str(out / f"{raster.stem}.gpkg"),
            out_raster=str(out / f"{raster.stem}.tif"),
        )
        with RasterioSource(raster) as source:
            result = classify(source, options)
        found[raster.stem] = {**_read(out, raster.stem), "hectares": [row.hectares for row in result.areas]}
    return found


def _options(model: Path) -> ClassifyOptions:
    return ClassifyOptions(model_path=str(model), stride=STRIDE, threads=1)


def _read(folder: Path, name: str) -> dict:
    """Features keyed by grid position (attributes and WKB) and both bands of the class raster."""
    ds = ogr.Open(str(folder / f"{name}.gpkg"))
    layer = ds.GetLayer(0)
    count = layer.GetLayerDefn().GetFieldCount()
    features = {}
    for feature in layer:
        values = tuple(feature.GetField(i) if feature.IsFieldSetAndNotNull(i) else None for i in range(count))
        assert values[:2] not in features, f"tile {values[:2]} written twice"
        features[values[:2]] = (values, bytes(feature.GetGeometryRef().ExportToIsoWkb()))
    with rasterio.open(folder / f"{name}.tif") as tif:
        return {"features": features, "raster": tif.read(), "transform": tif.transform, "layer": layer.GetName()}


def _assert_same(out: Path, expected: dict, names=("first", "second")) -> None:
    for name in names:
        got, want = _read(out, name), expected[name]
        assert got["layer"] == want["layer"]
        assert got["features"].keys() == want["features"].keys()
        assert got["features"] == want["features"]
        np.testing.assert_array_equal(got["raster"], want["raster"])
        assert got["transform"] == want["transform"]
    assert not list(out.glob(".*.part*")), "temporary files left at the top of DIR"


def test_same_as_classify_on_two_rasters(client, rasters, tiny_model, expected, tmp_path):
    result = run_job([str(r) for r in rasters], tmp_path, _options(tiny_model), client, BLOCK_CELLS)
    assert not result.failures
    assert result.blocks_total > 2 * 4 and result.blocks_run == result.blocks_total
    _assert_same(tmp_path, expected)
    # An all-nodata block happened and was merged as nodata tiles, not as a failure.
    second = next(job for job in result.rasters if job.name == "second")
    assert any(record["tiles_classified"] == 0 for record in second.done.values())
    # The area per class over both rasters, in summary.csv, adds the single runs' areas.
    rows = [row for row in csv.DictReader(result.summary_csv.read_text().splitlines()) if row["raster"] == "all"]
    want = np.add(expected["first"]["hectares"], expected["second"]["hectares"])
    np.testing.assert_allclose([float(row["hectares"]) for row in rows], want, rtol=1e-6)
    # A rerun finds everything done: no block runs again, the outputs stay.
    again = run_job([str(r) for r in rasters], tmp_path, _options(tiny_model), client, BLOCK_CELLS)
    assert again.blocks_run == 0 and again.blocks_skipped == result.blocks_total and not again.failures


def test_one_block_per_raster(client, rasters, tiny_model, expected, tmp_path):
    """Rasters smaller than a block: the engine's own files are published, with the same values."""
    result = run_job([str(r) for r in rasters], tmp_path, _options(tiny_model), client)
    assert not result.failures and result.blocks_total == 2
    _assert_same(tmp_path, expected)
    totals = result.totals()
    want = np.add(expected["first"]["hectares"], expected["second"]["hectares"])
    np.testing.assert_allclose([row["hectares"] for row in totals], want, rtol=1e-9)


def test_raster_in_degrees(client, tiny_model, tmp_path):
    """A grid in the local UTM zone: blocks are boxes in UTM, read through the raster's degrees (warped)."""
    image = class_pattern(np.random.default_rng(2).integers(0, 3, size=(6, 8)), 32)
    raster = write_raster(tmp_path / "degrees.tif", image, crs="EPSG:4326", res=0.0001, origin=(13.2, 53.9))
    single = tmp_path / "single"
    options = _options(tiny_model)
    with RasterioSource(raster) as source:
        outputs = {"out_vector": str(single / "degrees.gpkg"), "out_raster": str(single / "degrees.tif")}
        classify(source, dataclasses.replace(options, **outputs))
    result = run_job([str(raster)], tmp_path / "out", options, client, BLOCK_CELLS)
    assert not result.failures and result.blocks_total > 1, [job.error for job in result.failures]
    # Warped strips end at block edges, and GDAL's approximate transformer (0.125 px) depends on a
    # strip's extent: the resampled pixels, so the probabilities, differ slightly (docs/ENGINE.md).
    got, want = _read(tmp_path / "out", "degrees"), _read(single, "degrees")
    assert got["features"].keys() == want["features"].keys()
    for key, (values, wkb) in want["features"].items():
        other, other_wkb = got["features"][key]
        assert other_wkb == wkb and other[:4] == values[:4]  # position, geometry and class: the same
        for a, b in zip(values, other, strict=True):
            assert (a is None and b is None) or a == b or abs(a - b) <= 0.02
    np.testing.assert_array_equal(got["raster"][0], want["raster"][0])  # the class map
    assert np.abs(got["raster"][1].astype(int) - want["raster"][1]).max() <= 2  # confidence, percent


@pytest.mark.slow
def test_worker_killed_mid_task(client, rasters, tiny_model, expected, tmp_path):
    marker = str(tmp_path / "killed")

    class KillOnce(distributed.WorkerPlugin):
        """SIGKILLs the first worker that starts a block, once (the marker file says it happened)."""

        name = "rs-ghost-kill-once"

        def transition(self, key, start, finish, **kwargs):
            if finish == "executing" and str(key).startswith("rs-ghost-block-"):
                try:
                    os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
                except FileExistsError:
                    return
                os.kill(os.getpid(), signal.SIGKILL)

    client.register_plugin(KillOnce())
    try:
        result = run_job([str(r) for r in rasters], tmp_path / "out", _options(tiny_model), client, BLOCK_CELLS)
    finally:
        client.unregister_worker_plugin(KillOnce.name)
    assert Path(marker).exists(), "no worker was killed"
    assert not result.failures and result.blocks_run == result.blocks_total
    _assert_same(tmp_path / "out", expected)
    client.wait_for_workers(2, timeout=60)  # the nanny restarts it for the next tests


def test_mask_and_gdal_path(client, rasters, tiny_model, tmp_path):
    """A triangle mask (blocks get polygon areas, some none) on a raster read through /vsizip/."""
    archive = tmp_path / "scenes.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.write(rasters[0], "first.tif")
    x0, y0 = 500_000.0, 6_000_000.0
    mask = Area(geometries=[shapely.Polygon([(x0, y0), (x0 + 2400, y0 - 300), (x0 + 500, y0 - 2000)])])
    options = dataclasses.replace(_options(tiny_model), area=mask)
    single = tmp_path / "single"
    with RasterioSource(rasters[0]) as source:
        classify(
            source,
            dataclasses.replace(options, out_vector=str(single / "first.gpkg"), out_raster=str(single / "first.tif")),
        )
    result = run_job([f"/vsizip/{archive}/first.tif"], tmp_path / "out", options, client, BLOCK_CELLS)
    assert not result.failures and result.blocks_total > 1
    plan = result.rasters[0].plan
    assert plan.blocks[0].area.geometries is not None
    _assert_same(tmp_path / "out", {"first": _read(single, "first")}, names=("first",))


def test_interrupted_job_resumes(client, rasters, tiny_model, expected, tmp_path):
    seen = []

    def interrupt_after_three(blocks_done, blocks, tiles_done, tiles):
        seen.append(blocks_done)
        if blocks_done >= 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_job(
            [str(r) for r in rasters],
            tmp_path,
            _options(tiny_model),
            client,
            BLOCK_CELLS,
            progress=interrupt_after_three,
        )
    assert not (tmp_path / "first.gpkg").exists() or not (tmp_path / "second.gpkg").exists()
    finished = len((tmp_path / MANIFEST).read_text().splitlines())
    assert finished >= 3
    result = run_job([str(r) for r in rasters], tmp_path, _options(tiny_model), client, BLOCK_CELLS)
    assert result.blocks_skipped >= 3
    assert result.blocks_run == result.blocks_total - result.blocks_skipped
    _assert_same(tmp_path, expected)


def test_broken_inputs_among_good_ones(client, rasters, tiny_model, tmp_path, capsys):
    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(b"not a raster at all" * 100)
    good = rasters[0].read_bytes()
    truncated = tmp_path / "truncated.tif"  # the header reads; the pixels are cut off
    write_raster(truncated, class_pattern(np.zeros((4, 4), int), 32))
    truncated.write_bytes(truncated.read_bytes()[:600])
    listing = tmp_path / "inputs.txt"
    listing.write_text(f"# a list of inputs\n{rasters[0]}\n\ngarbage.tif\ntruncated.tif\nmissing.tif\n")
    out = tmp_path / "out"
    code = main(
        [
            "classify-many",
            str(listing),
            str(rasters[1]),
            "--out-dir",
            str(out),
            "--model",
            str(tiny_model),
            "--stride",
            str(STRIDE),
            "--block-cells",
            str(BLOCK_CELLS),
            "--scheduler",
            client.scheduler.address,
        ]
    )
    captured = capsys.readouterr()
    assert code == EXIT_SOME_FAILED, captured.err
    failed = [line for line in captured.err.splitlines() if line.startswith("failed:")]
    assert len(failed) == 3, captured.err
    for name in ("garbage.tif", "truncated.tif", "missing.tif"):
        assert sum(name in line for line in failed) == 1
    assert "Traceback" not in captured.err
    assert (out / "first.gpkg").exists() and (out / "second.tif").exists()
    assert not (out / "garbage.gpkg").exists() and not (out / "truncated.tif").exists()
    assert not list(out.glob(".*.part*"))
    assert rasters[0].read_bytes() == good
    assert "Forest" in captured.out and "summary:" in captured.out


def test_user_mistakes_are_one_line_exit_2(tiny_model, tmp_path, capsys):
    for extra in (["--workers", "0"], ["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"]):
        code = main(["classify-many", str(tmp_path), "--out-dir", str(tmp_path / "o"), *extra])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "--workers" in err, err
    code = main(["classify-many", str(tmp_path / "*.tif"), "--out-dir", str(tmp_path / "o"), "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "matches no file" in err, err


def test_the_plugin_and_the_other_commands_never_import_dask():
    code = (
        "import sys\n"
        "from rs_ghost_qgis.cli.main import _parser\n"
        "_parser().parse_args(['classify-many', 'x.tif', '--out-dir', 'o'])\n"
        "import rs_ghost_qgis.cli.many, rs_ghost_qgis.core.many.job, rs_ghost_qgis.core.many.blocks\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_a_worker_loads_the_model_once_and_again_when_it_changes(tiny_model, tmp_path):
    copy = tmp_path / "model.onnx"
    copy.write_bytes(Path(tiny_model).read_bytes())
    first = worker_model(str(copy), 1)
    assert worker_model(str(copy), 1) is first  # the next block reuses the session
    os.utime(copy, ns=(copy.stat().st_atime_ns, copy.stat().st_mtime_ns + 10**9))  # replaced between jobs
    assert worker_model(str(copy), 1) is not first


@pytest.mark.slow
def test_local_workers_keep_glibcs_own_malloc_settings():
    # Dask's MALLOC_TRIM_THRESHOLD_ would freeze glibc's mmap threshold and slow the engine. A new
    # process, as classify-many is: a Nanny writes its variables into its own process's
    # environment too, so this module's other cluster has already set it here.
    probe = (
        "import os, distributed\n"
        "from rs_ghost_qgis.core.many.job import local_cluster\n"
        "if __name__ == '__main__':\n"
        "    with local_cluster(1) as cluster, distributed.Client(cluster) as client:\n"
        "        print(list(client.run(lambda: os.environ.get('MALLOC_TRIM_THRESHOLD_')).values()),\n"
        "              list(client.nthreads().values()))\n"
    )
    environ = {k: v for k, v in os.environ.items() if k != "MALLOC_TRIM_THRESHOLD_"}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=environ, check=False
    )
    assert done.stdout.strip() == "[None] [1]", done.stdout + done.stderr
