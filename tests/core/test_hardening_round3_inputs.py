"""Issue 30, the inputs: curved shapes, layer choice, odd files and lying metadata, each told or handled.

Each test writes its own small inputs and runs the command line as a user would (``main``):
a refusal is one ``error:`` line with exit code 2 and nothing written; a warning is one
``warning:`` line on a run that succeeds.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from osgeo import gdal, ogr, osr

from rs_ghost_qgis.cli.main import main
from rs_ghost_qgis.cli.many import expand_inputs
from rs_ghost_qgis.core.adapt import adapt as adapt_module
from rs_ghost_qgis.core.classify.grid import build_grid
from rs_ghost_qgis.core.errors import InputError
from rs_ghost_qgis.core.many.job import _describe_failure
from rs_ghost_qgis.core.model.runtime import load_model
from rs_ghost_qgis.core.options import Area
from rs_ghost_qgis.core.radiometry.scaling import plan_radiometry
from rs_ghost_qgis.core.sources.rasterio_source import RasterioSource
from rs_ghost_qgis.core.sources.vector import linear_shape, read_features
from tests.core.adapt_data import block_box, labelled_polygons, nir_scene, write_labels
from tests.core.engine_data import ORIGIN, class_pattern, write_raster
from tests.core.test_radiometry import eurosat_card, tiny_card

PATTERN = np.array([[0, 1, 2], [2, 1, 0], [1, 1, 1]])
# A circle of radius 100 m around the centre of the scene's middle tile (320 m tiles, 10 m pixels).
CENTRE = (ORIGIN[0] + 480.0, ORIGIN[1] - 480.0)
CIRCLE = (
    f"CURVEPOLYGON(CIRCULARSTRING({CENTRE[0] - 100} {CENTRE[1]}, {CENTRE[0] + 100} {CENTRE[1]}, "
    f"{CENTRE[0] - 100} {CENTRE[1]}))"
)


@pytest.fixture
def scene(tmp_path) -> Path:
    return write_raster(tmp_path / "scene.tif", class_pattern(PATTERN, 32))


@pytest.fixture(scope="module")
def nir(tmp_path_factory) -> Path:
    return nir_scene(tmp_path_factory.mktemp("nir") / "nir.tif")


def _error_line(capfd) -> str:
    """The one error said on stderr (no traceback, no GDAL 'ERROR' lines)."""
    err = capfd.readouterr().err
    assert "Traceback" not in err and "ERROR " not in err, err
    lines = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


def _classify(raster: Path, model: Path, *extra: str) -> int:
    return main(["classify", str(raster), "--model", str(model), "--threads", "1", *extra])


def _adapt(raster: Path, polygons: str, out: Path, model: Path, *extra: str) -> int:
    argv = ["adapt", str(raster), "--polygons", polygons, "--class-field", "landcover", "--out", str(out)]
    return main([*argv, "--model", str(model), "--threads", "1", *extra])


def _layers(path: Path, layers: dict[str, tuple[int, list[tuple[str | None, str]]]]) -> Path:
    """A GeoPackage of ``layers``: name -> (OGR geometry type, [(class or None, WKT)]), EPSG:32633."""
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    dataset = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    for name, (kind, rows) in layers.items():
        layer = dataset.CreateLayer(name, srs, kind)
        layer.CreateField(ogr.FieldDefn("landcover", ogr.OFTString))
        for value, wkt in rows:
            feature = ogr.Feature(layer.GetLayerDefn())
            feature.SetField("landcover", value)
            feature.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
            layer.CreateFeature(feature)
    dataset = None
    return path


def _tiles(path: Path) -> int:
    dataset = ogr.Open(str(path))
    count = dataset.GetLayer(0).GetFeatureCount()
    dataset = None
    return count


# --- curved geometries --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wkt", "area"),
    [
        (
            "MULTISURFACE Z (CURVEPOLYGON Z (COMPOUNDCURVE Z "
            "(CIRCULARSTRING Z (0 0 5, 1 1 5, 2 0 5), (2 0 5, 0 0 5))))",
            np.pi / 2,
        ),
        ("CURVEPOLYGON(CIRCULARSTRING(0 0, 2 0, 0 0))", np.pi),
        ("TIN Z (((0 0 1, 1 0 1, 0 1 1, 0 0 1)), ((1 0 1, 1 1 1, 0 1 1, 1 0 1)))", 1.0),
        ("POLYHEDRALSURFACE (((0 0, 2 0, 2 2, 0 2, 0 0)))", 4.0),
        ("TRIANGLE ((0 0, 1 0, 0 1, 0 0))", 0.5),
    ],
)
def test_curves_and_facets_are_read_as_flat_polygons(wkt, area):
    shape = linear_shape(ogr.CreateGeometryFromWkt(wkt).ExportToIsoWkb())
    assert shape.geom_type in ("Polygon", "MultiPolygon") and not shape.has_z
    assert shape.area == pytest.approx(area, rel=0.01)


def test_a_curved_mask_classifies_the_tile_it_lies_in(scene, tiny_model, tmp_path, capfd):
    mask = _layers(tmp_path / "circle.gpkg", {"mask": (ogr.wkbCurvePolygon, [(None, CIRCLE)])})
    assert _classify(scene, tiny_model, "--mask", str(mask), "--out-vector", str(tmp_path / "t.gpkg")) == 0
    assert "Traceback" not in capfd.readouterr().err
    assert _tiles(tmp_path / "t.gpkg") == 1  # the middle tile only


def test_curved_labelled_polygons_adapt(nir, tiny_model, tmp_path, capfd):
    # Each labelled block as a MULTISURFACE of a compound curve (straight sides, one arc bulging inwards).
    rows = []
    for value, box in labelled_polygons():
        x0, y0, x1, y1 = box.bounds
        mid = (x0 + x1) / 2
        ring = f"CIRCULARSTRING({x0} {y1}, {mid} {y1 - 20}, {x1} {y1}), ({x1} {y1}, {x1} {y0}, {x0} {y0}, {x0} {y1})"
        rows.append((value, f"MULTISURFACE(CURVEPOLYGON(COMPOUNDCURVE({ring})))"))
    labels = _layers(tmp_path / "curved.gpkg", {"labels": (ogr.wkbMultiSurface, rows)})
    assert _adapt(nir, str(labels), tmp_path / "a.onnx", tiny_model) == 0
    assert "Traceback" not in capfd.readouterr().err and (tmp_path / "a.onnx").is_file()


def test_classify_many_takes_a_curved_mask_and_a_list_saved_with_a_byte_order_mark(scene, tiny_model, tmp_path, capfd):
    mask = _layers(tmp_path / "circle.gpkg", {"mask": (ogr.wkbCurvePolygon, [(None, CIRCLE)])})
    listing = tmp_path / "rasters.txt"
    listing.write_text("scene.tif\n", encoding="utf-8-sig")  # Notepad's UTF-8
    assert expand_inputs([str(listing)]) == [str(tmp_path / "scene.tif")]
    argv = ["classify-many", str(listing), "--out-dir", str(tmp_path / "o"), "--model", str(tiny_model)]
    assert main([*argv, "--mask", str(mask), "--workers", "1"]) == 0
    assert "failed" not in capfd.readouterr().err
    assert _tiles(tmp_path / "o" / "scene.gpkg") == 1


# --- layer choice -------------------------------------------------------------------------------


@pytest.fixture
def two_layers(tmp_path) -> Path:
    x, y = CENTRE
    whole = shapely.box(x - 470, y - 470, x + 470, y + 470).wkt
    return _layers(
        tmp_path / "two.gpkg",
        {"middle": (ogr.wkbCurvePolygon, [(None, CIRCLE)]), "everything": (ogr.wkbPolygon, [(None, whole)])},
    )


def test_a_file_of_several_layers_is_refused_with_their_names(scene, tiny_model, two_layers, tmp_path, capfd):
    out = tmp_path / "t.gpkg"
    assert _classify(scene, tiny_model, "--mask", str(two_layers), "--out-vector", str(out)) == 2
    line = _error_line(capfd)
    assert "holds 2 layers (middle, everything)" in line and "--layer NAME" in line
    assert f"'{two_layers}|layername=middle'" in line and not out.exists()


@pytest.mark.parametrize(("how", "tiles"), [("middle", 1), ("everything", 9)])
def test_a_layer_is_chosen_by_option_or_by_name_in_the_path(scene, tiny_model, two_layers, tmp_path, how, tiles):
    by_option = tmp_path / "option.gpkg"
    assert _classify(scene, tiny_model, "--mask", str(two_layers), "--layer", how, "--out-vector", str(by_option)) == 0
    by_path = tmp_path / "path.gpkg"
    assert _classify(scene, tiny_model, "--mask", f"{two_layers}|layername={how}", "--out-vector", str(by_path)) == 0
    assert _tiles(by_option) == _tiles(by_path) == tiles


def test_an_unknown_layer_lists_the_layers(scene, tiny_model, two_layers, tmp_path, capfd):
    assert _classify(scene, tiny_model, "--mask", str(two_layers), "--layer", "roads", "--out-vector", "t.gpkg") == 2
    assert "has no layer 'roads'; its layers are: middle, everything." in _error_line(capfd)


def test_adapt_polygons_of_several_layers_are_refused_then_chosen(nir, tiny_model, tmp_path, capfd):
    rows = [(value, box.wkt) for value, box in labelled_polygons()]
    path = _layers(tmp_path / "l.gpkg", {"labels": (ogr.wkbPolygon, rows), "roads": (ogr.wkbPolygon, rows[:1])})
    out = tmp_path / "a.onnx"
    assert _adapt(nir, str(path), out, tiny_model) == 2
    assert "holds 2 layers (labels, roads)" in _error_line(capfd) and not out.exists()
    assert _adapt(nir, str(path), out, tiny_model, "--layer", "labels") == 0


def test_a_shapefile_without_its_shx_says_what_is_missing(scene, tiny_model, tmp_path, capfd):
    shp = tmp_path / "mask.shp"
    dataset = ogr.GetDriverByName("ESRI Shapefile").CreateDataSource(str(shp))
    layer = dataset.CreateLayer("mask", None, ogr.wkbPolygon)
    feature = ogr.Feature(layer.GetLayerDefn())
    feature.SetGeometry(ogr.CreateGeometryFromWkt(linear_shape(ogr.CreateGeometryFromWkt(CIRCLE).ExportToIsoWkb()).wkt))
    layer.CreateFeature(feature)
    dataset = None
    assert read_features(shp) is not None
    (tmp_path / "mask.shx").unlink()
    assert _classify(scene, tiny_model, "--mask", str(shp), "--out-vector", str(tmp_path / "t.gpkg")) == 2
    line = _error_line(capfd)
    assert "has no mask.shx beside it" in line and "not a vector file" not in line


def test_a_vector_file_given_as_the_raster_says_so(tiny_model, two_layers, tmp_path, capfd):
    assert _classify(two_layers, tiny_model, "--out-vector", str(tmp_path / "t.gpkg")) == 2
    line = _error_line(capfd)
    assert "is a vector file (layers middle, everything), not a raster" in line


# --- odd rasters ----------------------------------------------------------------------------------


def _mixed_vrt(folder: Path, scene: Path) -> Path:
    """A VRT of the scene's red as UInt16, green as Byte and blue as Float32 (gdalbuildvrt -separate)."""
    parts = []
    for band, kind in ((1, gdal.GDT_UInt16), (2, gdal.GDT_Byte), (3, gdal.GDT_Float32)):
        part = str(folder / f"band{band}.tif")
        gdal.Translate(part, str(scene), bandList=[band], outputType=kind)
        parts.append(part)
    vrt = folder / "mixed.vrt"
    gdal.BuildVRT(str(vrt), parts, separate=True)
    return vrt


