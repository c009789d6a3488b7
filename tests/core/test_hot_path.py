"""The hot path's shortcuts (issue 31) give what the plain code gave: same outputs, same samples, no stray thread."""

import os
import threading

import numpy as np
import pytest
import shapely
import shapely.affinity
from numpy.lib.stride_tricks import sliding_window_view
from osgeo import gdal, ogr

from rs_ghost_qgis.core.classify import batching
from rs_ghost_qgis.core.classify.pipeline import ClassifyOptions, classify
from rs_ghost_qgis.core.classify.sinks import FieldSpec, GeoPackageSink, TileRecord
from rs_ghost_qgis.core.classify.strips import valid_shares
from rs_ghost_qgis.core.crs import to_wkt, transform_geometry
from rs_ghost_qgis.core.errors import InputError, ModelError, OutputError
from rs_ghost_qgis.core.model.card import ModelCard
from rs_ghost_qgis.core.model.runtime import create_session, default_model_path, read_card
from rs_ghost_qgis.core.radiometry.colour import row_means
from rs_ghost_qgis.core.radiometry.plan import Radiometry
from rs_ghost_qgis.core.radiometry.sample import _joined, _valid_values, per_band, sample_values
from rs_ghost_qgis.core.radiometry.scaling import _without_zeros
from rs_ghost_qgis.core.sources.rasterio_source import RasterioSource
from rs_ghost_qgis.core.sources.source import Block
from tests.core.engine_data import ORIGIN, class_pattern, write_raster
from tests.tiny_model import tiny_card

PATTERN = np.array([[0, 0, 1, 1, 2], [0, 2, 2, 1, 0], [2, 2, 1, 1, 1], [0, 1, 2, 0, 2]])  # 4 x 5 tiles of 32 px


def _run(raster, model, folder, **options):
    options = ClassifyOptions(
        model_path=str(model), out_vector=str(folder / "t.gpkg"), out_raster=str(folder / "c.tif"), **options
    )
    with RasterioSource(raster) as source:
        return classify(source, options)


def _layer(path):
    dataset = ogr.Open(str(path))
    return [(f.GetFID(), f.items(), bytes(f.GetGeometryRef().ExportToIsoWkb())) for f in dataset.GetLayer(0)]


def _predict_threads():
    return [t for t in threading.enumerate() if t.name.startswith("rs_ghost_predict")]


@pytest.mark.parametrize("stride", [None, 16])
def test_batches_on_the_inference_thread_keep_every_output_in_order(tiny_model, tmp_path, stride):
    # Batch 1 keeps BATCHES_IN_FLIGHT batches queued behind the running one; 3 splits strips; 64 is one batch.
    raster = write_raster(tmp_path / "r.tif", class_pattern(PATTERN, 32))
    outputs = []
    for batch in (1, 3, 64):
        folder = tmp_path / f"b{batch}"
        result = _run(raster, tiny_model, folder, batch_size=batch, stride=stride)
        classes = gdal.Open(str(folder / "c.tif")).ReadAsArray()
        outputs.append((_layer(folder / "t.gpkg"), classes, result.areas))
    assert outputs[0][0] == outputs[1][0] == outputs[2][0]
    assert all(np.array_equal(outputs[0][1], other[1]) for other in outputs[1:])
    assert outputs[0][2] == outputs[1][2] == outputs[2][2]
    top = [items["class_id"] for _, items, _ in outputs[0][0]]
    assert (stride is None) <= (top == PATTERN.ravel().tolist())  # tile order: rows, then columns


def test_the_last_partial_batch_runs_on_the_callers_thread(tiny_model, tmp_path, monkeypatch):
    # 20 tiles: batch 8 runs two full batches on the worker and the last 4 tiles on the caller;
    # batch 64 runs everything on the caller, so a one-batch raster starts no worker thread.
    from rs_ghost_qgis.core.model.runtime import Model

    raster = write_raster(tmp_path / "r.tif", class_pattern(PATTERN, 32))
    seen = []
    predict = Model.predict

    def recording(model, tiles, *rest):
        seen.append((len(tiles), threading.current_thread().name))
        return predict(model, tiles, *rest)

    monkeypatch.setattr(Model, "predict", recording)
    caller = threading.current_thread().name
    _run(raster, tiny_model, tmp_path / "b8", batch_size=8)
    assert [size for size, _ in seen] == [8, 8, 4]
    assert [name.startswith("rs_ghost_predict") for _, name in seen[:2]] == [True, True]
    assert seen[2][1] == caller
    seen.clear()
    _run(raster, tiny_model, tmp_path / "b64", batch_size=64)
    assert seen == [(20, caller)]


