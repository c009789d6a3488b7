"""Issue 12 hardening: no corrupt output, no half set of outputs, no lost data."""

import errno

import numpy as np
import pytest
from osgeo import ogr

from rs_ghost_qgis.cli import preview
from rs_ghost_qgis.cli.main import main
from rs_ghost_qgis.core.classify.sinks import publish_all
from rs_ghost_qgis.core.errors import OutputError
from tests.core.engine_data import class_pattern, write_raster

PATTERN = np.array([[0, 1, 2], [2, 1, 0], [1, 1, 1]])


@pytest.fixture
def raster(tmp_path):
    return write_raster(tmp_path / "scene.tif", class_pattern(PATTERN, 32))


def _run(raster, model, *extra):
    return main(["classify", str(raster), "--model", str(model), "--threads", "1", *extra])


def _error_line(capsys):
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("classifying")]
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0]
    return err[0]


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_failed_geopackage_commit_keeps_the_earlier_result(raster, tiny_model, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    vector, classes = out / "t.gpkg", out / "c.tif"
    assert _run(raster, tiny_model, "--out-vector", str(vector), "--out-raster", str(classes)) == 0
    before = {p: p.read_bytes() for p in (vector, classes)}
    capsys.readouterr()
    monkeypatch.setattr(ogr.Layer, "CommitTransaction", lambda self: 1)  # what a full disk returns
    code = _run(raster, tiny_model, "--out-vector", str(vector), "--out-raster", str(classes), "--overwrite")
    assert code == 2
    line = _error_line(capsys)
    assert f"Cannot write the GeoPackage {vector}" in line and "left as it was" in line
    assert {p: p.read_bytes() for p in (vector, classes)} == before
    assert _files(out) == ["c.tif", "t.gpkg"]  # no temporary left


def test_failing_preview_publishes_nothing(raster, tiny_model, tmp_path, capsys, monkeypatch):
    def full_disk(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(preview, "_draw", full_disk)
    out = tmp_path / "out"
    args = ["--out-vector", str(out / "t.gpkg"), "--out-raster", str(out / "c.tif"), "--preview", str(out / "p.png")]
    assert _run(raster, tiny_model, *args) == 2
    assert "No space left on device" in _error_line(capsys)
    assert not out.exists() or _files(out) == []


def test_overwrite_refuses_a_geopackage_with_other_layers(raster, tiny_model, tmp_path, capsys):
    vector = tmp_path / "mine.gpkg"
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(vector))
    ds.CreateLayer("roads", geom_type=ogr.wkbLineString)
    ds = None
    before = vector.read_bytes()
    assert _run(raster, tiny_model, "--out-vector", str(vector), "--overwrite") == 2
    line = _error_line(capsys)
    assert "other layers (roads)" in line and "--overwrite" in line and "--out-vector" in line
    assert vector.read_bytes() == before


def test_publish_claims_the_name_atomically(tmp_path):
    first, second = tmp_path / "a.tif", tmp_path / "b.tif"
    tmp_a, tmp_b = tmp_path / ".a.part.tif", tmp_path / ".b.part.tif"
    tmp_a.write_bytes(b"new a")
    tmp_b.write_bytes(b"new b")
    second.write_bytes(b"someone else's")  # written by a concurrent run after the early check
    with pytest.raises(OutputError, match="--overwrite"):
        publish_all([(tmp_a, first), (tmp_b, second)], overwrite=False)
    assert second.read_bytes() == b"someone else's"
    assert _files(tmp_path) == ["b.tif"]  # a.tif taken back, temporaries gone


def test_publish_with_overwrite_restores_earlier_files_on_failure(tmp_path):
    path, tmp = tmp_path / "a.tif", tmp_path / ".a.part.tif"
    path.write_bytes(b"old")
    tmp.write_bytes(b"new")
    missing = tmp_path / ".gone.part.tif"
    with pytest.raises(OutputError):
        publish_all([(tmp, path), (missing, tmp_path / "b.tif")], overwrite=True)
    assert path.read_bytes() == b"old" and _files(tmp_path) == ["a.tif"]