def test_bands_of_mixed_types_are_refused_with_each_type(scene, tiny_model, tmp_path, capfd):
    vrt = _mixed_vrt(tmp_path, scene)
    assert _classify(vrt, tiny_model, "--out-vector", str(tmp_path / "t.gpkg")) == 2
    line = _error_line(capfd)
    assert "mixes band data types (band 1 UInt16, band 2 Byte, band 3 Float32)" in line and "-ot" in line
    assert not (tmp_path / "t.gpkg").exists()


def test_a_band_scale_of_zero_is_named_not_called_an_empty_export(tiny_model, tmp_path, capfd):
    path = write_raster(tmp_path / "s.tif", class_pattern(PATTERN, 32, np.uint16, 10.0))
    with rasterio.open(path, "r+") as ds:
        ds.scales = (1.0, 0.0, 1.0)
    assert _classify(path, tiny_model, "--out-vector", str(tmp_path / "t.gpkg")) == 2
    line = _error_line(capfd)
    assert "declares a scale of 0 for band 2" in line and "empty" not in line


def test_a_box_in_a_sparse_mosaic_is_sampled_where_it_is(tiny_model, tmp_path, capfd):
    # Two small uint16 rasters 200 km apart in one VRT of 20,000 x 20,000 px: the whole raster's
    # sample windows all fall on nodata, the box holds data.
    near = write_raster(tmp_path / "a.tif", class_pattern(PATTERN, 32, np.uint16, 10.0), nodata=0)
    far_origin = (ORIGIN[0] + 200_000, ORIGIN[1] - 200_000)
    far = write_raster(tmp_path / "b.tif", class_pattern(PATTERN, 32, np.uint16, 10.0), origin=far_origin, nodata=0)
    vrt = tmp_path / "mosaic.vrt"
    gdal.BuildVRT(str(vrt), [str(near), str(far)])
    box = f"{ORIGIN[0]},{ORIGIN[1] - 960},{ORIGIN[0] + 960},{ORIGIN[1]}"
    assert _classify(vrt, tiny_model, "--bbox", box, "--out-vector", str(tmp_path / "t.gpkg")) == 0
    assert _tiles(tmp_path / "t.gpkg") == 9