def test_no_inference_thread_outlives_a_run_that_worked_or_failed(tiny_model, tmp_path):
    from tests.tiny_model import pooled_model, tiny_card

    raster = write_raster(tmp_path / "r.tif", class_pattern(PATTERN, 32))
    _run(raster, tiny_model, tmp_path / "ok", batch_size=1)
    assert _predict_threads() == []
    broken = pooled_model(tmp_path / "sqrt.onnx", tiny_card(), sqrt=True)  # NaN for dark tiles
    dark = np.full((3, 64, 160), 250, np.uint8)
    dark[:, 32:] = 10
    with pytest.raises(ModelError, match="outputs NaN or infinite values"):
        _run(write_raster(tmp_path / "dark.tif", dark), broken, tmp_path / "bad", batch_size=1)
    assert _predict_threads() == []
    assert not (tmp_path / "bad").exists() or list((tmp_path / "bad").iterdir()) == []


def test_a_batch_error_is_raised_in_the_callers_thread_and_later_batches_do_not_run(tiny_model, tmp_path):
    calls = []

    class Failing:
        card = type("Card", (), {"num_classes": 3})()

        def predict(self, batch):
            calls.append(len(batch))
            raise ModelError("broken batch")

    batcher = batching.Batcher(Failing(), 2)
    try:
        with pytest.raises(ModelError, match="broken batch"):
            batcher.put(np.zeros((6, 3, 4, 4), np.float32), lambda: None)  # three batches of 2
            batcher.flush(lambda: None)
    finally:
        batcher.close()
    assert calls[0] == 2 and len(calls) <= batching.BATCHES_IN_FLIGHT


def test_sampled_values_are_those_of_the_boolean_index():
    data = np.random.default_rng(0).integers(0, 3000, (4, 30, 50)).astype(np.uint16)
    valid = np.ones((30, 50), bool)
    partly = valid & (np.arange(50) % 3 > 0)
    for keep in (valid, partly):
        assert np.array_equal(_joined([_valid_values(Block(data, keep))]), data[:, keep].astype(np.float64))
    # Several blocks, joined as float64 while copied into place: as their boolean indexes concatenated.
    plain = np.concatenate([data[:, keep].astype(np.float64) for keep in (valid, partly)], axis=1)
    fast = _joined([_valid_values(Block(data, keep)) for keep in (valid, partly)])
    assert np.array_equal(fast, plain)
    # The colour caution's means are those numpy gave over the column-major sample of before, bit for bit.
    column_major = plain.astype(np.float32)
    assert column_major.flags.f_contiguous and not column_major.flags.c_contiguous
    assert np.array_equal(row_means(fast.astype(np.float32)), column_major.mean(axis=1))


@pytest.mark.parametrize("shape", [(3, 1), (4, 7), (3, 300_000), (6, 150_000)])
def test_row_means_are_the_column_major_means_to_the_bit(shape):
    rng = np.random.default_rng(shape[1])
    for values in (rng.integers(0, 256, shape), rng.integers(0, 10_000, shape), rng.normal(1e4, 3e3, shape)):
        values = values.astype(np.float32)
        before = np.asfortranarray(values).mean(axis=1)
        assert np.array_equal(row_means(values), before) and np.array_equal(row_means(values.T.copy().T), before)
        assert row_means(values).dtype == before.dtype
    # A pairwise sum (numpy's over contiguous rows) differs: the test can tell them apart.
    assert shape[1] < 1000 or not np.array_equal(np.ascontiguousarray(values).mean(axis=1), before)


def test_band_minima_and_maxima_are_those_of_the_whole_array():
    sample = np.asfortranarray(np.random.default_rng(1).normal(500, 300, (4, 999)))
    sample[2, 7] = np.nan
    for reduce in (np.min, np.max):
        for values in (sample, sample[:3], sample.astype(np.float32), np.zeros((0, 5))):
            fast, plain = per_band(values, reduce), reduce(values, axis=1)
            assert np.array_equal(fast, plain, equal_nan=True) and fast.dtype == plain.dtype


def test_zero_pixels_are_those_zero_in_every_band():
    values = np.array([[0, 0, 5, 0, np.nan], [0, 3, 0, 0, 0], [0, 0, 0, 7, 0], [9, 9, 9, 9, 9]], dtype=np.float64)

    class Info:
        name = "r"

    kept, warnings = _without_zeros(Info(), [1, 2, 3], values)
    assert np.array_equal(kept, values[:, 1:], equal_nan=True)  # column 0 is 0 in bands 1-3; band 4 is not read
    assert "20.0% of the sampled pixels" in warnings[0]


