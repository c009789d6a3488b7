"""Issue 24: a GeoPackage's other content is never lost; complex rasters, local CRSs and bad training flags are refused.

Each test writes its own inputs and runs the command line as a user would (``main``): one
``error:`` line and exit code 2 (classify-many: a ``failed:`` line and exit 3), and nothing
written or changed that the run did not own.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import rasterio
from osgeo import gdal, ogr, osr

from rs_ghost_qgis.cli import many
from rs_ghost_qgis.cli.main import main
from rs_ghost_qgis.core.crs import transform_xy
from rs_ghost_qgis.core.errors import InputError
from rs_ghost_qgis.core.sinks import other_layers
from tests.core.engine_data import class_pattern, write_raster
from tests.core.test_train import SMALL, make_class_tree, stage_args, train_args
from training import cli as training_cli

PATTERN = np.array([[0, 1, 2], [2, 1, 0], [1, 1, 1]])


@pytest.fixture
def scene(tmp_path) -> Path:
    return write_raster(tmp_path / "scene.tif", class_pattern(PATTERN, 32))


def _error_line(capfd) -> str:
    """The one error said on stderr (no traceback, no GDAL 'ERROR' lines)."""
    err = capfd.readouterr().err
    assert "Traceback" not in err and "ERROR " not in err, err
    lines = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


def _classify(raster: Path, model: Path, *extra: str) -> int:
    return main(["classify", str(raster), "--model", str(model), "--threads", "1", *extra])


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- (1) a GeoPackage's other content is never lost ------------------------------------------


def _raster_geopackage(path: Path, source: Path) -> np.ndarray:
    """A GeoPackage holding one raster tiles table (as `gdal_translate -of GPKG` makes); returns its pixels."""
    gdal.Translate(str(path), str(source), format="GPKG")
    return _pixels(path)


def _pixels(path: Path) -> np.ndarray:
    """The pixels of a raster file (fails if GDAL no longer recognises it)."""
    with rasterio.open(path) as ds:
        return ds.read()


def test_overwrite_keeps_a_geopackage_holding_a_raster(scene, tiny_model, tmp_path, capfd):
    # It replaced the file: the class layer alone was left, and GDAL no longer saw a raster.
    out = tmp_path / "out"
    out.mkdir()
    project = out / "project.gpkg"
    pixels = _raster_geopackage(project, scene)
    before = project.read_bytes()
    assert _classify(scene, tiny_model, "--out-vector", str(project), "--overwrite") == 2
    line = _error_line(capfd)
    assert "raster project" in line and "--overwrite" in line and "choose another file name for --out-vector" in line
    assert project.read_bytes() == before
    np.testing.assert_array_equal(_pixels(project), pixels)
    assert _files(out) == ["project.gpkg"]  # no temporary left


def _attribute_table(path: Path) -> None:
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    ds.CreateLayer("notes", geom_type=ogr.wkbNone)


def _plain_table(path: Path) -> None:
    # A table GDAL does not register (QGIS's layer_styles may be one, or another program's own).
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE site_visits (day TEXT)")
        db.commit()


def _file_metadata(path: Path) -> None:
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    ds.SetMetadata({"PROJECT": "wetlands 2024"})


@pytest.mark.parametrize(
    "make, named",
    [(_attribute_table, "table notes"), (_plain_table, "table site_visits"), (_file_metadata, "the file's metadata")],
)
def test_overwrite_refuses_other_tables_or_metadata(scene, tiny_model, tmp_path, capfd, make, named):
    out = tmp_path / "out"
    out.mkdir()
    project = out / "project.gpkg"
    make(project)
    before = project.read_bytes()
    assert _classify(scene, tiny_model, "--out-vector", str(project), "--overwrite") == 2
    assert f"holds other layers ({named})" in _error_line(capfd)
    assert project.read_bytes() == before
    assert _files(out) == ["project.gpkg"]


def test_overwrite_replaces_a_geopackage_holding_only_the_earlier_run(scene, tiny_model, tmp_path, capfd):
    # The refusal is about other content: the earlier run's own layer (and its metadata) is replaced.
    vector = tmp_path / "tiles.gpkg"
    assert _classify(scene, tiny_model, "--out-vector", str(vector)) == 0
    assert other_layers(vector, "scene_classes") == []
    assert _classify(scene, tiny_model, "--out-vector", str(vector), "--overwrite") == 0
    assert ogr.Open(str(vector)).GetLayerByName("scene_classes").GetFeatureCount() == PATTERN.size


def test_a_layer_of_our_name_that_is_a_raster_is_not_ours(scene, tmp_path):
    project = tmp_path / "project.gpkg"
    gdal.Translate(str(project), str(scene), format="GPKG", creationOptions=["RASTER_TABLE=scene_classes"])
    assert other_layers(project, "scene_classes") == ["raster scene_classes"]


def test_a_file_that_is_no_geopackage_holds_no_layers(tmp_path):
    path = tmp_path / "old.gpkg"
    path.write_bytes(b"not a database")
    assert other_layers(path, "scene_classes") == []


def test_classify_many_overwrite_keeps_a_geopackage_holding_a_raster(scene, tiny_model, tmp_path, capfd):
    out = tmp_path / "out"
    out.mkdir()
    taken = out / "scene.gpkg"  # the name classify-many gives the tiles of scene.tif
    pixels = _raster_geopackage(taken, scene)
    argv = ["classify-many", str(scene), "--model", str(tiny_model), "--out-dir", str(out)]
    assert main([*argv, "--workers", "1", "--overwrite"]) == 2
    assert "raster scene" in _error_line(capfd)
    np.testing.assert_array_equal(_pixels(taken), pixels)
    assert not (out / "scene.tif").exists()


# --- (2) tracebacks: complex rasters, local CRSs, training flags --------------------------------


@pytest.mark.parametrize("kind, name", [(gdal.GDT_CInt16, "CInt16"), (gdal.GDT_CFloat32, "CFloat32")])
def test_complex_raster_is_refused(tiny_model, tmp_path, capfd, kind, name):
    # CInt16 was a TypeError traceback; CFloat32 lost its imaginary part and was classified as garbage.
    raster = tmp_path / "sar.tif"
    image = class_pattern(PATTERN, 32).astype(np.float32)
    ds = gdal.GetDriverByName("GTiff").Create(str(raster), image.shape[2], image.shape[1], 3, kind)
    ds.SetGeoTransform((500_000.0, 10.0, 0.0, 6_000_000.0, 0.0, -10.0))
    ds.SetProjection(_utm33())
    for band in range(3):
        ds.GetRasterBand(band + 1).WriteArray(image[band] + 1j * image[band])
    ds = None
    out = tmp_path / "out"
    assert _classify(raster, tiny_model, "--out-vector", str(out / "t.gpkg"), "--out-raster", str(out / "c.tif")) == 2
    line = _error_line(capfd)
    assert f"complex pixel values ({name})" in line and "Convert the raster to real bands" in line
    assert not out.exists() or _files(out) == []


def _utm33() -> str:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    return srs.ExportToWkt()


def _local(path: Path) -> Path:
    """A raster in a local (engineering) CRS: a site grid in metres, tied to no place on the Earth."""
    write_raster(path, class_pattern(PATTERN, 32), crs=None)
    srs = osr.SpatialReference()
    srs.SetLocalCS("quarry site grid")
    srs.SetLinearUnits("metre", 1.0)
    ds = gdal.Open(str(path), gdal.GA_Update)
    ds.SetProjection(srs.ExportToWkt())
    ds = None
    return path


def test_raster_in_a_local_crs_is_refused(tiny_model, tmp_path, capfd):
    raster = _local(tmp_path / "site.tif")
    out = tmp_path / "out"
    assert _classify(raster, tiny_model, "--out-vector", str(out / "t.gpkg")) == 2
    line = _error_line(capfd)
    assert "local (engineering) coordinate system" in line and "quarry site grid" in line and "gdal_edit" in line
    assert not out.exists() or _files(out) == []


def test_classify_many_with_a_local_crs_among_good_rasters(scene, tiny_model, tmp_path, capfd):
    _local(tmp_path / "site.tif")
    out = tmp_path / "out"
    argv = ["classify-many", str(scene), str(tmp_path / "site.tif"), "--model", str(tiny_model)]
    assert main([*argv, "--out-dir", str(out), "--workers", "1"]) == many.EXIT_SOME_FAILED
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err, captured.err
    failed = [line for line in captured.err.splitlines() if line.startswith("failed:")]
    assert len(failed) == 1 and "site.tif" in failed[0] and "local (engineering)" in failed[0], captured.err
    assert "done:" in captured.out + captured.err
    assert (out / "scene.gpkg").exists() and (out / "scene.tif").exists()
    assert not (out / "site.gpkg").exists()


def test_no_coordinate_operation_is_one_clear_error():
    # The engine's last line of defence (a face that let such a CRS through): no TypeError on a null transform.
    srs = osr.SpatialReference()
    srs.SetLocalCS("quarry site grid")
    with pytest.raises(InputError, match="No coordinate operation is known"):
        transform_xy([[0.0, 0.0]], srs.ExportToWkt(), _utm33())


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return make_class_tree(tmp_path_factory.mktemp("round2") / "tree", per_class=3)


@pytest.mark.parametrize(
    "flag, value, words",
    [
        ("--lr", "-0.1", "--lr must be a number above 0"),
        ("--lr", "0", "--lr must be a number above 0"),
        ("--lr", "nan", "--lr must be a number above 0"),
        ("--weight-decay", "-1", "--weight-decay must be 0"),
        ("--workers", "-1", "--workers must be at least 0"),
    ],
)
@pytest.mark.parametrize("command", ["run", "train"])
def test_training_numbers_are_checked_up_front(tree, tmp_path, capsys, command, flag, value, words):
    out = tmp_path / "out"
    if command == "run":
        argv = ["run", "--student", SMALL, "--distill", "none", *stage_args(tree, out)]
    else:
        argv = train_args(tree, out)
    assert training_cli.main([*argv, flag, value]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert words in err
    assert not out.exists()  # refused before the data was read or a run folder made