# --- band descriptions that lie -------------------------------------------------------------------


def _described_export(tmp_path, order, dtype=np.uint16, scale=1.0):
    """A vegetated L1C-like scene whose bands hold ``order`` but are described as B02, B03, B04, B08."""
    rng = np.random.default_rng(1)
    means = {"B2": 1100, "B3": 900, "B4": 700, "B8": 3000}  # TOA: blue brightest of the visible bands
    data = np.stack([(means[b] + rng.integers(-60, 61, size=(64, 64))) * scale for b in order]).astype(dtype)
    return RasterioSource(write_raster(tmp_path / "r.tif", data, descriptions=["B02", "B03", "B04", "B08"]))


@pytest.mark.parametrize(("dtype", "scale"), [(np.uint16, 1.0), (np.uint8, 0.05)])
def test_descriptions_that_contradict_the_colours_are_warned_about(tmp_path, dtype, scale):
    with _described_export(tmp_path, ["B4", "B3", "B2", "B8"], dtype, scale) as source:  # red labelled blue
        plan = plan_radiometry(source, eurosat_card())
    assert plan.bands == [3, 2, 1]
    (warning,) = plan.warnings
    assert "Bands 3,2,1 are described as red, green, blue, but their colour balance is unlike" in warning
    assert "descriptions may be wrong" in warning and "Bands (--bands)" in warning


