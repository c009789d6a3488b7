"""Issue 30, output safety: no command replaces an input or an unrelated file, and writes fail in one line.

The rule lives in core/outputs.py; every case here goes through a face as a user would
(``python -m rs_ghost_qgis`` by its ``main``), except the three invariants of classify-many and
adapt, which are checked where they hold. Training's commands have theirs in
tests/training/test_hardening_round3_outputs_training.py.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
from pathlib import Path

import numpy as np
import pytest

from rs_ghost_qgis.cli.main import main
from rs_ghost_qgis.core import atomic
from rs_ghost_qgis.core.adapt.adapt import _Chips, _fit
from rs_ghost_qgis.core.classify.sinks import write_failed
from rs_ghost_qgis.core.errors import OutputError
from tests.core.adapt_data import labelled_polygons, nir_scene, write_labels
from tests.core.engine_data import class_pattern, write_raster


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and len(err.splitlines()) == 1, err
    return lines[0]


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden temporaries included) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _spellings(model: Path, tmp_path: Path) -> list[Path]:
    """``model`` itself, through '..', through a symbolic link and as a hard link."""
    link, hard = tmp_path / "link.onnx", tmp_path / "hard.onnx"
    link.symlink_to(model)
    os.link(model, hard)
    return [model, model.parent / ".." / model.parent.name / model.name, link, hard]


# --- adapt ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    return nir_scene(tmp_path_factory.mktemp("round3_adapt") / "nir.tif")


@pytest.fixture(scope="module")
def labels(tmp_path_factory) -> Path:
    return write_labels(tmp_path_factory.mktemp("round3_labels") / "labels.gpkg", labelled_polygons())


def _adapt(scene: Path, labels: Path, model: Path, out: Path, *extra: str) -> int:
    argv = ["adapt", str(scene), "--polygons", str(labels), "--class-field", "landcover", "--model", str(model)]
    return main([*argv, "--out", str(out), "--threads", "1", *extra])


def test_adapt_never_replaces_its_base_model_even_with_overwrite(scene, labels, tiny_model, tmp_path, capsys):
    # `adapt --out` equal to `--model` with --overwrite replaced its own base model.
    model = tmp_path / "base" / "model.onnx"
    model.parent.mkdir()
    model.write_bytes(tiny_model.read_bytes())
    for out in _spellings(model, tmp_path):
        assert _adapt(scene, labels, model, out, "--overwrite") == 2
        line = _error_line(capsys)
        assert "--out" in line and "the base model (--model)" in line and "never replaces an input" in line, line
    assert model.read_bytes() == tiny_model.read_bytes()


def test_adapt_never_replaces_its_polygons(scene, labels, tiny_model, tmp_path, capsys):
    before = labels.read_bytes()
    link = tmp_path / "adapted.onnx"
    link.symlink_to(labels)
    assert _adapt(scene, labels, tiny_model, link, "--overwrite") == 2
    assert "the polygons (--polygons)" in _error_line(capsys)
    assert labels.read_bytes() == before and link.is_symlink()


def test_adapt_on_a_full_disk_is_one_line_and_leaves_the_earlier_model(
    scene, labels, tiny_model, tmp_path, capsys, monkeypatch
):
    # A full disk during adapt gave a raw "No space left on device".
    out = tmp_path / "adapted.onnx"
    out.write_bytes(b"the earlier model")
    real_write = Path.write_bytes

    def full_disk(self, data):
        if self.name.endswith(".part.onnx"):
            with open(self, "wb") as partial:  # the disk fills up half way through the file
                partial.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    assert _adapt(scene, labels, tiny_model, out, "--overwrite") == 2
    line = _error_line(capsys)
    assert f"Cannot write the adapted model (--out) {out}: the disk is full." in line, line
    assert _snapshot(tmp_path) == {"adapted.onnx": b"the earlier model"}


def test_adapt_keeps_a_link_to_nowhere_without_overwrite(scene, labels, tiny_model, tmp_path, capsys):
    link = tmp_path / "adapted.onnx"
    link.symlink_to(tmp_path / "nowhere.onnx")
    assert _adapt(scene, labels, tiny_model, link) == 2
    assert f"{link} already exists; use --overwrite" in _error_line(capsys)
    assert link.is_symlink() and not link.exists()


# --- classify -------------------------------------------------------------------------------------


def test_classify_never_replaces_its_mask(tiny_model, tmp_path, capsys):
    # A previous run's tiles used as the mask of the next, into the same file with --overwrite.
    raster = write_raster(tmp_path / "scene.tif", class_pattern(np.zeros((2, 2), dtype=int), 32))
    tiles = tmp_path / "tiles.gpkg"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["classify", str(raster), "--model", str(tiny_model), "--out-vector", str(tiles)]) == 0
    capsys.readouterr()
    before = tiles.read_bytes()
    argv = ["classify", str(raster), "--model", str(tiny_model), "--mask", str(tiles), "--out-vector", str(tiles)]
    assert main([*argv, "--overwrite"]) == 2
    line = _error_line(capsys)
    assert "(--out-vector)" in line and "the mask (--mask)" in line and "never replaces an input" in line, line
    assert tiles.read_bytes() == before


def test_a_full_geopackage_says_why_without_sqlites_statement():
    # GDAL echoes the whole CREATE TABLE that failed: a full disk read as a screen of SQL.
    statement = 'sqlite3_exec(CREATE TABLE "scene_classes" ( "fid" INTEGER PRIMARY KEY, "geom" POLYGON))'
    message = str(
        write_failed("GeoPackage", Path("t.gpkg"), RuntimeError(f"{statement} failed: database or disk is full"))
    )
    assert message.startswith("Cannot write the GeoPackage t.gpkg: database or disk is full (disk full"), message
    assert "CREATE TABLE" not in message


def test_a_full_disk_while_classify_many_locks_its_folder_is_one_line(tiny_model, tmp_path, monkeypatch):
    # The lock file was created, its writing failed: a traceback, and an empty lock left behind.
    from rs_ghost_qgis.core.classify.pipeline import ClassifyOptions
    from rs_ghost_qgis.core.many.job import run_job

    def full_disk(descriptor):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    raster = write_raster(tmp_path / "scene.tif", class_pattern(np.zeros((2, 2), dtype=int), 32))
    monkeypatch.setattr(os, "fsync", full_disk)
    out = tmp_path / "out"
    with pytest.raises(OutputError, match=r"Cannot create the lock file .*: the disk is full; choose another"):
        run_job([str(raster)], out, ClassifyOptions(model_path=str(tiny_model), threads=1), client=None)
    assert not out.exists()


# --- the atomic write on a read-only file system ----------------------------------------------------


def test_a_failed_write_on_a_read_only_file_system_reports_the_write(tmp_path, monkeypatch):
    # On a read-only mount even unlinking a file that is not there fails (EROFS): the cleanup of
    # the temporary that was never made replaced the real error (rsghost:assess crashed there).
    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), "unlink")

    monkeypatch.setattr(Path, "unlink", read_only)
    with pytest.raises(OSError) as failure, atomic.atomic_path(tmp_path / "report.html") as tmp:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp))
    assert failure.value.filename != "unlink"
    assert list(tmp_path.iterdir()) == []


# --- three invariants no test guarded ---------------------------------------------------------------


def test_adapt_cross_validates_by_polygon_not_by_chip():
    # Eight polygons, each a tight cluster of 12 chips, their classes alternating: a chip's
    # neighbours in the same polygon give its class away, so grouping by chip would score ~100 %
    # while whole polygons held out carry no information about each other (about chance).
    rng = np.random.default_rng(0)
    polygons, per_polygon = 8, 12
    centres = rng.normal(0, 10, size=(polygons, 6))
    polygon = np.repeat(np.arange(polygons), per_polygon)
    features = centres[polygon] + rng.normal(0, 0.1, size=(len(polygon), 6))
    y = polygon % 2
    _, scores = _fit(_Chips(features, polygon), y, 2, 1, "features", 4)
    assert scores["cv_accuracy"] < 0.8, scores