def test_sample_of_a_raster_without_masks_and_of_one_with_nodata(tmp_path):
    data = class_pattern(PATTERN, 32)
    plain = write_raster(tmp_path / "plain.tif", data)
    holed = data.copy()
    holed[:, :10, :10] = 0
    with_nodata = write_raster(tmp_path / "nodata.tif", holed, nodata=0)
    with RasterioSource(plain) as source:
        assert sample_values(source, [1, 2, 3]).shape == (3, data.shape[1] * data.shape[2])
        # A window sticking out of the raster: only its pixels on the raster are valid.
        x0, y0 = ORIGIN
        block = source.read((x0 - 100, y0 - 200, x0 + 100, y0 + 100), source.info.crs_wkt, 20, 30, [1])
        assert block.valid[:10].sum() == 0 and block.valid[:, :10].sum() == 0 and block.valid[10:, 10:].all()
    with RasterioSource(with_nodata) as source:
        assert sample_values(source, [1, 2, 3]).shape == (3, data.shape[1] * data.shape[2] - 100)


def test_geopackage_sink_writes_each_kind_of_value_as_given(tmp_path):
    fields = [FieldSpec("i", "int"), FieldSpec("s", "str"), FieldSpec("f", "float"), FieldSpec("n", "float")]
    fields += [FieldSpec("b", "int"), FieldSpec("g", "float")]
    records = [
        TileRecord(shapely.box(0, 0, 10, 10), [7, "Forest", 0.12345, None, True, 0.5]),
        TileRecord(shapely.box(10, 0, 20, 10), [None, "nodata", None, 1.5, False, 2.25]),
    ]
    sink = GeoPackageSink(tmp_path / "t.gpkg", "tiles", "", {"k": "v"})
    sink.open(fields, to_wkt("EPSG:32633"))
    sink.add(records)
    sink.add([])
    sink.commit()
    written = _layer(tmp_path / "t.gpkg")
    assert [items for _, items, _ in written] == [
        {"i": 7, "s": "Forest", "f": 0.12345, "n": None, "b": 1, "g": 0.5},
        {"i": None, "s": "nodata", "f": None, "n": 1.5, "b": 0, "g": 2.25},
    ]
    assert [wkb for _, _, wkb in written] == [shapely.to_wkb(r.geometry, flavor="iso") for r in records]


@pytest.mark.parametrize("crs", ["EPSG:32633", "EPSG:4326"])
def test_a_band_read_once_gives_what_reading_it_twice_gave(tiny_model, tmp_path, crs):
    # read_strip reads the evidence's green and red once, though they also feed the model: this is why that is safe,
    # on a direct read and on a warp, with nodata in every band and in near infrared alone.
    data = np.random.default_rng(2).integers(1, 4000, (4, 120, 150)).astype(np.uint16)
    data[:, 10:30, 20:60] = 0
    data[3, 70:90, 90:140] = 0
    res = 10.0 if crs == "EPSG:32633" else 9e-5
    origin = ORIGIN if crs == "EPSG:32633" else (13.2, 53.9)
    descriptions = ["B4 red", "B3 green", "B2 blue", "B8 nir"]  # near infrared found: green and red read for it too
    place = {"crs": crs, "res": res, "origin": origin}
    raster = write_raster(tmp_path / "r.tif", data, nodata=0, descriptions=descriptions, **place)
    asked = []

    class Recording(RasterioSource):
        def read(self, bounds, crs_wkt, width, height, bands):
            asked.append(list(bands))
            return super().read(bounds, crs_wkt, width, height, bands)

    with Recording(raster) as source:
        grid_wkt = to_wkt("EPSG:32633")  # the raster's own CRS (a direct read) or not (a warp)
        footprint = transform_geometry(shapely.box(*source.info.bounds), source.info.crs_wkt, grid_wkt)
        inside = shapely.affinity.scale(footprint.envelope, 0.8, 0.8).bounds
        twice = source.read(inside, grid_wkt, 90, 64, [1, 2, 3, 2, 1, 4])
        once = source.read(inside, grid_wkt, 90, 64, [1, 2, 3, 4])
        assert np.array_equal(twice.data, once.data[[0, 1, 2, 1, 0, 3]]) and np.array_equal(twice.valid, once.valid)
        assert not twice.valid.all() and twice.valid.any()
        asked.clear()
        options = ClassifyOptions(model_path=str(tiny_model), out_vector=str(tmp_path / "t.gpkg"), scaling="percentile")
        result = classify(source, options)
    assert result.evidence.bands is not None and result.evidence.tiles_checked > 0
    assert asked and all(len(set(bands)) == len(bands) for bands in asked)


