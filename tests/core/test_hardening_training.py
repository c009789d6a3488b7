"""Issue 24, training: a class without validation images is said, messages name flags, evaluate leaves no empty --out.

Each test runs what a user runs (``load_dataset`` as `python -m training` calls it, or the
command line itself): warnings are one ``warning:`` line per class, refusals one ``error:``
line with exit code 2, and a refused evaluation leaves nothing behind.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.core.test_data_raster import LEFT, TOP, WATER_BOX, chips, halves, halves_polygons, write_polygons
from tests.core.test_data_raster import write_raster as write_rgb
from tests.core.test_train import make_class_tree, train_args
from training import cli
from training.data import DataError, load_dataset


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