@pytest.mark.parametrize(("dtype", "scale"), [(np.uint16, 1.0), (np.uint8, 0.05)])
def test_descriptions_that_agree_with_the_colours_get_no_warning(tmp_path, dtype, scale):
    with _described_export(tmp_path, ["B2", "B3", "B4", "B8"], dtype, scale) as source:
        plan = plan_radiometry(source, eurosat_card())
    assert plan.bands == [3, 2, 1] and plan.warnings == ()


# --- adapt ------------------------------------------------------------------------------------------


def test_chips_in_polygons_of_two_classes_are_left_out_and_counted(nir, tiny_model, tmp_path, capfd):
    # A 'plastic' square over half of the labelled meadow block (0, 0): its chips belonged to 'meadow'.
    polygons = labelled_polygons()
    square = block_box(0, 0, 150.0)
    x0, y0, x1, y1 = square.bounds
    overlap = ("plastic", shapely.box(x0, y0, (x0 + x1) / 2, y1))
    path = write_labels(tmp_path / "over.gpkg", [*polygons, overlap])
    out = tmp_path / "a.onnx"
    assert _adapt(nir, str(path), out, tiny_model) == 0
    err = capfd.readouterr().err
    (line,) = [line for line in err.splitlines() if "were left out" in line]
    contested = int(line.split("warning: ")[1].split(" chip")[0])
    assert contested > 0 and "polygons of two classes" in line and "--polygons" in line
    alone = tmp_path / "alone.onnx"
    assert _adapt(nir, str(write_labels(tmp_path / "l.gpkg", polygons)), alone, tiny_model) == 0
    chips = load_model(out).card.training["chips_per_class"]
    before = load_model(alone).card.training["chips_per_class"]
    assert chips["meadow"] == before["meadow"] - contested  # none of them went to either class
    assert chips["plastic"] == before["plastic"]


def test_owners_marks_centres_in_two_classes_contested(nir):
    with RasterioSource(nir) as source:
        grid = build_grid(source.info, tiny_card(), Area(), 8)
    block = block_box(0, 0)
    left_half = shapely.box(block.bounds[0], block.bounds[1], block.bounds[0] + 640, block.bounds[3])
    cols = np.arange(0, 16)
    owner = adapt_module._owners(grid, 0, cols, [block, left_half], [0, 1])
    assert (owner == adapt_module.CONTESTED).any() and (owner == 0).any()
    same_class = adapt_module._owners(grid, 0, cols, [block, left_half], [0, 0])
    assert not (same_class == adapt_module.CONTESTED).any()


