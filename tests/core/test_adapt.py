"""Adapting a model to labelled polygons (core/adapt/adapt.py), with an independent oracle.

The oracle (tests/core/adapt_data.py): two classes that differ only in near infrared. RGB
cannot separate them, so an adapted model that gets the held-out blocks right must be using
band 4 through its band statistics.
"""

import dataclasses
import json

import numpy as np
import pytest
import shapely
from osgeo import ogr

from rs_ghost_qgis.cli.main import main
from rs_ghost_qgis.core.adapt.adapt import AdaptOptions, adapt, labels_from_file, sha256
from rs_ghost_qgis.core.classify.pipeline import ClassifyOptions, classify
from rs_ghost_qgis.core.crs import to_wkt, transform_geometry
from rs_ghost_qgis.core.errors import InputError, ModelError
from rs_ghost_qgis.core.model.card import ModelCard
from rs_ghost_qgis.core.model.runtime import load_model
from rs_ghost_qgis.core.sources.rasterio_source import RasterioSource
from tests.core.adapt_data import NAMES, block_box, held_out_truth, labelled_polygons, nir_scene, write_labels
from tests.tiny_model import pooled_model, tiny_card


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return nir_scene(tmp_path_factory.mktemp("adapt") / "nir.tif")


@pytest.fixture(scope="module")
def rgb_scene(tmp_path_factory):
    return nir_scene(tmp_path_factory.mktemp("adapt_rgb") / "rgb.tif", with_nir=False)


@pytest.fixture(scope="module")
def labels(tmp_path_factory):
    return write_labels(tmp_path_factory.mktemp("labels") / "labels.gpkg", labelled_polygons())


def _adapt(raster, labels_path, out, model, **options):
    with RasterioSource(raster) as source:
        return adapt(
            source,
            labels_from_file(str(labels_path), "landcover"),
            AdaptOptions(out_path=str(out), model_path=str(model), threads=1, **options),
        )


def _held_out_accuracy(raster, model, tmp_path) -> float:
    tiles = tmp_path / f"{raster.stem}_tiles.gpkg"
    with RasterioSource(raster) as source:
        classify(source, ClassifyOptions(model_path=str(model), out_vector=str(tiles), threads=1, overwrite=True))
    dataset = ogr.Open(str(tiles))
    right = total = 0
    for feature in dataset.GetLayer(0):
        truth = held_out_truth(feature.GetField("tile_row"), feature.GetField("tile_col"))
        if truth is not None:
            total += 1
            right += feature.GetField("class_name") == NAMES[truth]
    assert total == 128  # 8 held-out blocks of 4 x 4 tiles
    return right / total


@pytest.fixture(scope="module")
def adapted(scene, labels, tiny_model, tmp_path_factory):
    return _adapt(scene, labels, tmp_path_factory.mktemp("out") / "adapted.onnx", tiny_model)


def test_near_infrared_separates_what_rgb_cannot(adapted, scene, rgb_scene, labels, tiny_model, tmp_path):
    assert adapted.feature_source == "features"  # the tiny model is exported with its pooled features
    assert _held_out_accuracy(scene, adapted.out_path, tmp_path) >= 0.9
    assert adapted.cv_accuracy >= 0.9
    rgb = _adapt(rgb_scene, labels, tmp_path / "rgb.onnx", tiny_model)
    assert _held_out_accuracy(rgb_scene, rgb.out_path, tmp_path) <= 0.75  # chance is 0.5
    assert rgb.cv_accuracy <= 0.75


def test_card_says_what_was_adapted(adapted, scene, labels, tiny_model):
    card = load_model(adapted.out_path).card
    assert card.class_names == ["meadow", "plastic"]
    assert len(card.class_colors) == 2 and card.class_colors[0] != card.class_colors[1]
    assert card.training["status"] == "adapted"
    assert card.training["base_model"] == {
        "name": tiny_model.name,
        "sha256": sha256(tiny_model),
        "architecture": "tiny_cnn",
        "classes": ["Water", "Forest", "Crop"],
    }
    assert card.training["raster"] == scene.stem and card.training["raster_bands"] == 4
    assert card.training["polygons"] == labels.name and card.training["class_field"] == "landcover"
    assert card.training["polygons_per_class"] == {"meadow": 4, "plastic": 4}
    assert "centre" in card.training["chip_rule"]
    assert card.metrics["cv_accuracy"] == pytest.approx(adapted.cv_accuracy, abs=1e-4)
    assert "group k-fold by polygon" in card.metrics["cv_method"]
    chips = sum(adapted.chips.values())
    assert card.evaluated_on() == f"{chips:,} chips of the polygons in 'labels.gpkg', whole polygons held out"
    assert card.head["raster_bands"] == 4 and card.head["feature_dims"] == 3
    # The graph is the base model's: only the card changed.
    assert load_model(adapted.out_path).session.get_outputs()[0].name == "logits"


