"""The pipeline end to end on small rasters with the tiny model (class = mean colour)."""

import math

import numpy as np
import pytest
import rasterio
import shapely
from osgeo import ogr

from rs_ghost_qgis.core.classify.pipeline import ClassifyOptions, classify
from rs_ghost_qgis.core.classify.sinks import FieldSpec, TileRecord, tile_fields
from rs_ghost_qgis.core.crs import to_wkt, transform_geometry, transform_xy
from rs_ghost_qgis.core.errors import Cancelled, InputError, OutputError
from rs_ghost_qgis.core.options import Area
from rs_ghost_qgis.core.sources.rasterio_source import RasterioSource
from tests.core.engine_data import ORIGIN, class_pattern, write_raster
from tests.tiny_model import export_tiny_model

X0, Y0 = ORIGIN
UTM33 = to_wkt("EPSG:32633")
WGS84 = to_wkt("EPSG:4326")
PATTERN = np.array([[0, 0, 1, 1], [0, 2, 2, 1], [2, 2, 1, 1], [0, 1, 2, 0]])  # 4 x 4 tiles of 32 px


def _features(path):
    ds = ogr.Open(str(path))
    layer = ds.GetLayer(0)
    rows = [(f.items(), shapely.from_wkb(bytes(f.GetGeometryRef().ExportToIsoWkb()))) for f in layer]
    return rows, layer.GetSpatialRef().ExportToWkt(), layer.GetMetadata()


def _run(path, model, tmp_path, **kw):
    options = ClassifyOptions(
        model_path=str(model), out_vector=str(tmp_path / "tiles.gpkg"), out_raster=str(tmp_path / "classes.tif"), **kw
    )
    with RasterioSource(path) as source:
        return classify(source, options)


@pytest.fixture
def pattern_raster(tmp_path):
    return write_raster(tmp_path / "pattern.tif", class_pattern(PATTERN, 32))


def test_tiles_are_classified_aligned_and_complete(pattern_raster, tiny_model, tmp_path):
    progress = []
    options = ClassifyOptions(
        model_path=str(tiny_model), out_vector=str(tmp_path / "t.gpkg"), out_raster=str(tmp_path / "c.tif")
    )
    with RasterioSource(pattern_raster) as source:
        result = classify(source, options, progress=progress.append)
    assert progress == sorted(progress) and progress[-1] == 100.0
    assert (result.tiles_total, result.tiles_classified, result.tiles_nodata) == (16, 16, 0)

    features, crs_wkt, metadata = _features(tmp_path / "t.gpkg")
    assert rasterio.crs.CRS.from_wkt(crs_wkt) == rasterio.crs.CRS.from_epsg(32633)
    assert len(features) == 16
    names = [f.name for f in tile_fields(result.card)]
    assert list(features[0][0]) == names
    for attrs, polygon in features:
        row, col = attrs["tile_row"], attrs["tile_col"]
        assert polygon.equals(shapely.box(X0 + col * 320, Y0 - (row + 1) * 320, X0 + (col + 1) * 320, Y0 - row * 320))
        assert attrs["class_id"] == PATTERN[row, col]
        assert attrs["class_name"] == ["Water", "Forest", "Crop"][PATTERN[row, col]]
        probs = [attrs["prob_water"], attrs["prob_forest"], attrs["prob_crop"]]
        assert math.isclose(sum(probs), 1.0, abs_tol=1e-4)
        assert attrs["confidence"] == max(probs) and attrs["second_confidence"] == sorted(probs)[-2]
        assert attrs["second_class"] == ["Water", "Forest", "Crop"][attrs["second_class_id"]]
        assert attrs["valid_fraction"] == 1.0
    union = shapely.union_all([p for _, p in features])
    assert union.equals(shapely.box(X0, Y0 - 1280, X0 + 1280, Y0))
    assert "pad" in metadata["edge_policy"] and "matched by description" in metadata["bands"]

    with rasterio.open(tmp_path / "c.tif") as ds:
        np.testing.assert_array_equal(ds.read(1), PATTERN)
        assert ds.read(2).min() >= 50 and ds.read(2).max() <= 100
        assert ds.nodata == 255 and ds.crs.to_epsg() == 32633
        assert (ds.transform.a, ds.transform.c, ds.transform.f) == (320, X0, Y0)
        assert ds.colormap(1)[1] == (0x33, 0xA0, 0x2C, 255)
        assert "pad" in ds.tags()["edge_policy"] and ds.descriptions == ("class", "confidence_percent")

    # Areas add up: 16 tiles of 10.24 ha.
    assert [a.tiles for a in result.areas] == [5, 6, 5]
    assert [round(a.hectares, 2) for a in result.areas] == [51.2, 61.44, 51.2]
    assert math.isclose(sum(a.percent for a in result.areas), 100.0)
    table = result.summary_table()
    assert "Forest" in table and "163.8" in table and "not classified: 0 of 16 tiles" in table


