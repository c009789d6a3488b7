"""Issue 24, classify-many: repeated inputs, clashing names, a locked DIR, a full disk, leftovers.

The command line runs as a user would (``main``) on a shared 2-worker LocalCluster
(``--scheduler``): one ``error:`` line and exit code 2 for a refused job, ``skipped:`` lines for
inputs given twice, and nothing left behind that the run did not own.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import pathlib
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

from rs_ghost_qgis.cli.main import main
from rs_ghost_qgis.cli.many import EXIT_SOME_FAILED
from rs_ghost_qgis.core import atomic
from rs_ghost_qgis.core.classify.pipeline import ClassifyOptions
from rs_ghost_qgis.core.errors import OutputError
from rs_ghost_qgis.core.many.job import run_job
from rs_ghost_qgis.core.many.lock import LOCK_NAME, folder_lock
from rs_ghost_qgis.core.many.manifest import WORK
from rs_ghost_qgis.core.many.raster import RasterJob, assign_names
from rs_ghost_qgis.core.many.worker import SCRATCH, scratch_folder, sweep_scratch
from tests.core.engine_data import class_pattern, write_raster

distributed = pytest.importorskip("distributed")


def _scene(path: Path, label: int = 0) -> Path:
    """A 3 x 3 tile raster of one class (so that its outputs tell which input made them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_raster(path, class_pattern(np.full((3, 3), label), 32))


def _many(client, model: Path, out: Path, *inputs, extra=()) -> int:
    argv = ["classify-many", *map(str, inputs), "--out-dir", str(out), "--model", str(model)]
    return main([*argv, "--scheduler", client.scheduler.address, *extra])


def _error_line(err: str) -> str:
    assert "Traceback" not in err and "ERROR " not in err, err
    lines = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# --- (a) one raster given twice ---------------------------------------------------------------


def test_the_same_raster_twice_is_classified_once_and_said(client, tiny_model, tmp_path, capsys):
    # One input got no output and no line: both jobs submitted the same Dask keys.
    scene = _scene(tmp_path / "in" / "scene.tif")
    link = tmp_path / "link.tif"
    link.symlink_to(scene)
    other_spelling = f"{tmp_path}/in/./scene.tif"  # a Path would tidy the dot away
    out = tmp_path / "out"
    assert _many(client, tiny_model, out, scene, other_spelling, link, scene) == 0
    captured = capsys.readouterr()
    skipped = [line for line in captured.out.splitlines() if line.startswith("skipped:")]
    assert len(skipped) == 3, captured.out
    assert f"skipped: {other_spelling}: the same file as {scene}; classified once" in skipped
    assert f"skipped: {link}: the same file as {scene}; classified once" in skipped
    assert f"skipped: {scene}: given more than once; classified once" in skipped
    assert sum(line.startswith("done:") for line in captured.out.splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == ["manifest.jsonl", "scene.gpkg", "scene.tif", "summary.csv"]


# --- (b) one file name in two folders ----------------------------------------------------------


def _classes(path: Path) -> set[int]:
    with rasterio.open(path) as ds:
        return set(np.unique(ds.read(1)).tolist()) - {255}


def test_one_file_name_in_two_folders_keeps_its_outputs_in_any_order(client, tiny_model, tmp_path):
    # Rerun in the other order, summary.csv and the outputs no longer belonged together.
    first, second = _scene(tmp_path / "2023" / "scene.tif", 0), _scene(tmp_path / "2024" / "scene.tif", 2)
    out, options = tmp_path / "out", ClassifyOptions(model_path=str(tiny_model), threads=1)
    names = {}
    for order in ([first, second], [second, first]):
        result = run_job([str(p) for p in order], out, options, client)
        assert not result.failures
        rows = list(csv.DictReader(result.summary_csv.read_text().splitlines()))
        for job in result.rasters:
            label = 0 if job.path == str(first) else 2
            names.setdefault(job.path, job.name)
            assert job.name == names[job.path] and job.name.startswith("scene_")  # stable, not "scene"
            assert _classes(out / f"{job.name}.tif") == {label}
            tiles = {row["class_id"]: int(row["tiles"]) for row in rows if row["raster"] == job.name}
            assert tiles[str(label)] == 9 and sum(tiles.values()) == 9, rows
    assert len(set(names.values())) == 2
    assert not (out / "scene.gpkg").exists()


def test_names_that_differ_in_case_alone_clash_too(tmp_path):
    jobs = [RasterJob(str(tmp_path / f"{folder}/{name}.tif")) for folder, name in (("a", "Scene"), ("b", "scene"))]
    for job in jobs:
        job.info = type("Info", (), {"name": Path(job.path).stem})()
    assign_names(jobs)
    assert jobs[0].name.startswith("Scene_") and jobs[1].name.startswith("scene_")


# --- (c) two runs into one DIR -------------------------------------------------------------------


def _write_lock(folder: Path, pid: int, token: str, host: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_NAME
    holder = {"pid": pid, "token": token, "host": host or socket.gethostname(), "since": time.time()}
    lock.write_text(json.dumps(holder))
    return lock


def test_a_second_run_into_a_folder_in_use_is_refused(client, tiny_model, tmp_path, capsys):
    # It died in merge_blocks (AttributeError ... GetLayer) as the runs removed each other's blocks.
    scene = _scene(tmp_path / "scene.tif")
    out = tmp_path / "out"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        time.sleep(0.2)
        lock = _write_lock(out, other.pid, atomic.process_token(other.pid))
        before = lock.read_bytes()
        assert _many(client, tiny_model, out, scene) == 2
        line = _error_line(capsys.readouterr().err)
        assert f"--out-dir {out} is in use by another run (pid {other.pid} on" in line
        assert "choose another --out-dir" in line and str(lock) in line
        assert lock.read_bytes() == before
        assert _files(out) == [LOCK_NAME]
    finally:
        other.kill()
        other.wait()


def test_a_lock_held_in_this_process_refuses_a_second(tmp_path):
    with folder_lock(tmp_path) as lock:
        assert lock.exists()
        with pytest.raises(OutputError, match="is in use by another run"), folder_lock(tmp_path):
            pass
    assert not lock.exists()


def test_a_lock_of_another_host_is_not_taken_over(tmp_path):
    # Its process cannot be checked from here: refuse, and say which file to delete if no run goes on.
    lock = _write_lock(tmp_path, 1, "1-1", host="render-node-7")
    held = r"\(pid 1 on render-node-7, since .*If no such run is going on, delete"
    with pytest.raises(OutputError, match=held), folder_lock(tmp_path):
        pass
    assert lock.exists()


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


@pytest.mark.parametrize("who", ["dead", "reused pid", "torn"])
def test_a_stale_lock_is_taken_over(client, tiny_model, tmp_path, capsys, who):
    scene = _scene(tmp_path / "scene.tif")
    out = tmp_path / "out"
    if who == "dead":
        _write_lock(out, _dead_pid(), "999999999-1")
    elif who == "reused pid":  # this very pid, but started long after the lock's holder
        _write_lock(out, os.getpid(), f"{os.getpid()}-1")
    else:  # a holder that died between creating the file and writing it
        lock = _write_lock(out, 1, "1-1")
        lock.write_text("")
        os.utime(lock, (time.time() - 3600, time.time() - 3600))
    assert _many(client, tiny_model, out, scene) == 0, capsys.readouterr().err
    assert (out / "scene.tif").exists() and not (out / LOCK_NAME).exists()
    assert not [p for p in out.iterdir() if p.name.startswith(LOCK_NAME)]


# --- (d) a refused job leaves no folder ------------------------------------------------------------


def test_a_refused_job_leaves_no_blocks_folder(client, tiny_model, tmp_path, capsys):
    # An empty .blocks/ was left in the input folder.
    folder = tmp_path / "scenes"
    _scene(folder / "scene.tif")
    (folder / "scene.gpkg").write_bytes(b"someone's file")
    assert _many(client, tiny_model, folder, folder) == 2
    assert "--overwrite" in _error_line(capsys.readouterr().err)
    assert _files(folder) == ["scene.gpkg", "scene.tif"]


def test_a_refused_job_leaves_no_out_dir_it_made(client, tmp_path, capsys):
    scene = _scene(tmp_path / "scene.tif")
    model = tmp_path / "broken.onnx"
    model.write_bytes(b"not a model")
    assert _many(client, model, tmp_path / "new" / "out", scene) == 2
    _error_line(capsys.readouterr().err)
    assert not (tmp_path / "new").exists()


# --- (e) a full disk ---------------------------------------------------------------------------------


def test_a_full_disk_while_storing_a_block_is_one_clear_error(client, tiny_model, tmp_path, capsys, monkeypatch):
    # ENOSPC escaped from _store_block as a traceback.
    scene = write_raster(tmp_path / "scene.tif", class_pattern(np.random.default_rng(3).integers(0, 3, (6, 6)), 32))
    out = tmp_path / "out"
    write_bytes = pathlib.Path.write_bytes

    def full_disk(self, data):
        if WORK not in self.parts:
            return write_bytes(self, data)
        with open(self, "wb") as stream:
            stream.write(data[: len(data) // 2])  # half a block, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(pathlib.Path, "write_bytes", full_disk)
    assert _many(client, tiny_model, out, scene, extra=["--block-cells", "2"]) == 2
    line = _error_line(capsys.readouterr().err)
    assert f"in {out / WORK}: the disk is full" in line
    assert "Free some space there, or choose another --out-dir" in line
    assert _files(out) == []  # no block, no temporary, no output, no lock, no .blocks


# --- (f) leftovers of killed processes ----------------------------------------------------------


def test_scratch_folders_of_dead_workers_are_swept(tmp_path):
    # A SIGKILLed worker's rs_ghost_block_* folder stayed in the temp dir forever.
    me = atomic.process_token()
    stale = [f"{SCRATCH}{_dead_pid()}-5_abc", f"{SCRATCH}{os.getpid()}-1_reused", f"{SCRATCH}old"]
    alive = [f"{SCRATCH}{me}_mine", f"{SCRATCH}fresh"]
    for name in stale + alive:
        (tmp_path / name).mkdir()
        (tmp_path / name / "tiles.gpkg").write_bytes(b"x")
    os.utime(tmp_path / f"{SCRATCH}old", (0, 0))
    removed = sweep_scratch(tmp_path)
    assert sorted(p.name for p in removed) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(alive)
    with scratch_folder() as scratch:
        assert Path(scratch).name.startswith(f"{SCRATCH}{me}_")


def test_a_temporary_file_of_a_reused_pid_is_stale(tmp_path):
    # A part whose pid runs again (a restarted container) was kept forever.
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        time.sleep(0.2)
        started = atomic.process_started(other.pid)
        if started is None:
            pytest.skip("no process start times here (/proc)")
        old = tmp_path / f".tiles.{other.pid}.0123abcd.part.gpkg"
        new = tmp_path / f".tiles.{other.pid}.4567cdef.part.gpkg"
        for path in (old, new):
            path.write_bytes(b"x")
        os.utime(old, (started - 3600, started - 3600))  # written before that process started
        assert atomic.remove_stale_parts(tmp_path) == [old]
        assert new.exists()
    finally:
        other.kill()
        other.wait()


# --- issue 25: the face's wording ------------------------------------------------------------------


def _failed_lines(err: str) -> list[str]:
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if line.startswith("failed:")]


def test_a_failed_line_names_options_as_the_command_line_does(client, tiny_model, tmp_path, capsys):
    # The failed: line read "Stride (--stride) 5 ..." where classify says "--stride 5 ...".
    scene = _scene(tmp_path / "scene.tif")
    assert _many(client, tiny_model, tmp_path / "out", scene, extra=["--stride", "5"]) == EXIT_SOME_FAILED
    (line,) = _failed_lines(capsys.readouterr().err)
    assert f"failed:  {scene}: --stride 5 is not possible for 32 px tiles" in line, line
    assert "(--stride)" not in line


def test_a_raster_of_blocks_with_nothing_classified_fails_like_classify(client, tiny_model, tmp_path, capsys):
    # The merge wrote its own "nothing was classified" message; the engine's is the one message.
    image = class_pattern(np.full((4, 4), 1), 32)
    image[:, ::32, ::32] = 0  # one nodata pixel in every tile: none is 100 % valid
    scene = write_raster(tmp_path / "holes.tif", image, nodata=0)
    extra = ["--block-cells", "2", "--min-valid", "1"]
    assert _many(client, tiny_model, tmp_path / "out", scene, extra=extra) == EXIT_SOME_FAILED
    (line,) = _failed_lines(capsys.readouterr().err)
    assert line == (
        f"failed:  {scene}: No tile of holes in the area has at least 100% valid pixels: nothing was classified."
    )