def test_one_polygon_per_class_says_why_no_accuracy_is_given(nir, tiny_model, tmp_path, capfd):
    polygons = labelled_polygons()
    path = write_labels(tmp_path / "two.gpkg", [polygons[0], polygons[1]])
    assert _adapt(nir, str(path), tmp_path / "a.onnx", tiny_model) == 0
    captured = capfd.readouterr()
    assert "cannot be measured" in captured.err and "Draw a second polygon of 'meadow', 'plastic'" in captured.err
    assert "not measurable, every class has one polygon" in captured.out and "accuracy 0.0%" not in captured.out


def test_a_model_adapted_on_uint16_warns_on_an_8_bit_copy(nir, tiny_model, tmp_path, capfd):
    model = tmp_path / "a.onnx"
    assert _adapt(nir, str(write_labels(tmp_path / "l.gpkg", labelled_polygons())), model, tiny_model) == 0
    capfd.readouterr()
    assert _classify(nir, model, "--out-vector", str(tmp_path / "same.gpkg")) == 0
    assert "was adapted on" not in capfd.readouterr().err
    copy = tmp_path / "nir8.tif"
    gdal.Translate(str(copy), str(nir), outputType=gdal.GDT_Byte, scaleParams=[[0, 4000, 0, 255]])
    assert _classify(copy, model, "--out-vector", str(tmp_path / "t.gpkg")) == 0
    err = capfd.readouterr().err
    assert "a.onnx was adapted on nir (uint16 values, scaling 'card'), but nir8 holds uint8 values" in err


# --- classify-many's failed lines ---------------------------------------------------------------------


def test_a_block_failure_with_a_traceback_is_one_line():
    relayed = RuntimeError(
        'Traceback (most recent call last):\n  File "w.py", line 3, in run\n    read()\nValueError: bad block\n'
    )
    text = _describe_failure(relayed, 4)
    assert "\n" not in text and "Traceback" not in text and 'File "w.py"' not in text
    assert text.startswith("block 4 failed: RuntimeError: ValueError: bad block")


# --- found by the round-3 sweep (results/hardening/sweep_round3.md) -------------------------------


def test_a_layer_without_a_mask_is_refused(scene, tiny_model, tmp_path, capfd):
    assert _classify(scene, tiny_model, "--layer", "fields", "--out-vector", str(tmp_path / "t.gpkg")) == 2
    assert "--layer chooses a layer of the --mask file, but there is no --mask" in _error_line(capfd)
    assert not (tmp_path / "t.gpkg").exists()


def test_a_list_file_that_is_not_utf8_is_said(scene, tmp_path):
    listing = tmp_path / "rasters.txt"
    listing.write_text("scene.tif\n", encoding="utf-16")
    with pytest.raises(InputError, match="is not UTF-8 text .* save it as UTF-8"):
        expand_inputs([str(listing)])


def test_an_archive_given_as_the_raster_names_the_path_inside_it(scene, tiny_model, tmp_path, capfd):
    archive = tmp_path / "scene.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.write(scene, "inside/scene.tif")
    assert _classify(archive, tiny_model, "--out-vector", str(tmp_path / "t.gpkg")) == 2
    line = _error_line(capfd)
    suggested = line.split("e.g. '")[1].split("'")[0]
    assert "is an archive, not a raster" in line and suggested == f"/vsizip/{archive}/inside/scene.tif"
    assert _classify(suggested, tiny_model, "--out-vector", str(tmp_path / "t.gpkg")) == 0  # the advice works


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--product", "l2a"], "--product applies to reflectance data"),
        (["--offset", "1000"], "--offset applies to reflectance data"),
        (["--scale", "card"], "holds 8-bit values (at most 255), but --scale card maps raw 0..3000"),
    ],
)
def test_reflectance_options_on_8_bit_colour_are_warned_about(scene, tiny_model, tmp_path, capfd, extra, words):
    assert _classify(scene, tiny_model, *extra, "--out-vector", str(tmp_path / "t.gpkg")) == 0
    err = capfd.readouterr().err
    assert words in err
    assert _classify(scene, tiny_model, "--out-vector", str(tmp_path / "u.gpkg")) == 0
    assert "warning" not in capfd.readouterr().err  # the same run without them: nothing to say