def test_output_is_deterministic(pattern_raster, tiny_model, tmp_path):
    first = _run(pattern_raster, tiny_model, tmp_path / "a")
    second = _run(pattern_raster, tiny_model, tmp_path / "b")
    assert first.areas == second.areas
    assert _features(tmp_path / "a" / "tiles.gpkg")[0] == _features(tmp_path / "b" / "tiles.gpkg")[0]
    with rasterio.open(tmp_path / "a" / "classes.tif") as a, rasterio.open(tmp_path / "b" / "classes.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())


def test_geographic_raster_gives_640_m_tiles(tmp_path):
    model = export_tiny_model(tmp_path / "m64.onnx", input_size=64, tile_size=64)
    # 6 x 4 tiles of 640 m around (13.2 E, 53.9 N), stored in degrees at about 10 m.
    lon0, lat0 = 13.18, 53.90
    data = class_pattern(np.ones((4, 6), int), 64)
    path = write_raster(tmp_path / "geo.tif", data, crs="EPSG:4326", res=(0.000152, 0.00009), origin=(lon0, lat0))
    result = _run(path, model, tmp_path)
    features, crs_wkt, _ = _features(tmp_path / "tiles.gpkg")
    assert rasterio.crs.CRS.from_wkt(crs_wkt) == rasterio.crs.CRS.from_epsg(4326)
    assert result.tiles_classified >= 24
    for _, polygon in features:
        assert len(polygon.exterior.coords) > 5  # densified before reprojection
        utm = transform_geometry(polygon, WGS84, UTM33)
        xmin, ymin, xmax, ymax = utm.bounds
        assert math.isclose(xmax - xmin, 640, abs_tol=0.01) and math.isclose(ymax - ymin, 640, abs_tol=0.01)
        assert math.isclose(utm.area, 640 * 640, rel_tol=1e-6)
    with rasterio.open(tmp_path / "classes.tif") as ds:
        assert ds.crs.to_epsg() == 32633 and ds.res == (640.0, 640.0)


def test_uint16_reflectance_with_shuffled_band_descriptions(tmp_path, tiny_model):
    rgb = class_pattern(PATTERN, 32, dtype=np.uint16, scale=3000 / 255)  # reflectance x 10,000
    # Near infrared as on the ground: low over the water tiles (class 0), high over the land ones,
    # so that the water rule (core/classify/evidence.py) agrees with the pattern.
    nir = np.where(np.kron(PATTERN, np.ones((32, 32), int)) == 0, 100, 4000).astype(np.uint16)[None]
    data = np.concatenate([rgb[[2, 1, 0]], nir])  # B2, B3, B4, B8
    path = write_raster(tmp_path / "s2.tif", data, descriptions=["B2", "B3", "B4", "B8"])
    result = _run(path, tiny_model, tmp_path)
    assert result.bands_used == [3, 2, 1]
    assert result.scaling_used == "reflectance x 10,000 detected: linear 0..3000 -> 0..255 for all bands (card)"
    with rasterio.open(tmp_path / "classes.tif") as ds:
        np.testing.assert_array_equal(ds.read(1), PATTERN)


def test_finer_raster_is_read_in_larger_windows_resampled_to_the_model(tmp_path, tiny_model):
    """A 5 m raster feeds a 10 m model: 64 x 64 px of the raster become one 32 x 32 tile."""
    path = write_raster(tmp_path / "fine.tif", class_pattern(PATTERN, 64), res=5.0)
    reads = []
    with RasterioSource(path) as source:
        original = source.read

        def spy(bounds, crs_wkt, width, height, bands):
            block = original(bounds, crs_wkt, width, height, bands)
            reads.append((bounds[2] - bounds[0], bounds[3] - bounds[1], width, height))
            return block

        source.read = spy
        options = ClassifyOptions(model_path=str(tiny_model), out_raster=str(tmp_path / "c.tif"))
        classify(source, options)
    # One strip per tile row: 4 tiles of 320 m at 32 px, and the radiometry's sample (the whole
    # raster at full resolution: its zero gaps). 8-bit values are used as they are, so the
    # strips of the first batches are read, and run, before the sample, which only adds warnings.
    assert reads == [(1280.0, 320.0, 128, 32)] * 4 + [(1280.0, 1280.0, 256, 256)]
    with rasterio.open(tmp_path / "c.tif") as ds:
        np.testing.assert_array_equal(ds.read(1), PATTERN)


def test_stride_averages_overlapping_tiles(pattern_raster, tiny_model, tmp_path):
    result = _run(pattern_raster, tiny_model, tmp_path, stride=16)
    features, _, _ = _features(tmp_path / "tiles.gpkg")
    assert (
        result.tiles_total == 81
    )  # 9 x 9: a tile starts on each of the 8 x 8 cells of 160 m, plus a leading row/column
    probs = {
        (a["tile_row"], a["tile_col"]): np.array([a["prob_water"], a["prob_forest"], a["prob_crop"]])
        for a, _ in features
        if a["class_id"] is not None
    }
    with rasterio.open(tmp_path / "classes.tif") as ds:
        assert ds.res == (160.0, 160.0) and ds.shape == (8, 8)
        classes, confidence = ds.read(1), ds.read(2)
    for r in range(8):
        for c in range(8):
            covering = [probs[k] for k in [(r - 1, c - 1), (r - 1, c), (r, c - 1), (r, c)] if k in probs]
            mean = np.mean(covering, axis=0)
            assert classes[r, c] == mean.argmax(), (r, c)
            assert abs(int(confidence[r, c]) - 100 * mean.max()) <= 0.51, (r, c)
    # Cells inside a uniform tile stay that class; cells on a boundary may mix.
    assert classes[0, 0] == 0 and classes[0, 7] == 1
    assert math.isclose(sum(a.hectares for a in result.areas), 163.84)


def test_cells_hanging_mostly_past_the_image_edge_are_not_drawn_but_their_area_counts(tmp_path, tiny_model):
    # 124 x 117 px at stride 16 (cells of 16 px): the last cell column holds 12 px of image (drawn),
    # the last cell row 5 px (left empty, as a pixel whose centre lies outside the image).
    raster = write_raster(tmp_path / "cut.tif", class_pattern(PATTERN, 32)[:, :117, :124])
    result = _run(raster, tiny_model, tmp_path, stride=16)
    with rasterio.open(tmp_path / "classes.tif") as ds:
        assert ds.shape == (8, 8)
        classes, confidence = ds.read(1), ds.read(2)
    assert (classes[7] == 255).all() and (confidence[7] == 255).all()
    assert (classes[:7] != 255).all() and (confidence[:7] != 255).all()
    assert sum(a.cells for a in result.areas) == 7 * 8
    assert math.isclose(sum(a.hectares for a in result.areas), 124 * 117 * 0.01)  # every image pixel, once


def test_nodata_and_alpha_tiles_are_marked_in_every_output(tmp_path, tiny_model):
    data = class_pattern(PATTERN, 32)
    data[:, :40, :] = 0  # first tile row all nodata, second 8/32 rows nodata (75 % valid)
    for name, kw in (("nodata", {"nodata": 0}), ("alpha", {})):
        if name == "alpha":
            alpha = np.where(data[0] == 0, 0, 255).astype(np.uint8)[None]
            raster = write_raster(tmp_path / "a.tif", np.concatenate([data, alpha]), photometric="RGB", alpha="YES")
        else:
            raster = write_raster(tmp_path / "n.tif", data, **kw)
        out = tmp_path / name
        result = _run(raster, tiny_model, out)
        assert (result.tiles_classified, result.tiles_nodata) == (12, 4), name
        features, _, _ = _features(out / "tiles.gpkg")
        nodata = [a for a, _ in features if a["tile_row"] == 0]
        assert all(a["class_id"] is None and a["class_name"] == "nodata" and a["prob_water"] is None for a in nodata)
        assert all(a["valid_fraction"] == 0.75 for a, _ in features if a["tile_row"] == 1)
        with rasterio.open(out / "classes.tif") as ds:
            assert (ds.read(1)[0] == 255).all() and (ds.read(2)[0] == 255).all()
            np.testing.assert_array_equal(ds.read(1)[1:], PATTERN[1:])
        # Area counts only valid pixels: 4 tiles at 75 %, 8 at 100 %.
        assert math.isclose(sum(a.hectares for a in result.areas), (8 + 4 * 0.75) * 10.24)


def test_all_nodata_raster_fails_and_leaves_nothing(tmp_path, tiny_model):
    raster = write_raster(tmp_path / "empty.tif", np.zeros((3, 64, 64), np.uint8), nodata=0)
    out = tmp_path / "out"
    with pytest.raises(InputError, match="nothing was classified"):
        _run(raster, tiny_model, out)
    assert not out.exists() or list(out.iterdir()) == []
    # A block of a classify-many job may be all nodata: there it is a result, every tile marked.
    result = _run(raster, tiny_model, out, allow_nothing_classified=True)
    assert (result.tiles_classified, result.tiles_nodata) == (0, 4)
    features, _, _ = _features(out / "tiles.gpkg")
    assert len(features) == 4 and all(a["class_name"] == "nodata" for a, _ in features)
    with rasterio.open(out / "classes.tif") as ds:
        assert (ds.read(1) == 255).all()


def _speckled(tmp_path, classes=PATTERN):
    """The pattern as float32 with NaN and inf specks (no nodata tag) in every tile, and a NaN tile."""
    data = class_pattern(classes, 32).astype(np.float32)
    data[0, 5::32, 5::32] = np.nan
    data[1, 20::32, 9::32] = np.inf
    data[2, 11::32, 27::32] = -np.inf
    data[:, 96:, 96:] = np.nan  # the bottom-right tile has no data at all
    return write_raster(tmp_path / "speckled.tif", data)


def test_nan_and_inf_pixels_are_nodata_everywhere(tmp_path, tiny_model):
    # 8-bit colours stored as float: values in 0..10,000 would be read as reflectance, so say what they are.
    result = _run(_speckled(tmp_path), tiny_model, tmp_path / "out", scaling="percentile")
    assert "nan" not in result.scaling_used and "inf" not in result.scaling_used
    assert (result.tiles_classified, result.tiles_nodata) == (15, 1)
    with rasterio.open(tmp_path / "out" / "classes.tif") as ds:
        classes, confidence = ds.read(1), ds.read(2)
    expected = PATTERN.copy()
    expected[3, 3] = 255
    np.testing.assert_array_equal(classes, expected)
    assert (confidence[expected != 255] > 50).all()


@pytest.mark.parametrize("scaling", ["percentile", "none"])
def test_all_nan_raster_fails_and_leaves_nothing(tmp_path, tiny_model, scaling):
    raster = write_raster(tmp_path / "nan.tif", np.full((3, 64, 64), np.nan, np.float32))
    out = tmp_path / "out"
    with pytest.raises(InputError, match="no valid pixels|nothing was classified"):
        _run(raster, tiny_model, out, scaling=scaling)
    assert not out.exists() or list(out.iterdir()) == []


def test_a_model_turning_nan_mid_run_fails_and_leaves_nothing(tmp_path):
    from rs_ghost_qgis.core.errors import ModelError
    from tests.tiny_model import pooled_model, tiny_card

    model = pooled_model(tmp_path / "sqrt.onnx", tiny_card(), sqrt=True)  # NaN for dark tiles only
    data = np.full((3, 64, 96), 250, np.uint8)
    data[:, 32:] = 10  # the second row of tiles is dark
    raster = write_raster(tmp_path / "r.tif", data)
    out = tmp_path / "out"
    with pytest.raises(ModelError, match="outputs NaN or infinite values for 1 of 1 tile"):
        _run(raster, model, out, batch_size=1)
    assert not out.exists() or list(out.iterdir()) == []


def test_stale_temporaries_of_dead_runs_are_removed_before_writing(pattern_raster, tiny_model, tmp_path):
    import os

    out = tmp_path / "out"
    out.mkdir()
    dead_pid = 2**31 - 1  # above any kernel's pid_max: no such process
    stale = [out / f".classes.{dead_pid}.0123abcd.part.tif", out / f".tiles.{dead_pid}.89abcdef.part.gpkg"]
    live = out / f".classes.{os.getpid()}.00000000.part.tif"  # a run of a living process: kept
    for path in [*stale, live]:
        path.write_bytes(b"half written")
    _run(pattern_raster, tiny_model, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(["classes.tif", "tiles.gpkg", live.name])


@pytest.mark.parametrize("which", ["out_raster", "out_vector"])
def test_an_output_that_is_the_input_is_refused(tmp_path, tiny_model, which):
    raster = write_raster(tmp_path / "in.tif", class_pattern(PATTERN, 32))
    raster = raster.rename(tmp_path / ("in.tif" if which == "out_raster" else "in.gpkg"))
    before = raster.read_bytes()
    alias = tmp_path / "sub" / ".." / raster.name  # another spelling of the same file
    (tmp_path / "sub").mkdir()
    options = ClassifyOptions(model_path=str(tiny_model), overwrite=True, **{which: str(alias)})
    with RasterioSource(raster) as source, pytest.raises(OutputError, match="is the input raster"):
        classify(source, options)
    assert raster.read_bytes() == before


def test_cancel_leaves_no_files(pattern_raster, tiny_model, tmp_path):
    out = tmp_path / "out"
    calls = []

    def is_canceled():
        calls.append(1)
        return len(calls) > 2

    options = ClassifyOptions(model_path=str(tiny_model), out_vector=str(out / "t.gpkg"), out_raster=str(out / "c.tif"))
    with RasterioSource(pattern_raster) as source, pytest.raises(Cancelled):
        classify(source, options, is_canceled=is_canceled)
    assert not out.exists() or list(out.iterdir()) == []  # no output, no hidden temporary file


def test_failure_in_the_middle_leaves_no_files(pattern_raster, tiny_model, tmp_path):
    out = tmp_path / "out"
    options = ClassifyOptions(model_path=str(tiny_model), out_vector=str(out / "t.gpkg"), out_raster=str(out / "c.tif"))
    with RasterioSource(pattern_raster) as source:
        original, reads = source.read, []

        def failing(*args):
            reads.append(1)
            if len(reads) == 3:
                raise OSError("disk gone")
            return original(*args)

        source.read = failing
        with pytest.raises(OSError, match="disk gone"):
            classify(source, options)
    assert not out.exists() or list(out.iterdir()) == []


def test_existing_outputs_are_refused_without_overwrite(pattern_raster, tiny_model, tmp_path):
    (tmp_path / "tiles.gpkg").write_text("precious")
    with pytest.raises(OutputError, match=r"already exists; use .*\(--overwrite\) to replace it"):
        _run(pattern_raster, tiny_model, tmp_path)
    assert (tmp_path / "tiles.gpkg").read_text() == "precious"
    assert not (tmp_path / "classes.tif").exists()
    _run(pattern_raster, tiny_model, tmp_path, overwrite=True)
    assert len(_features(tmp_path / "tiles.gpkg")[0]) == 16


def test_unwritable_output_folder(pattern_raster, tiny_model):
    options = ClassifyOptions(model_path=str(tiny_model), out_raster="/proc/rs_ghost_no_such_dir/classes.tif")
    with RasterioSource(pattern_raster) as source, pytest.raises(OutputError, match="Cannot write the raster output"):
        classify(source, options)


def test_output_folder_that_is_a_file(pattern_raster, tiny_model, tmp_path):
    (tmp_path / "file").write_text("x")
    options = ClassifyOptions(model_path=str(tiny_model), out_vector=str(tmp_path / "file" / "t.gpkg"))
    with RasterioSource(pattern_raster) as source, pytest.raises(OutputError, match="Cannot write the vector output"):
        classify(source, options)


def test_wrong_output_types(pattern_raster, tiny_model, tmp_path):
    with RasterioSource(pattern_raster) as source:
        with pytest.raises(OutputError, match=r"must be a \.gpkg file"):
            classify(source, ClassifyOptions(model_path=str(tiny_model), out_vector=str(tmp_path / "t.shp")))
        with pytest.raises(OutputError, match=r"must be a \.tif or \.tiff file"):
            classify(source, ClassifyOptions(model_path=str(tiny_model), out_raster=str(tmp_path / "t.png")))


def test_raster_smaller_than_one_tile(tmp_path, tiny_model):
    raster = write_raster(tmp_path / "small.tif", np.full((3, 20, 20), 100, np.uint8))
    with pytest.raises(InputError, match="smaller than one tile"):
        _run(raster, tiny_model, tmp_path)


def test_fewer_bands_than_needed(tmp_path, tiny_model):
    raster = write_raster(tmp_path / "two.tif", np.full((2, 64, 64), 100, np.uint16))
    with pytest.raises(InputError, match="needs 3"):
        _run(raster, tiny_model, tmp_path)
    result = _run(raster, tiny_model, tmp_path, bands=[1, 2, 2], overwrite=True)
    assert result.bands_used == [1, 2, 2]


def test_band_out_of_range(pattern_raster, tiny_model, tmp_path):
    with pytest.raises(InputError, match="Band 4 is out of range"):
        _run(pattern_raster, tiny_model, tmp_path, bands=[4, 2, 1])


def test_mask_in_another_crs(pattern_raster, tiny_model, tmp_path):
    # A triangle over tiles (0, 0), (0, 1) and (1, 0), given in WGS 84.
    triangle = shapely.Polygon([(X0 + 10, Y0 - 10), (X0 + 600, Y0 - 10), (X0 + 10, Y0 - 600)])
    mask = transform_geometry(triangle, UTM33, WGS84)
    result = _run(pattern_raster, tiny_model, tmp_path, area=Area(geometries=[mask], crs_wkt=WGS84))
    features, _, _ = _features(tmp_path / "tiles.gpkg")
    assert sorted((a["tile_row"], a["tile_col"]) for a, _ in features) == [(0, 0), (0, 1), (1, 0)]
    assert result.tiles_total == 3
    with rasterio.open(tmp_path / "classes.tif") as ds:
        assert ds.shape == (2, 2)
        np.testing.assert_array_equal(ds.read(1), [[0, 0], [0, 255]])  # the cell outside the mask is nodata


def test_bbox_in_another_crs(pattern_raster, tiny_model, tmp_path):
    (lon0, lat0), (lon1, lat1) = transform_xy([[X0 + 330, Y0 - 950], [X0 + 950, Y0 - 330]], UTM33, WGS84)
    result = _run(pattern_raster, tiny_model, tmp_path, area=Area(bounds=(lon0, lat0, lon1, lat1), crs_wkt=WGS84))
    assert result.tiles_total == 4
    with rasterio.open(tmp_path / "classes.tif") as ds:
        np.testing.assert_array_equal(ds.read(1), PATTERN[1:3, 1:3])


def test_empty_mask_and_mask_outside(pattern_raster, tiny_model, tmp_path):
    with pytest.raises(InputError, match="mask is empty"):
        _run(pattern_raster, tiny_model, tmp_path, area=Area(geometries=[]))
    far = shapely.box(10.0, 40.0, 10.1, 40.1)
    with pytest.raises(InputError, match="mask .* does not overlap pattern"):
        _run(pattern_raster, tiny_model, tmp_path, area=Area(geometries=[far], crs_wkt=WGS84))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pattern.tif"]


def test_corrupt_model_fails_before_any_output(pattern_raster, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    from rs_ghost_qgis.core.errors import ModelError

    with pytest.raises(ModelError, match="not a valid ONNX"):
        _run(pattern_raster, bad, tmp_path)
    assert not (tmp_path / "tiles.gpkg").exists()


class _ListSink:
    def __init__(self):
        self.calls, self.fields, self.crs, self.records = [], None, None, []

    def open(self, fields: list[FieldSpec], crs_wkt: str) -> None:
        self.calls.append("open")
        self.fields, self.crs = fields, crs_wkt

    def add(self, tiles: list[TileRecord]) -> None:
        self.calls.append("add")
        self.records.extend(tiles)

    def commit(self) -> None:
        self.calls.append("commit")

    def abort(self) -> None:
        self.calls.append("abort")


def test_a_custom_vector_sink_replaces_the_geopackage(pattern_raster, tiny_model, tmp_path):
    sink = _ListSink()
    options = ClassifyOptions(model_path=str(tiny_model), out_vector=str(tmp_path / "ignored.gpkg"))
    with RasterioSource(pattern_raster) as source:
        result = classify(source, options, vector_sink=sink)
    assert sink.calls[0] == "open" and sink.calls[-1] == "commit" and "abort" not in sink.calls
    assert [f.name for f in sink.fields][:4] == ["tile_row", "tile_col", "class_id", "class_name"]
    assert rasterio.crs.CRS.from_wkt(sink.crs).to_epsg() == 32633
    assert len(sink.records) == 16 and result.out_vector is None and not (tmp_path / "ignored.gpkg").exists()
    record = sink.records[0]
    assert len(record.attributes) == len(sink.fields)
    assert shapely.from_wkb(record.wkb).equals(record.geometry)

    sink = _ListSink()
    with RasterioSource(pattern_raster) as source, pytest.raises(Cancelled):
        classify(source, ClassifyOptions(model_path=str(tiny_model)), vector_sink=sink, is_canceled=lambda: True)
    assert sink.calls == ["open", "abort"]


def test_bad_options_are_named_as_the_faces_spell_them(pattern_raster, tiny_model, tmp_path):
    with pytest.raises(InputError, match=r"minimum valid fraction \(--min-valid\)"):
        _run(pattern_raster, tiny_model, tmp_path, min_valid_fraction=1.5)
    with pytest.raises(InputError, match=r"batch size \(--batch-size\)"):
        _run(pattern_raster, tiny_model, tmp_path, batch_size=0)
    with pytest.raises(InputError, match=r"Threads \(--threads\) must be positive"):
        _run(pattern_raster, tiny_model, tmp_path, threads=-1)
    with pytest.raises(InputError, match=r"Stride \(--stride\) 5"):
        _run(pattern_raster, tiny_model, tmp_path, stride=5)
    (tmp_path / "tiles.gpkg").write_text("old")
    with pytest.raises(OutputError) as error:
        _run(pattern_raster, tiny_model, tmp_path)
    assert "(--overwrite) to replace it" in str(error.value) and "=True" not in str(error.value)


def test_batches_span_strips_and_sizes_do_not_change_results(pattern_raster, tiny_model, tmp_path):
    results = [_run(pattern_raster, tiny_model, tmp_path / str(b), batch_size=b) for b in (1, 3, 64)]
    assert results[0].areas == results[1].areas == results[2].areas


def test_works_when_another_plugin_turned_osgeo_exceptions_on(pattern_raster, tiny_model, tmp_path):
    from osgeo import gdal, osr

    modes = (gdal.GetUseExceptions(), ogr.GetUseExceptions(), osr.GetUseExceptions())
    for module in (gdal, ogr, osr):
        module.UseExceptions()
    try:
        result = _run(pattern_raster, tiny_model, tmp_path)
        assert result.tiles_classified == 16
        with pytest.raises(InputError, match="Cannot read the coordinate reference system"):
            _run(pattern_raster, tiny_model, tmp_path / "x", area=Area(bounds=(0, 0, 1, 1), crs_wkt="EPSG:999999"))
    finally:
        for module, mode in reversed(list(zip((gdal, ogr, osr), modes, strict=True))):  # osgeo wants LIFO
            module.UseExceptions() if mode else module.DontUseExceptions()
