"""The class-map GeoTIFF written through osgeo.gdal (no rasterio in QGIS): its contract and its failures.

rasterio reads the files back here, an oracle independent of the GDAL calls that wrote them.
"""

import contextlib
import os
import stat

import numpy as np
import pytest
import rasterio
from affine import Affine
from osgeo import gdal, ogr, osr

from rs_ghost_qgis.cli.main import main
from rs_ghost_qgis.core.classify import sinks
from rs_ghost_qgis.core.classify.sinks import ClassRasterWriter
from rs_ghost_qgis.core.errors import OutputError
from tests.core.engine_data import class_pattern, write_raster
from tests.tiny_model import tiny_card

TRANSFORM = Affine(320, 0, 380000, 0, -320, 5974000)
TAGS = {"edge_policy": "pad: tiles at the edge", "tile": 32}


def _utm33() -> str:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    return srs.ExportToWkt()


def _write(path, width, height, seed=0):
    """A class map of random rows written through the writer; returns the (2, height, width) values."""
    rng = np.random.default_rng(seed)
    values = np.stack([rng.integers(0, 3, (height, width)), rng.integers(0, 101, (height, width))]).astype(np.uint8)
    writer = ClassRasterWriter(path, tiny_card(), _utm33(), TRANSFORM, width, height, TAGS)
    try:
        for row in range(height):
            writer.write_row(values[0, row], values[1, row])
        writer.commit()
    except BaseException:  # as the pipeline does
        writer.abort()
        raise
    return values


@contextlib.contextmanager
def _osgeo_exceptions(on: bool):
    """osgeo's process-wide exception switch set to ``on`` for the block, then put back (LIFO, as osgeo wants)."""
    modules = (gdal, ogr, osr)
    modes = [module.GetUseExceptions() for module in modules]
    for module in modules:
        module.UseExceptions() if on else module.DontUseExceptions()
    try:
        yield
    finally:
        for module, mode in reversed(list(zip(modules, modes, strict=True))):
            module.UseExceptions() if mode else module.DontUseExceptions()


@pytest.mark.parametrize(("width", "height"), [(7, 5), (300, 270)])
def test_class_raster_keeps_its_contract(tmp_path, width, height):
    path = tmp_path / "classes.tif"
    values = _write(path, width, height)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classes.tif"]  # no temporary left
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~_umask()
    with rasterio.open(path) as ds:
        np.testing.assert_array_equal(ds.read(), values)
        assert ds.count == 2 and ds.dtypes == ("uint8", "uint8") and ds.nodatavals == (255, 255)
        assert ds.crs.to_epsg() == 32633 and ds.transform == TRANSFORM
        assert ds.descriptions == ("class", "confidence_percent")
        # TIFF palettes hold no alpha: the unused entries read back black (opaque), as before.
        assert ds.colormap(1)[1] == (0x33, 0xA0, 0x2C, 255) and ds.colormap(1)[200][:3] == (0, 0, 0)
        assert ds.tags()["edge_policy"] == TAGS["edge_policy"] and ds.tags()["tile"] == "32"
        assert ds.tags(1) == {"CLASS_0": "Water", "CLASS_1": "Forest", "CLASS_2": "Crop"}
        assert ds.compression.name == "deflate" and ds.is_tiled == (width >= 256)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("exceptions", [False, True])
def test_class_raster_in_a_missing_folder_is_one_message(tmp_path, exceptions):
    with _osgeo_exceptions(exceptions), pytest.raises(OutputError, match="Cannot create the GeoTIFF"):
        ClassRasterWriter(tmp_path / "gone" / "c.tif", tiny_card(), _utm33(), TRANSFORM, 4, 4, TAGS)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("exceptions", [False, True])