def test_class_values_spelt_two_ways_are_warned_about(nir, tiny_model, tmp_path, capfd):
    polygons = [(value.upper() if k == 2 else value, shape) for k, (value, shape) in enumerate(labelled_polygons())]
    path = write_labels(tmp_path / "l.gpkg", polygons)
    assert _adapt(nir, str(path), tmp_path / "a.onnx", tiny_model) == 0
    assert "spells classes in more than one way ('MEADOW' and 'meadow')" in capfd.readouterr().err


def test_labelled_features_without_geometry_are_counted(nir, tiny_model, tmp_path, capfd):
    rows = [(value, shape.wkt) for value, shape in labelled_polygons()]
    path = _layers(tmp_path / "l.gpkg", {"labels": (ogr.wkbPolygon, rows)})
    dataset = ogr.Open(str(path), 1)
    layer = dataset.GetLayer(0)
    for value in ("meadow", "plastic"):
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField("landcover", value)  # and no geometry
        layer.CreateFeature(feature)
    dataset = None
    assert _adapt(nir, str(path), tmp_path / "a.onnx", tiny_model) == 0
    assert "2 feature(s) of l.gpkg have no geometry (or an empty one) and were left out." in capfd.readouterr().err


def test_a_layer_number_is_taken_and_a_subset_refused_not_ignored(scene, tiny_model, two_layers, tmp_path, capfd):
    out = tmp_path / "t.gpkg"
    assert _classify(scene, tiny_model, "--mask", f"{two_layers}|layerid=1", "--out-vector", str(out)) == 0
    assert _tiles(out) == 9  # layer 1: everything
    assert _classify(scene, tiny_model, "--mask", f"{two_layers}|layerid=7", "--out-vector", str(out)) == 2
    assert "has no layer number 7; its layers are 0: middle, 1: everything." in _error_line(capfd)
    subset = f"{two_layers}|layername=everything|subset=fid = 1"
    assert _classify(scene, tiny_model, "--mask", subset, "--out-vector", str(out), "--overwrite") == 2
    assert "'|subset=fid = 1' is not understood here, only |layername=NAME" in _error_line(capfd)


def test_an_alpha_band_of_another_type_is_no_mixed_raster(scene, tiny_model, tmp_path):
    parts = []
    for band in (1, 2, 3):
        part = str(tmp_path / f"c{band}.tif")
        gdal.Translate(part, str(scene), bandList=[band], outputType=gdal.GDT_UInt16)
        parts.append(part)
    alpha = write_raster(tmp_path / "alpha.tif", np.full((1, 96, 96), 255, np.uint8))
    vrt = tmp_path / "rgba.vrt"
    gdal.BuildVRT(str(vrt), [*parts, str(alpha)], separate=True)
    dataset = gdal.Open(str(vrt), gdal.GA_Update)
    dataset.GetRasterBand(4).SetColorInterpretation(gdal.GCI_AlphaBand)
    dataset = None
    assert _classify(vrt, tiny_model, "--out-vector", str(tmp_path / "t.gpkg")) == 0


def test_a_failed_line_is_one_line_whatever_the_reason_held(capsys):
    from rs_ghost_qgis.cli.many import EXIT_SOME_FAILED, _report
    from rs_ghost_qgis.core.many.job import JobResult
    from rs_ghost_qgis.core.many.raster import RasterJob

    job = RasterJob("bad.tif", error="cannot read bad.tif: TIFFReadDirectory:\nSanity check failed\n  at offset 8")
    result = JobResult([job], ["Water"], 0, 0, 0, 0, 0.0, None)
    assert _report(result) == EXIT_SOME_FAILED
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "bad.tif" in line]
    assert line == "failed:  bad.tif: cannot read bad.tif: TIFFReadDirectory: Sanity check failed at offset 8"


def test_a_class_lost_to_overlaps_says_so(nir, tiny_model, tmp_path, capfd):
    # Every 'plastic' polygon lies inside a 'meadow' one: all its chips are contested.
    polygons = [(value, shape) for value, shape in labelled_polygons() if value == "meadow"]
    covered = [("plastic", shape.buffer(-200)) for _, shape in polygons]
    path = write_labels(tmp_path / "l.gpkg", polygons + covered)
    assert _adapt(nir, str(path), tmp_path / "a.onnx", tiny_model) == 2
    line = _error_line(capfd)
    assert "Class 'plastic' has 0 chip(s) (" in line
    assert "chips were left out where polygons of two classes overlap)" in line
