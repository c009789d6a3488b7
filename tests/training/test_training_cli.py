"""`python -m training`: mistakes end with one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rs_ghost_qgis.core.errors import RsGhostError
from tests.training.test_train import SMALL, make_class_tree, stage_args, train_args
from training import cli, commands, config
from training.checkpoint import save_checkpoint
from training.errors import DataError, ExportError, TrainingError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return make_class_tree(tmp_path_factory.mktemp("cli") / "tree", per_class=5)


def one_line_error(capsys) -> str:
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "Traceback" not in error
    assert len(error.splitlines()) == 1, error
    return error


@pytest.mark.parametrize("data", [[], ["--data", ""]])  # `make train` passes DATA="" when none is found
def test_run_without_data_says_how_to_get_eurosat_or_use_local_data(monkeypatch, tmp_path, capsys, data):
    monkeypatch.setattr(config, "DEFAULT_DATA", (tmp_path / "nowhere",))
    assert cli.main(["run", "--out", str(tmp_path / "out"), *data]) == 2
    error = one_line_error(capsys)
    assert "zenodo.org" in error and "--polygons" in error and "--class-field" in error and "--gsd" in error
    assert not (tmp_path / "out").exists()


def test_polygons_need_the_raster(tmp_path, capsys):
    assert cli.main(["run", "--polygons", str(tmp_path / "labels.gpkg"), "--out", str(tmp_path)]) == 2
    assert "--data scene.tif" in one_line_error(capsys)


def test_unknown_student_is_refused_before_the_data_is_read(tmp_path, capsys):
    assert cli.main(["run", "--data", str(tmp_path / "missing"), "--student", "mobilenet", "--out", str(tmp_path)]) == 2
    assert "unknown model 'mobilenet'" in one_line_error(capsys)


def test_missing_data_folder(tmp_path, capsys):
    assert cli.main(["train", "--model", SMALL, "--data", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    assert "does not exist" in one_line_error(capsys)


def test_unknown_model_lists_the_known_ones(tree, tmp_path, capsys):
    argv = ["train", "--model", "resnet50", *stage_args(tree, tmp_path / "out")]
    assert cli.main(argv) == 2
    assert "g_ghost_regnetx_040" in one_line_error(capsys)


@pytest.mark.parametrize("flag", ["--epochs", "--batch-size"])
def test_counts_must_be_positive(tree, tmp_path, capsys, flag):
    argv = train_args(tree, tmp_path / "out") + [flag, "0"]
    assert cli.main(argv) == 2
    assert flag in one_line_error(capsys)


def test_distillation_needs_a_teacher_checkpoint(tree, tmp_path, capsys):
    assert cli.main(train_args(tree, tmp_path / "out", "--distill", "dkd")) == 2
    assert "--teacher-checkpoint" in one_line_error(capsys)
    assert cli.main(train_args(tree, tmp_path / "out", "--teacher", "vgg16_bn")) == 2
    assert "python -m training run" in one_line_error(capsys)


def test_options_of_another_method_are_refused(tree, tmp_path, capsys):
    teacher = tmp_path / "teacher.pt"
    _fake_checkpoint(teacher, ["Crop", "Forest", "Water"])
    argv = train_args(tree, tmp_path / "out", "--teacher-checkpoint", str(teacher), "--distill", "kd", "--beta", "2")
    assert cli.main(argv) == 2
    assert "--beta" in one_line_error(capsys)


def test_teacher_trained_on_other_classes_is_refused(tree, tmp_path, capsys):
    teacher = tmp_path / "teacher.pt"
    _fake_checkpoint(teacher, ["Cloud", "Snow"])
    assert cli.main(train_args(tree, tmp_path / "out", "--teacher-checkpoint", str(teacher))) == 2
    assert "Cloud" in one_line_error(capsys)


def test_teacher_that_is_no_checkpoint_is_refused(tree, tmp_path, capsys):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00" * 64)
    assert cli.main(train_args(tree, tmp_path / "out", "--teacher-checkpoint", str(junk))) == 2
    assert "junk.pt" in one_line_error(capsys)


def test_run_on_own_patches_without_gsd_stops_before_training(tree, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["run", "--teacher", SMALL, "--student", SMALL, *stage_args(tree, out)]) == 2
    assert "--gsd" in one_line_error(capsys)
    assert not (out / "teacher").exists()


def test_resume_into_a_folder_of_another_model_is_refused(tree, tmp_path, capsys):
    out = tmp_path / "out"
    _fake_checkpoint(out / "last.pt", ["Crop", "Forest", "Water"], architecture="vgg16")
    assert cli.main(train_args(tree, out, "--resume")) == 2
    assert "cannot resume" in one_line_error(capsys)


@pytest.mark.slow
def test_module_entry_point_exits_2_with_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "training", "run", "--data", str(tmp_path / "missing"), "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: ") and "Traceback" not in result.stderr


@pytest.mark.parametrize(("error", "code"), [(TrainingError, 2), (DataError, 2), (ExportError, 1)])
def test_training_errors_share_one_root_and_keep_their_exit_codes(monkeypatch, tmp_path, capsys, error, code):
    assert issubclass(error, TrainingError) and issubclass(error, RsGhostError)

    def fail(args):
        raise error("what went wrong")

    monkeypatch.setattr(commands, "export_command", fail)
    assert cli.main(["export", "--checkpoint", str(tmp_path / "x.pt"), "--out", str(tmp_path / "x.onnx")]) == code
    assert one_line_error(capsys) == "error: what went wrong"


def test_missing_required_argument_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["evaluate", "--data", "x"])
    assert stop.value.code == 2
    assert "--model" in capsys.readouterr().err


def _fake_checkpoint(path: Path, class_names: list[str], architecture: str = SMALL) -> None:
    save_checkpoint(
        {
            "architecture": architecture,
            "num_classes": len(class_names),
            "model_options": {},
            "state_dict": {},
            "class_names": class_names,
            "input_size": 32,
        },
        path,
    )


def test_images_left_out_as_undecodable_are_reported_on_screen(tmp_path, capsys):
    from tests.training.test_data import add_broken_files, make_tree

    root = make_tree(tmp_path / "tree", {"A": 100, "B": 100}, size=8)
    add_broken_files(root / "A", 2)  # 2 of 202 files: under the 1 % that stops the run
    args = cli._parser().parse_args(["train", "--model", SMALL, "--out", "o", "--data", str(root)])
    args.cache_dir = str(tmp_path / "cache")

    config.load_data(args, image_size=8)

    err = capsys.readouterr().err
    assert "warning: 2 image(s) could not be decoded and are left out" in err, err
    assert "A/broken_0.png" in err and "A/broken_1.jpg" in err, err


# Refuses the geospatial packages, as a GPU machine's image without them would.
_WITHOUT_GIS = """
import sys

class Missing:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("rasterio", "osgeo", "shapely"):
            raise ImportError(f"No module named {name!r} (hidden by the test)")

sys.meta_path.insert(0, Missing())
from training import cli
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_patch_folders_train_where_rasterio_and_gdal_are_missing(tree, tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_GIS, *train_args(tree, out, epochs=1)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "best.pt").is_file()