def test_truncated_class_raster_is_caught_before_publication(tmp_path, monkeypatch, exceptions):
    """A file that lost its end (a full disk GDAL reported only in its log) is read back, refused and removed."""
    verify = ClassRasterWriter._verify

    def truncate_then_verify(self):
        with open(self._tmp, "r+b") as handle:
            handle.truncate(os.path.getsize(self._tmp) // 2)
        verify(self)

    monkeypatch.setattr(ClassRasterWriter, "_verify", truncate_then_verify)
    with _osgeo_exceptions(exceptions), pytest.raises(OutputError, match="Cannot write the GeoTIFF .*disk full"):
        _write(tmp_path / "c.tif", 300, 270)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def raster(tmp_path):
    return write_raster(tmp_path / "scene.tif", class_pattern(np.array([[0, 1], [2, 1]]), 32))


def _classify(raster, model, classes, *extra):
    args = ["classify", str(raster), "--model", str(model), "--threads", "1", "--out-raster", str(classes)]
    return main([*args, *extra])


def _error_line(capfd) -> str:
    """The one stderr line of a failed run: GDAL's own messages must not reach the terminal."""
    err = [line for line in capfd.readouterr().err.strip().splitlines() if not line.startswith("classifying")]
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def _full_disk(self, *args):
    gdal.Error(gdal.CE_Failure, 3, "c.tif: No space left on device")  # what GDAL's GTiff driver reports
    return gdal.CE_Failure


def _open_parts() -> list[str]:
    """The temporaries this process still holds open (Linux)."""
    names = (os.path.join("/proc/self/fd", fd) for fd in os.listdir("/proc/self/fd"))
    return [target for target in map(_link, names) if ".part." in target]


def _link(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:  # the listing's own descriptor, closed by now
        return ""


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="lists open files through Linux's /proc")
def test_abort_closes_the_file_while_the_error_is_still_alive(tmp_path, monkeypatch):
    """The traceback must not keep the dataset open: a full disk's last errors come at close, and
    Windows cannot delete an open file."""
    monkeypatch.setattr(gdal.Dataset, "WriteRaster", _full_disk)
    with pytest.raises(OutputError, match="No space left on device") as failure:
        _write(tmp_path / "c.tif", 300, 270)  # aborts inside its except block, as the pipeline does
    assert failure.value.__context__ is not None  # the error and its traceback are still alive here
    assert _open_parts() == [] and list(tmp_path.iterdir()) == []


def test_failed_block_write_keeps_the_earlier_class_raster(raster, tiny_model, tmp_path, capfd, monkeypatch):
    out = tmp_path / "out"
    classes = out / "c.tif"
    assert _classify(raster, tiny_model, classes) == 0
    before = classes.read_bytes()
    capfd.readouterr()
    monkeypatch.setattr(gdal.Dataset, "WriteRaster", _full_disk)
    assert _classify(raster, tiny_model, classes, "--overwrite") == 2
    line = _error_line(capfd)
    assert f"Cannot write the GeoTIFF {classes}: c.tif: No space left on device" in line and "left as it was" in line
    assert classes.read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["c.tif"]


def test_unreadable_class_raster_is_one_line_and_no_output(raster, tiny_model, tmp_path, capfd, monkeypatch):
    verify = sinks.ClassRasterWriter._verify

    def truncate_then_verify(self):
        self._tmp.write_bytes(self._tmp.read_bytes()[:200])
        verify(self)

    monkeypatch.setattr(sinks.ClassRasterWriter, "_verify", truncate_then_verify)
    out = tmp_path / "out"
    assert _classify(raster, tiny_model, out / "c.tif", "--out-vector", str(out / "t.gpkg")) == 2
    assert "Cannot write the GeoTIFF" in _error_line(capfd)
    assert not out.exists() or list(out.iterdir()) == []


def test_colour_table_is_the_cards_palette(tmp_path):
    # The card's hex colours read in one place (ModelCard.class_rgb); other values black (a GeoTIFF
    # palette holds no alpha: nodata 255 is what leaves cells transparent).
    path = tmp_path / "c.tif"
    _write(path, 4, 2)
    card = tiny_card()
    assert card.class_rgb == [(0x1F, 0x78, 0xB4), (0x33, 0xA0, 0x2C), (0xFF, 0xFF, 0x99)]
    with rasterio.open(path) as ds:
        table = ds.colormap(1)
    assert [table[i] for i in range(card.num_classes)] == [(*rgb, 255) for rgb in card.class_rgb]
    assert table[card.num_classes][:3] == (0, 0, 0)
