"""Training's refusals and warnings (issues 12, 24 and 30): a class without validation images is said,
messages name flags, numbers are checked up front, evaluate leaves no empty --out.

Each test runs what a user runs (``load_dataset`` as `python -m training` calls it, or the
command line itself): warnings are one ``warning:`` line per class, refusals one ``error:``
line with exit code 2, and a refused run leaves nothing behind.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from osgeo import ogr
from rasterio.crs import CRS

from tests.core.adapt_data import labelled_polygons
from tests.core.test_hardening_round3_inputs import _layers
from tests.training.test_data import make_tree
from tests.training.test_data_raster import LEFT, TOP, WATER_BOX, chips, halves, halves_polygons, write_polygons
from tests.training.test_data_raster import write_raster as write_rgb
from tests.training.test_train import SMALL, make_class_tree, stage_args, train_args
from training import cli, l2a
from training.data import DataError, load_dataset
from training.data.raster import read_polygons


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]


# --- a class with one image ------------------------------------------------------------------


@pytest.fixture
def one_crop(tmp_path) -> Path:
    """Three classes of 5 images, but Crop with a single one."""
    tree = make_class_tree(tmp_path / "tree", per_class=5)
    for image in sorted((tree / "Crop").iterdir())[1:]:
        image.unlink()
    return tree


def test_a_class_with_one_image_is_said_to_have_no_validation_image(one_crop, tmp_path, capsys):
    # The split kept it for training only, and "best val top-1" covered 2 classes, unsaid.
    splits = load_dataset(one_crop, image_size=16, cache_dir=tmp_path / "cache")
    assert splits.summary["counts"]["val"]["Crop"] == 0
    lines = _warnings(capsys.readouterr().err)
    assert lines == [
        "warning: class Crop has 1 training image(s) and none for validation; validation top-1 covers 2 of 3 "
        "classes. To measure it, add images to Crop (two or more put one in validation)."
    ]


def test_a_validation_csv_without_a_class_is_said_too(tmp_path, capsys):
    tree = make_class_tree(tmp_path / "tree", per_class=3)
    rows = [f"{i},{p.relative_to(tree)},{label},{p.parent.name}" for i, (label, p) in enumerate(_images(tree))]
    (tree / "val.csv").write_text(",Filename,Label,ClassName\n" + "\n".join(r for r in rows if "Crop" not in r) + "\n")
    load_dataset(tree, image_size=16, val_csv="val.csv", cache_dir=tmp_path / "cache")
    lines = _warnings(capsys.readouterr().err)
    assert len(lines) == 1 and "class Crop has 3 training image(s)" in lines[0] and "validation CSV" in lines[0]


def _images(tree: Path) -> list[tuple[int, Path]]:
    names = sorted(folder.name for folder in tree.iterdir() if folder.is_dir())
    return [(names.index(p.parent.name), p) for name in names for p in sorted((tree / name).iterdir())]


def test_two_images_per_class_warn_nothing(tmp_path, capsys):
    load_dataset(make_class_tree(tmp_path / "tree", per_class=2), image_size=16, cache_dir=tmp_path / "cache")
    assert _warnings(capsys.readouterr().err) == []


def test_training_on_a_class_with_one_image_warns_once(one_crop, tmp_path, capsys):
    assert cli.main(train_args(one_crop, tmp_path / "run", epochs=1)) == 0
    lines = _warnings(capsys.readouterr().err)
    assert len(lines) == 1 and "class Crop has 1 training image(s)" in lines[0], lines


# --- messages name the flags, not Python fields ------------------------------------------------


@pytest.mark.parametrize(
    "options, words",
    [
        ({"chip_stride": 0}, "--chip-stride must be a positive number of pixels, not 0"),
        ({"gsd_m": -1.0}, "--gsd must be a positive number of metres, not -1.0"),
    ],
)
def test_raster_chip_options_are_named_by_their_flags(tmp_path, options, words):
    raster = write_rgb(tmp_path / "scene.tif", halves())
    with pytest.raises(DataError) as error:
        chips(raster, halves_polygons(tmp_path / "fields.gpkg"), **options)
    assert words in str(error.value)
    assert "gsd_m" not in str(error.value) and "chip_stride" not in str(error.value)


def test_a_class_without_chips_names_the_flags_to_lower(tmp_path):
    raster = write_rgb(tmp_path / "scene.tif", halves())
    polygons = write_polygons(
        tmp_path / "small.gpkg", [("water", WATER_BOX), ("tiny", (LEFT + 400, TOP - 50, LEFT + 450, TOP))]
    )
    with pytest.raises(DataError, match="lower --image-size, --gsd or --chip-stride"):
        chips(raster, polygons)


def test_the_command_line_says_the_flag(tmp_path, capsys):
    raster = write_rgb(tmp_path / "scene.tif", halves())
    polygons = halves_polygons(tmp_path / "fields.gpkg")
    argv = train_args(raster, tmp_path / "run", "--polygons", str(polygons), "--class-field", "landuse")
    assert cli.main([*argv, "--chip-stride", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "--chip-stride must be" in err, err
    assert not (tmp_path / "run").exists()


# --- evaluate leaves no empty --out ---------------------------------------------------------------


def _evaluate(model: Path, tree: Path, out: Path) -> list[str]:
    data = ["--data", str(tree), "--cache-dir", str(tree.parent / "cache"), "--no-latency"]
    return ["evaluate", "--model", str(model), *data, "--out", str(out)]


def test_a_refused_evaluation_leaves_no_out_folder(tiny_model, tmp_path, capsys):
    # It made --out first, then refused data with a class the model lacks: an empty folder stayed.
    tree = make_class_tree(tmp_path / "tree", per_class=3)
    (tree / "Water").rename(tree / "Cloud")
    out = tmp_path / "new" / "eval"
    assert cli.main(_evaluate(tiny_model, tree, out)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "Cloud" in err, err
    assert not (tmp_path / "new").exists()


def test_an_out_that_is_a_file_is_one_error(tiny_model, tmp_path, capsys):
    tree = make_class_tree(tmp_path / "tree", per_class=3)
    out = tmp_path / "eval"
    out.write_text("my notes")
    assert cli.main(_evaluate(tiny_model, tree, out)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and f"cannot create --out {out}" in err, err
    assert out.read_text() == "my notes"


# --- training's numbers are checked before the data is read (issue 24) ----------------------------


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
    assert cli.main([*argv, flag, value]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert words in err
    assert not out.exists()  # refused before the data was read or a run folder made


# --- quantize --out must name an .onnx file (issue 24) --------------------------------------------


@pytest.mark.parametrize("name", ["m.txt", "m"])
def test_quantize_refuses_an_out_that_is_no_onnx_file_and_makes_nothing(tiny_model, tmp_path, capsys, name):
    # It called its own temporary file 'not a readable training checkpoint' and left an empty folder.
    tree = make_class_tree(tmp_path / "tree", per_class=3)
    out = tmp_path / "new" / name
    data = ["--data", str(tree), "--cache-dir", str(tmp_path / "cache")]
    assert cli.main(["quantize", "--model", str(tiny_model), *data, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert f"--out {out} must end in .onnx" in err and "checkpoint" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tree"]


# --- evaluate on a model whose input disagrees with its card (issue 12) ---------------------------


def test_evaluate_on_a_model_whose_input_disagrees_with_its_card(tiny_model, tmp_path, capsys):
    graph = onnx.load(str(tiny_model))
    for prop in graph.metadata_props:
        if prop.key == "input_size":
            prop.value = "48"  # the network takes 32 x 32
    model = tmp_path / "liar.onnx"
    onnx.save(graph, str(model))
    tree = make_tree(tmp_path / "tree", {"Crop": 3, "Forest": 3, "Water": 3}, size=32)
    out = tmp_path / "eval"
    code = cli.main(["evaluate", "--model", str(model), "--data", str(tree), "--out", str(out), "--no-latency"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0]
    assert "model card says 3 bands of 48 x 48 px" in err[0] and "32 != 48" in err[0]
    assert not out.exists()


# --- L2A patches as float reflectance, polygons in a file of several layers (issue 30) ------------


def test_l2a_patches_as_float_reflectance_are_read_as_reflectance_x_10000(tmp_path):
    rng = np.random.default_rng(0)
    scaled = rng.integers(100, 4000, size=(4, 4, 8, 8)).astype(np.uint16)
    bands = np.array(["B02", "B03", "B04", "B08"])
    np.savez(tmp_path / "int.npz", patches=scaled, bands=bands)
    np.savez(tmp_path / "float.npz", patches=(scaled / 10_000).astype(np.float32), bands=bands)
    as_int, _ = l2a.load_patches(tmp_path / "int.npz")
    as_float, _ = l2a.load_patches(tmp_path / "float.npz")
    np.testing.assert_allclose(as_float, as_int, atol=0.01)
    np.savez(tmp_path / "wrong.npz", patches=scaled.astype(np.float32) * 100, bands=bands)
    with pytest.raises(Exception, match="does not hold reflectance"):
        l2a.load_patches(tmp_path / "wrong.npz")


def test_training_polygons_of_several_layers_take_a_layer_name(tmp_path):
    rows = [(value, shape.wkt) for value, shape in labelled_polygons()]
    path = _layers(tmp_path / "l.gpkg", {"labels": (ogr.wkbPolygon, rows), "roads": (ogr.wkbPolygon, rows[:1])})
    with pytest.raises(DataError, match=r"holds 2 layers \(labels, roads\); choose one with FILE\|layername=NAME"):
        read_polygons(path, "landcover", CRS.from_epsg(32633))
    _, names, _ = read_polygons(Path(f"{path}|layername=labels"), "landcover", CRS.from_epsg(32633))
    assert names == ["meadow", "plastic"]