@pytest.mark.parametrize("keep", [0.5, 0.98])
def test_a_geopackage_cut_short_is_caught_before_publication(tiny_model, tmp_path, monkeypatch, keep):
    # The check counts the rows in the table itself (every page read), not the count GDAL stores beside it.
    verify = GeoPackageSink._verify

    def cut_then_verify(self):
        size = os.path.getsize(self._tmp)
        with open(self._tmp, "r+b") as handle:
            handle.truncate(int(size * keep) // 4096 * 4096)
        verify(self)

    monkeypatch.setattr(GeoPackageSink, "_verify", cut_then_verify)
    raster = write_raster(tmp_path / "r.tif", class_pattern(PATTERN, 32))
    with pytest.raises(OutputError, match="Cannot write the GeoPackage .*disk full"):
        _run(raster, tiny_model, tmp_path / "out")
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_the_card_read_from_the_file_is_the_one_onnxruntime_reads(tiny_model):
    # A run plans with the card read from the file while onnxruntime builds the session (ModelLoad).
    for path in (tiny_model, default_model_path()):
        session = create_session(path, 1)
        assert read_card(path) == ModelCard.from_metadata(session.get_modelmeta().custom_metadata_map)


def test_a_broken_model_is_reported_before_anything_wrong_with_the_raster(tmp_path):
    # The model loads on a thread while the raster is sampled; its error still comes first, in load_model's words.
    blank = write_raster(tmp_path / "blank.tif", np.zeros((3, 128, 160), np.uint16))  # refused while sampled
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="is not a valid ONNX model"):
        _run(blank, broken, tmp_path / "out")
    assert [t for t in threading.enumerate() if t.name.startswith("rs_ghost_load")] == []


def test_a_strip_read_ahead_that_fails_fails_where_it_did_after_the_warnings(tiny_model, tmp_path):
    # The first strips are read while the model loads; their failure still comes after the warnings, as before.
    data = class_pattern(PATTERN, 32)
    data[:, :8, :8] = 0  # a zero gap: a warning
    raster = write_raster(tmp_path / "r.tif", data)

    class StripsFail(RasterioSource):
        def read(self, bounds, crs_wkt, width, height, bands):
            if height == 32:  # a strip of tiles; the radiometry's sample is the whole raster
                return Block(np.zeros((len(bands), 0, 0), np.uint8), np.zeros((0, 0), bool))
            return super().read(bounds, crs_wkt, width, height, bands)

    told = []
    options = ClassifyOptions(model_path=str(tiny_model), out_vector=str(tmp_path / "out" / "t.gpkg"))
    with StripsFail(raster) as source, pytest.raises(InputError, match="the read failed"):
        classify(source, options, warn=told.append)
    assert any("are 0 in every band" in warning for warning in told)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float32, np.float64])
def test_values_used_as_they_are_become_the_same_network_input(dtype):
    # normalise casts and scales in one pass for scaling 'none': the float32 values of a cast, then a scaling.
    card = tiny_card()
    plan = Radiometry(card, [1, 2, 3], "", "none", (0.0,) * 3, (255.0,) * 3)
    data = np.clip(np.random.default_rng(3).normal(100, 80, (3, 20, 30)), 0, 250).astype(dtype)
    before = data.astype(np.float32, copy=True)
    for c, mean in enumerate(card.standardization_mean):
        std = card.standardization_std[c]
        before[c] *= 1.0 / (card.value_range[1] * std)
        before[c] -= mean / std
    assert np.array_equal(plan.normalise(data), before) and plan.normalise(data).dtype == np.float32


def test_valid_shares_are_the_means_of_the_masks():
    strip = np.random.default_rng(4).random((32, 200)) > 0.3
    for mask in (strip, np.ones_like(strip), np.zeros_like(strip)):
        tiles = sliding_window_view(mask, 32, axis=1)[:, ::24].transpose(1, 0, 2)  # overlapping windows, a view
        assert np.array_equal(valid_shares(tiles), tiles.mean(axis=(1, 2)))
        assert np.array_equal(valid_shares(tiles[:, :8, :8]), tiles[:, :8, :8].mean(axis=(1, 2)))
