import select
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from osgeo import ogr, osr

from rs_ghost_qgis.cli.common import parse_bbox
from rs_ghost_qgis.cli.main import main
from rs_ghost_qgis.core.classify import pipeline
from rs_ghost_qgis.core.crs import to_wkt, transform_geometry
from rs_ghost_qgis.core.errors import InputError
from tests.core.engine_data import ORIGIN, class_pattern, write_raster

REPO = Path(__file__).resolve().parents[2]
PATTERN = np.array([[0, 1, 2], [2, 1, 0], [1, 1, 1]])
X0, Y0 = ORIGIN


@pytest.fixture
def raster(tmp_path):
    return write_raster(tmp_path / "scene.tif", class_pattern(PATTERN, 32))


def _tiles(path):
    ds = ogr.Open(str(path))  # keep the dataset alive while reading its layer
    return [(f["tile_row"], f["tile_col"], f["class_name"]) for f in ds.GetLayer(0)]


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0]
    return err[0]


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["classify", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--model", "--out-vector", "--out-raster", "--stride", "--bands", "--scale", "--mask", "--bbox"):
        assert option in out
    for option in ("--threads", "--batch-size", "--preview", "--overwrite"):
        assert option in out


def test_classify_end_to_end(raster, tiny_model, tmp_path, capsys):
    vector, classes = tmp_path / "out" / "t.gpkg", tmp_path / "out" / "c.tif"
    code = main(
        ["classify", str(raster), "--model", str(tiny_model), "--out-vector", str(vector)]
        + ["--out-raster", str(classes), "--threads", "1", "--batch-size", "4"]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "Water" in out and "hectares" in out and "not classified: 0 of 9 tiles" in out
    assert str(vector.resolve()) in out and "CPUExecutionProvider" in out
    with rasterio.open(classes) as ds:
        np.testing.assert_array_equal(ds.read(1), PATTERN)
    assert len(_tiles(vector)) == 9


def test_missing_input_is_one_line_exit_2(tiny_model, tmp_path, capsys):
    code = main(
        ["classify", str(tmp_path / "nope.tif"), "--model", str(tiny_model), "--out-raster", str(tmp_path / "c.tif")]
    )
    assert code == 2
    assert "does not exist" in _error_line(capsys)


def test_missing_bundled_model_is_said_plainly(raster, tmp_path, capsys, monkeypatch):
    from rs_ghost_qgis.core.model import runtime

    monkeypatch.setattr(runtime, "MODEL_DIRS", (tmp_path / "none",))
    monkeypatch.setattr(runtime.default_model_path, "__defaults__", ((tmp_path / "none",),))
    assert main(["classify", str(raster), "--out-raster", str(tmp_path / "c.tif")]) == 2
    line = _error_line(capsys)
    assert "bundled model is not there yet" in line and "make train" in line and "--model" in line
    assert main(["info"]) == 2
    assert "not there yet" in _error_line(capsys)


def test_nothing_to_write(raster, tiny_model, capsys):
    assert main(["classify", str(raster), "--model", str(tiny_model)]) == 2
    assert "Nothing to write" in _error_line(capsys)


def test_overwrite_refusal_and_overwrite(raster, tiny_model, tmp_path, capsys):
    out = tmp_path / "c.tif"
    out.write_bytes(b"old")
    args = ["classify", str(raster), "--model", str(tiny_model), "--out-raster", str(out)]
    assert main(args) == 2
    assert "already exists; use --overwrite to replace it" in _error_line(capsys)
    assert main(args + ["--overwrite"]) == 0


def test_bbox_option(raster, tiny_model, tmp_path, capsys):
    out = tmp_path / "c.tif"
    args = ["classify", str(raster), "--model", str(tiny_model), "--out-raster", str(out)]
    assert main(args + ["--bbox", f"{X0 + 330},{Y0 - 630},{X0 + 950},{Y0 - 10}"]) == 0
    with rasterio.open(out) as ds:
        np.testing.assert_array_equal(ds.read(1), PATTERN[0:2, 1:3])
    capsys.readouterr()
    assert main(args + ["--overwrite", "--bbox", "1,2,3"]) == 2
    assert "--bbox takes xmin,ymin,xmax,ymax" in _error_line(capsys)


def test_parse_bbox_with_crs():
    area = parse_bbox("13.18, 53.88, 13.23, 53.90, EPSG:4326")
    assert area.bounds == (13.18, 53.88, 13.23, 53.9) and "WGS 84" in area.crs_wkt
    with pytest.raises(InputError, match="Cannot read the coordinate reference system"):
        parse_bbox("1,2,3,4,EPSG:999999")


def _write_mask(path, polygons, epsg):
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = ds.CreateLayer("mask", srs=srs, geom_type=ogr.wkbPolygon)
    for polygon in polygons:
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetGeometry(ogr.CreateGeometryFromWkb(polygon.wkb))
        layer.CreateFeature(feature)
    ds = None
    return path


def test_mask_file_in_another_crs(raster, tiny_model, tmp_path, capsys):
    square = shapely.box(X0 + 340, Y0 - 620, X0 + 600, Y0 - 340)  # inside tile (1, 1)
    wgs84 = transform_geometry(square, to_wkt("EPSG:32633"), to_wkt("EPSG:4326"))
    mask = _write_mask(tmp_path / "mask.gpkg", [wgs84], 4326)
    vector = tmp_path / "t.gpkg"
    args = ["classify", str(raster), "--model", str(tiny_model), "--out-vector", str(vector), "--mask", str(mask)]
    assert main(args) == 0
    assert _tiles(vector) == [(1, 1, "Forest")]


def test_empty_and_far_away_masks(raster, tiny_model, tmp_path, capsys):
    args = ["classify", str(raster), "--model", str(tiny_model), "--out-raster", str(tmp_path / "c.tif"), "--mask"]
    assert main(args + [str(_write_mask(tmp_path / "empty.gpkg", [], 4326))]) == 2
    assert "mask is empty" in _error_line(capsys)
    far = _write_mask(tmp_path / "far.gpkg", [shapely.box(10, 40, 10.1, 40.1)], 4326)
    assert main(args + [str(far)]) == 2
    assert "does not overlap scene" in _error_line(capsys)
    assert main(args + [str(tmp_path / "none.gpkg")]) == 2
    assert "Mask file" in _error_line(capsys)
    (tmp_path / "text.gpkg").write_text("no")
    assert main(args + [str(tmp_path / "text.gpkg")]) == 2
    assert "not a vector file" in _error_line(capsys)


def test_bands_option(tmp_path, tiny_model, capsys):
    bgr = write_raster(tmp_path / "bgr.tif", class_pattern(PATTERN, 32, dtype=np.uint16, scale=10)[[2, 1, 0]])
    out = tmp_path / "c.tif"
    args = ["classify", str(bgr), "--model", str(tiny_model), "--out-raster", str(out), "--scale", "card"]
    assert main(args + ["--bands", "3,2,1"]) == 0
    with rasterio.open(out) as ds:
        np.testing.assert_array_equal(ds.read(1), PATTERN)
    capsys.readouterr()
    assert main(args + ["--bands", "3,2,x", "--overwrite"]) == 2
    assert "--bands takes band numbers" in _error_line(capsys)
    assert main(args + ["--bands", "9,2,1", "--overwrite"]) == 2
    assert "Band 9 is out of range" in _error_line(capsys)


def test_preview_png(raster, tiny_model, tmp_path, capsys):
    preview = tmp_path / "p.png"
    assert main(["classify", str(raster), "--model", str(tiny_model), "--preview", str(preview)]) == 0
    assert preview.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(preview) as image:
        assert image.width > 800 and image.height > 300
    assert list(tmp_path.glob(".*")) == []


def test_preview_draws_from_the_run_without_a_class_raster_or_new_statistics(raster, tiny_model, tmp_path, monkeypatch):
    from rs_ghost_qgis.core.radiometry import scaling
    from rs_ghost_qgis.core.radiometry.sample import sample_values

    samples = []
    monkeypatch.setattr(scaling, "sample_values", lambda *args: samples.append(args) or sample_values(*args))

    def no_class_raster(*args, **kwargs):
        raise AssertionError("without --out-raster no class raster is written, not even to draw the preview")

    monkeypatch.setattr(pipeline, "ClassRasterWriter", no_class_raster)
    preview = tmp_path / "p.png"
    args = ["classify", str(raster), "--model", str(tiny_model), "--preview", str(preview), "--scale", "percentile"]
    assert main(args) == 0
    assert preview.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(samples) == 1  # the run's statistics, carried to the preview in result.radiometry


def test_ctrl_c_exits_130_and_leaves_nothing(raster, tiny_model, tmp_path, capsys, monkeypatch):
    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline._Run, "execute", interrupted)
    out = tmp_path / "out"
    args = ["classify", str(raster), "--model", str(tiny_model), "--out-vector", str(out / "t.gpkg")]
    assert main(args + ["--out-raster", str(out / "c.tif")]) == 130
    assert "cancelled" in capsys.readouterr().err
    assert not out.exists() or list(out.iterdir()) == []


def test_info_prints_the_card(tiny_model, capsys):
    assert main(["info", "--model", str(tiny_model)]) == 0
    out = capsys.readouterr().out
    assert "Model card: tiny_cnn" in out and "| 0 | Water |" in out and "CPUExecutionProvider" in out


def test_real_process_exit_code_and_no_traceback(tmp_path):
    not_raster = tmp_path / "x.tif"
    not_raster.write_text("hello")
    run = subprocess.run(
        [sys.executable, "-m", "rs_ghost_qgis", "classify", str(not_raster), "--out-raster", str(tmp_path / "c.tif")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert run.stderr.strip().startswith("error: ") and "not a raster" in run.stderr and "Traceback" not in run.stderr


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--bands", "0"], "--bands takes band numbers from 1 up"),
        (["--bbox", "inf,0,1,2"], "bounding box (--bbox) (inf, 0.0, 1.0, 2.0) has a coordinate that is not a finite"),
        (["--bbox=-inf,nan,1,2"], "not a finite number"),
        (["--bbox", "13.1,53.8,13.2,inf,EPSG:4326"], "not a finite number"),
    ],
)
def test_bad_bands_and_non_finite_bbox_are_one_line_errors(raster, tiny_model, tmp_path, capsys, extra, expected):
    args = ["classify", str(raster), "--model", str(tiny_model), "--out-raster", str(tmp_path / "c.tif")]
    assert main(args + extra) == 2
    assert expected in _error_line(capsys)
    assert not (tmp_path / "c.tif").exists()


@pytest.mark.parametrize(
    ("fill", "expected"),
    [
        (np.nan, "has no valid pixels in bands 1,2,3 (all nodata, NaN or masked)"),
        (1e30, None),  # a constant raster: classified, no ZeroDivisionError
    ],
)
def test_float_rasters_of_nan_or_one_huge_value(tiny_model, tmp_path, capsys, fill, expected):
    raster = write_raster(tmp_path / "f.tif", np.full((3, 96, 96), fill, np.float32))
    code = main(["classify", str(raster), "--model", str(tiny_model), "--out-raster", str(tmp_path / "c.tif")])
    if expected is None:
        assert code == 0 and "Traceback" not in capsys.readouterr().err
    else:
        assert code == 2 and expected in _error_line(capsys)
        assert not (tmp_path / "c.tif").exists()


def test_crs_without_geotransform_is_one_line(tiny_model, tmp_path, capsys):
    path = tmp_path / "nogeo.tif"
    with rasterio.open(path, "w", driver="GTiff", width=96, height=96, count=3, dtype="uint8", crs="EPSG:32633") as ds:
        ds.write(class_pattern(PATTERN, 32))
    capsys.readouterr()
    assert main(["classify", str(path), "--model", str(tiny_model), "--out-raster", str(tmp_path / "c.tif")]) == 2
    assert "has a coordinate reference system but no geotransform" in _error_line(capsys)


@pytest.mark.parametrize("option", ["--out-raster", "--preview"])
def test_an_output_on_the_input_is_refused_even_with_overwrite(tmp_path, tiny_model, capsys, option):
    raster = write_raster(tmp_path / "scene.tif", class_pattern(PATTERN, 32))
    if option == "--preview":  # GDAL reads PNG too: a preview could replace a PNG input
        raster = raster.rename(tmp_path / "scene.png")
    before = raster.read_bytes()
    assert main(["classify", str(raster), "--model", str(tiny_model), option, str(raster), "--overwrite"]) == 2
    assert "is the input raster; writing it would replace the input" in _error_line(capsys)
    assert raster.read_bytes() == before


_STALLED_RUN = """
import sys, time
from rs_ghost_qgis.core.classify import pipeline
from rs_ghost_qgis.cli.main import main

def stalled(self):  # the outputs' temporary files exist now; wait to be signalled
    print("running", flush=True)
    time.sleep(120)

pipeline._Run.execute = stalled
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_ctrl_c_end_cleanly_and_leave_nothing(raster, tiny_model, tmp_path, signum, code):
    out = tmp_path / "out"
    args = ["classify", str(raster), "--model", str(tiny_model), "--out-vector", str(out / "t.gpkg")]
    args += ["--out-raster", str(out / "c.tif"), "--preview", str(out / "p.png")]
    process = subprocess.Popen(
        [sys.executable, "-c", _STALLED_RUN, *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell's background job ignores SIGINT, and Python keeps an inherited SIG_IGN: give
        # the child the default a user's terminal gives, wherever the suite runs.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        ready, _, _ = select.select([process.stdout], [], [], 120)  # a bounded wait for the run to start
        assert ready and process.stdout.readline().strip() == "running"
        assert len(list(out.glob(".*.part*"))) == 2  # the vector and raster temporaries
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == code
    assert stderr.strip() == "cancelled: no output was written." and "Traceback" not in stderr
    assert not out.exists() or list(out.iterdir()) == []


TINY_CARD_MAPPING = "linear 0..3000 -> 0..255 for all bands (card)"
SUMMARY_LINES = {
    "uint16": f"reflectance x 10,000 detected: {TINY_CARD_MAPPING}",
    "float 0..1": f"reflectance 0..1 detected (x 10,000 first): {TINY_CARD_MAPPING}",
    "float x 10,000": f"reflectance x 10,000 detected: {TINY_CARD_MAPPING}",
    "offset, tagged": "reflectance x 10,000 detected, offset 1000 removed (BOA_ADD_OFFSET -1000 in the metadata): "
    + TINY_CARD_MAPPING,
    "offset, no tag": f"reflectance x 10,000 detected: {TINY_CARD_MAPPING}",
    "uint8": "8-bit data: values used as they are (expected in 0..255)",
    "int16 with negatives": "unknown units (values -1450..1198): one 2-98 percentile range for all bands, ",
}


@pytest.mark.parametrize("kind", list(SUMMARY_LINES))
def test_summary_says_what_reached_the_model_and_why(tiny_model, tmp_path, capsys, kind):
    from tests.core.test_radiometry import write_kind

    raster, _, _ = write_kind(tmp_path / "r.tif", kind)
    vector = tmp_path / "t.gpkg"
    assert main(["classify", str(raster), "--model", str(tiny_model), "--out-vector", str(vector)]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    (scaling,) = [line for line in lines if line.startswith("scaling:")]
    (bands,) = [line for line in lines if line.startswith("bands:")]
    assert scaling[len("scaling:") :].strip().startswith(SUMMARY_LINES[kind]), scaling
    if kind == "uint8":  # GDAL marks 3-band 8-bit GeoTIFFs RGB: the colour interpretation names the bands
        assert bands.endswith("bands 1,2,3 matched by description to red, green, blue")
    else:
        assert "bands 1,2,3 assumed to hold red, green, blue" in bands and "--bands" in bands
    dataset = ogr.Open(str(vector))
    assert dataset.GetLayer(0).GetMetadata()["scaling"] == scaling[len("scaling:") :].strip()
    # On screen in the command line's words; in the file's metadata with field and flag, for every face.
    warned = {
        "offset, no tag": ("set --offset to 1000", "set Offset (--offset) to 1000"),
        "int16 with negatives": ("choose another --scale", "choose another Scaling (--scale)"),
    }
    if kind in warned:
        assert "warning: " in captured.err and warned[kind][0] in captured.err
        assert warned[kind][1] in dataset.GetLayer(0).GetMetadata()["scaling_warnings"]
    else:
        assert "warning" not in captured.err


def test_offset_option(tiny_model, tmp_path, capsys):
    from tests.core.test_radiometry import write_kind

    raster, _, _ = write_kind(tmp_path / "r.tif", "offset, no tag")
    args = ["classify", str(raster), "--model", str(tiny_model), "--out-vector", str(tmp_path / "t.gpkg")]
    assert main(args + ["--offset", "1000"]) == 0
    captured = capsys.readouterr()
    assert "offset 1000 removed (as given)" in captured.out and "warning" not in captured.err
    assert main(args + ["--offset", "-5", "--overwrite"]) == 2
    assert "--offset must be a raw value of 0 or more, not -5" in _error_line(capsys)