def test_cli_adapt_then_classify(scene, labels, tiny_model, tmp_path, capsys):
    out = tmp_path / "cli.onnx"
    code = main(
        [
            "adapt",
            str(scene),
            "--polygons",
            str(labels),
            "--class-field",
            "landcover",
            "--out",
            str(out),
            "--model",
            str(tiny_model),
            "--threads",
            "1",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0 and out.is_file()
    assert "held-out recall" in printed and "whole polygons held out" in printed
    tiles = tmp_path / "tiles.gpkg"
    assert main(["classify", str(scene), "--model", str(out), "--out-vector", str(tiles), "--threads", "1"]) == 0
    assert "meadow" in capsys.readouterr().out
    assert main(["info", "--model", str(out)]) == 0
    assert "head (adapted)" in capsys.readouterr().out


def test_other_band_count_is_refused_at_classify_time(adapted, rgb_scene, tmp_path):
    with RasterioSource(rgb_scene) as source, pytest.raises(InputError, match="adapted on nir with 4 bands"):
        classify(source, ClassifyOptions(model_path=adapted.out_path, out_vector=str(tmp_path / "t.gpkg")))
    assert not (tmp_path / "t.gpkg").exists()


def test_polygons_in_another_crs_are_reprojected(adapted, scene, tiny_model, tmp_path):
    utm, wgs84 = to_wkt("EPSG:32633"), to_wkt("EPSG:4326")
    moved = [(name, transform_geometry(shape, utm, wgs84, max_segment=20.0)) for name, shape in labelled_polygons()]
    result = _adapt(scene, write_labels(tmp_path / "wgs84.gpkg", moved, epsg=4326), tmp_path / "m.onnx", tiny_model)
    assert sum(result.chips.values()) == pytest.approx(sum(adapted.chips.values()), rel=0.05)
    assert result.cv_accuracy >= 0.9


def test_pooled_features_are_exposed_when_the_graph_lacks_them(scene, labels, tmp_path):
    base = pooled_model(tmp_path / "pooled.onnx", tiny_card())  # hand-written: one output, MatMul + Add
    result = _adapt(scene, labels, tmp_path / "m.onnx", base)
    assert result.feature_source == "features"
    assert "exposed as a 'features' output" in result.card.training["method"]
    model = load_model(result.out_path)
    assert [o.name for o in model.session.get_outputs()] == ["logits", "features"]
    assert model.head.source == "features" and model.head.feature_dims == 3
    assert _held_out_accuracy(scene, result.out_path, tmp_path) >= 0.9


def test_logits_when_the_graph_has_no_linear_classifier(scene, labels, tmp_path):
    from onnx import TensorProto, helper, save

    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mean_colour",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    for key, value in tiny_card().to_metadata().items():
        model.metadata_props.add(key=key, value=value)
    save(model, str(tmp_path / "mean.onnx"))
    result = _adapt(scene, labels, tmp_path / "m.onnx", tmp_path / "mean.onnx")
    assert result.feature_source == "logits" and "logits" in result.card.training["method"]
    assert load_model(result.out_path).head.source == "logits"


def _refused(scene, features, tiny_model, tmp_path, match, epsg=32633, field="landcover", **options):
    path = write_labels(tmp_path / "bad.gpkg", features, epsg=epsg)
    out = tmp_path / "never.onnx"
    with pytest.raises(InputError, match=match) as caught, RasterioSource(scene) as source:
        adapt(source, labels_from_file(str(path), field), AdaptOptions(str(out), str(tiny_model), **options))
    assert not out.exists() and not list(tmp_path.glob(".never*"))
    return str(caught.value)


def test_one_class_is_refused(scene, tiny_model, tmp_path):
    message = _refused(scene, [("meadow", block_box(0, 0, 160))], tiny_model, tmp_path, "at least two")
    assert "Class field (--class-field)" in message


def test_missing_field_is_refused(scene, tiny_model, tmp_path):
    message = _refused(scene, labelled_polygons(), tiny_model, tmp_path, "no field 'klasse'", field="klasse")
    assert "its fields are: landcover" in message


def test_points_and_lines_are_refused(scene, tiny_model, tmp_path):
    centre = block_box(0, 0).centroid
    features = [("meadow", centre), ("plastic", shapely.LineString([(centre.x, centre.y), (centre.x + 9, centre.y)]))]
    message = _refused(scene, features, tiny_model, tmp_path, "must hold polygons")
    assert "LineString" in message and "Point" in message


def test_polygons_outside_the_raster_are_refused(scene, tiny_model, tmp_path):
    far = shapely.affinity.translate(block_box(0, 0), 50_000, 0)
    _refused(scene, [*labelled_polygons(), ("meadow", far)], tiny_model, tmp_path, "1 of the 9 polygons .* outside")


def test_polygons_in_the_wrong_crs_are_outside(scene, tiny_model, tmp_path):
    # UTM coordinates declared as degrees: they land far off the raster.
    _refused(scene, labelled_polygons(), tiny_model, tmp_path, "outside the raster", epsg=3857)


def test_too_few_chips_names_class_and_counts(scene, tiny_model, tmp_path):
    tiny = block_box(0, 1, inset_m=560)  # 160 m across: one chip centre
    message = _refused(scene, [labelled_polygons()[0], ("plastic", tiny)], tiny_model, tmp_path, "Class 'plastic'")
    assert "has 1 chip(s); at least 5 are needed" in message and "every 80 m" in message


def test_polygon_without_chip_centre_names_the_smallest_size(scene, labels, tiny_model, tmp_path):
    speck = block_box(1, 1, inset_m=635)  # 10 m across, between chip centres
    features = [*labelled_polygons(), ("plastic", speck)]
    result = _adapt(scene, write_labels(tmp_path / "speck.gpkg", features), tmp_path / "m.onnx", tiny_model)
    assert any("smallest usable polygon is about 80 m" in warning for warning in result.warnings)


def test_existing_output_is_refused_without_overwrite(adapted, scene, labels, tiny_model):
    with pytest.raises(Exception, match="exists"):
        _adapt(scene, labels, adapted.out_path, tiny_model)


def test_card_head_is_validated():
    card = tiny_card()
    head = {
        "source": "features",
        "feature_dims": 3,
        "raster_bands": 1,
        "mean": [0.0] * 5,
        "scale": [1.0] * 5,
        "weights": [[0.0] * 5] * 3,
        "bias": [0.0] * 3,
    }
    assert dataclasses.replace(card, head=head).head == head
    meta = dataclasses.replace(card, head=head).to_metadata()
    assert json.loads(meta["head"]) == head
    for change, match in (
        ({"weights": [[0.0] * 4] * 3}, "weights must be 3 rows"),
        ({"scale": [1.0, 1.0, 0.0, 1.0, 1.0]}, "scale positive"),
        ({"source": "pixels"}, "source must be one of"),
        ({"bias": [0.0] * 2}, "bias must hold 3"),
    ):
        with pytest.raises(ModelError, match=match):
            dataclasses.replace(card, head={**head, **change})
    assert "head" not in card.to_metadata()  # a plain model's card is unchanged
    assert ModelCard.from_metadata(meta).head == head


def test_cross_validation_never_tests_a_polygon_on_itself():
    from rs_ghost_qgis.core.adapt.linear import group_folds

    groups = np.repeat(np.arange(8), 5)
    y = np.repeat([0, 1, 0, 1, 0, 1, 0, 1], 5)
    fold = group_folds(groups, y, 3)
    for group in range(8):
        assert len(set(fold[groups == group])) == 1
    for k in range(3):  # every fold's training part keeps both classes
        assert set(y[fold != k]) == {0, 1}


def test_classify_many_runs_an_adapted_model_like_classify(adapted, scene, thread_client, tmp_path):
    from rs_ghost_qgis.core.many.job import run_job

    options = ClassifyOptions(model_path=adapted.out_path, stride=16, threads=1)
    result = run_job([str(scene)], tmp_path / "many", options, thread_client, 16)
    assert not result.failures and result.blocks_total > 1
    single = tmp_path / "single.gpkg"
    with RasterioSource(scene) as source:
        classify(source, dataclasses.replace(options, out_vector=str(single)))

    def classes(path):
        dataset = ogr.Open(str(path))
        return {(f.GetField("tile_row"), f.GetField("tile_col")): f.GetField("class_name") for f in dataset.GetLayer(0)}

    assert classes(tmp_path / "many" / f"{scene.stem}.gpkg") == classes(single)


def test_other_bands_than_adapted_with_are_warned_about(adapted, scene, tmp_path):
    with RasterioSource(scene) as source:
        result = classify(source, ClassifyOptions(model_path=adapted.out_path, bands=[1, 2, 3], keep_class_map=True))
    warning = next(w for w in result.warnings if "was adapted with bands 3,2,1" in w)
    assert "this run uses 1,2,3; set Bands (--bands) to 3,2,1" in warning
    with RasterioSource(scene) as source:
        plain = classify(source, ClassifyOptions(model_path=adapted.out_path, keep_class_map=True))
    assert not any("was adapted with" in w for w in plain.warnings)
