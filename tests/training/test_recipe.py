"""Recipe files (`python -m training run|train --recipe FILE`): reading, checking, precedence, wiring."""

from __future__ import annotations

import argparse
import tomllib
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.training.test_train import make_class_tree
from training import cli, commands
from training import train as train_module
from training.checkpoint import card_from_checkpoint, load_checkpoint
from training.config import distill_method, stage_config, unnamed_settings
from training.errors import TrainingError
from training.recipe import apply_recipe, read_recipe, recipe_path, recipe_text, write_stage_recipe

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "recipes").glob("*.toml"))
EVERY_RECIPE = sorted((REPO / "recipes").rglob("*.toml"))  # the ablation's and the GPU's too
TINY = "g_ghost_regnetx_002"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def command_parser(command: str) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """A fresh `python -m training` parser and its sub-parser for ``command``."""
    parser = cli._parser()
    return parser, parser.commands[command]


def one_line_error(capsys) -> str:
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "Traceback" not in error, error
    assert len(error.splitlines()) == 1, error
    return error


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return make_class_tree(tmp_path_factory.mktemp("recipe") / "tree", per_class=5)


# ----------------------------------------------------------------------------- read_recipe


def test_tables_are_flattened_in_file_order(tmp_path):
    path = write(
        tmp_path / "r.toml",
        'model = "vgg16_bn"\n\n[schedule]\nepochs = 3\nlr = 0.5\n\n[augmentation]\nno_augment = true\n'
        "label_smoothing = 0.1\n\n[card]\nraw_range = [0, 3000]\n",
    )
    recipe = read_recipe(path)
    assert recipe == {
        "model": "vgg16_bn",
        "epochs": 3,
        "lr": 0.5,
        "no_augment": True,
        "label_smoothing": 0.1,
        "raw_range": [0, 3000],
    }
    assert list(recipe) == ["model", "epochs", "lr", "no_augment", "label_smoothing", "raw_range"]
    assert read_recipe(str(path)) == recipe  # a str path too


@pytest.mark.parametrize(
    "text",
    [
        "[schedule]\nepochs = 3\n\n[other]\nepochs = 4\n",  # two tables
        "epochs = 3\n\n[schedule]\nepochs = 4\n",  # top level and a table
    ],
)
def test_a_key_set_twice_is_refused_by_name(tmp_path, text):
    path = write(tmp_path / "twice.toml", text)
    with pytest.raises(TrainingError, match="sets epochs twice") as error:
        read_recipe(path)
    assert str(path) in str(error.value)


def test_a_missing_file_is_one_line_naming_it(tmp_path):
    path = tmp_path / "nowhere.toml"
    with pytest.raises(TrainingError, match="does not exist") as error:
        read_recipe(path)
    message = str(error.value)
    assert str(path) in message and "\n" not in message
    assert error.value.__suppress_context__  # `from None`: no chained traceback


@pytest.mark.parametrize(
    "content",
    [
        b"epochs = \n",  # no value
        b"[schedule\nepochs = 3\n",  # broken table header
        b"epochs = 3\nepochs = 4\n",  # TOML itself forbids this
        b"data = '\xff\xfe'\n",  # not UTF-8
    ],
)
def test_a_file_that_is_not_toml_is_one_line(tmp_path, content):
    path = tmp_path / "bad.toml"
    path.write_bytes(content)
    with pytest.raises(TrainingError, match="not a readable TOML file") as error:
        read_recipe(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_a_folder_is_not_a_recipe(tmp_path):
    with pytest.raises(TrainingError, match="not a readable TOML file"):
        read_recipe(tmp_path)


def test_recipe_path_finds_the_flag_after_the_command():
    assert recipe_path(["train", "--epochs", "2", "--recipe", "a.toml", "--out", "x"]) == "a.toml"
    assert recipe_path(["run", "--recipe=b.toml"]) == "b.toml"
    assert recipe_path(["train", "--epochs", "2"]) is None


def test_recipe_text_is_the_file_or_none(tmp_path):
    path = write(tmp_path / "r.toml", "# comment kept\nepochs = 1\n")
    assert recipe_text(path) == "# comment kept\nepochs = 1\n"
    assert recipe_text(None) is None


# ----------------------------------------------------------------------------- apply_recipe


@pytest.mark.parametrize("key", ["learning_rate", "recipe", "handler", "student"])
def test_an_unknown_key_is_refused_by_name(key):
    _, train = command_parser("train")
    with pytest.raises(TrainingError, match=key) as error:
        apply_recipe(train, {"epochs": 2, key: "x"})
    assert "python -m training train" in str(error.value)


def test_every_unknown_key_is_listed():
    _, run = command_parser("run")
    with pytest.raises(TrainingError) as error:
        apply_recipe(run, {"model": "vgg16", "early_fraction": 0.5, "epochs": 2})  # `train` flags
    assert "early_fraction, model" in str(error.value) and "epochs" not in str(error.value)


@pytest.mark.parametrize(
    ("command", "key", "value"),
    [
        ("train", "epochs", "3"),  # a string for an int flag
        ("train", "epochs", True),  # a bool is no int
        ("train", "epochs", 2.5),  # a float is no int
        ("train", "batch_size", [8]),
        ("train", "lr", "0.1"),  # a string for a float flag
        ("train", "label_smoothing", False),  # a bool is no float either
        ("train", "no_augment", 1),  # an int for a store_true flag
        ("train", "resume", "yes"),
        ("train", "data", 5),  # a number for a string flag
        ("train", "model", ["vgg16"]),
        ("run", "raw_range", 3000),  # nargs=2: a list
    ],
)
def test_a_value_of_the_wrong_type_is_refused_by_name(command, key, value):
    _, sub = command_parser(command)
    with pytest.raises(TrainingError, match=f"recipe's {key} = ") as error:
        apply_recipe(sub, {key: value})
    assert "should be a" in str(error.value)


@pytest.mark.parametrize(
    ("command", "key", "value"),
    [
        ("train", "distill", "xyz"),
        ("run", "distill", "DKD"),
        ("train", "precision", "fp8"),
        ("train", "stem_stride", 3),
        ("train", "device", "tpu"),
    ],
)
def test_a_value_outside_the_choices_is_refused_by_name(command, key, value):
    _, sub = command_parser(command)
    with pytest.raises(TrainingError, match=f"recipe's {key} = {value!r} is not one of"):
        apply_recipe(sub, {key: value})


def test_an_int_is_a_valid_float():
    parser, train = command_parser("train")
    apply_recipe(train, {"lr": 1, "label_smoothing": 0, "model": "m", "data": "d", "out": "o"})
    args = parser.parse_args(["train"])
    assert args.lr == 1 and args.label_smoothing == 0


def test_the_recipe_makes_required_flags_optional(tmp_path):
    parser, train = command_parser("train")
    with pytest.raises(SystemExit):  # without the recipe, --model, --data and --out are required
        parser.parse_args(["train"])
    apply_recipe(train, {"model": TINY, "data": "tiles", "out": str(tmp_path)})
    args = parser.parse_args(["train"])
    assert (args.model, args.data, args.out) == (TINY, "tiles", str(tmp_path))


def test_a_required_flag_the_recipe_leaves_out_stays_required(capsys):
    parser, train = command_parser("train")
    apply_recipe(train, {"model": TINY, "data": "tiles"})
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(["train"])
    assert stop.value.code == 2 and "--out" in capsys.readouterr().err


def test_flags_on_the_command_line_win_over_the_recipe():
    parser, train = command_parser("train")
    recipe = {"model": TINY, "data": "tiles", "out": "o", "epochs": 3, "label_smoothing": 0.1, "distill": "kd"}
    apply_recipe(train, recipe)
    args = parser.parse_args(["train", "--epochs", "1", "--model", "vgg16", "--label-smoothing", "0.2"])
    assert (args.epochs, args.model, args.label_smoothing) == (1, "vgg16", 0.2)
    assert (args.data, args.out, args.distill) == ("tiles", "o", "kd")  # the rest from the recipe
    args = parser.parse_args(["train"])
    assert (args.epochs, args.model, args.label_smoothing) == (3, TINY, 0.1)


def test_the_recipe_replaces_the_flags_defaults_not_others():
    parser, train = command_parser("run")
    apply_recipe(train, {"student": TINY, "stem_stride": 1, "no_augment": True, "raw_range": [0, 3000]})
    args = parser.parse_args(["run"])
    assert (args.student, args.stem_stride, args.no_augment, args.raw_range) == (TINY, 1, True, [0, 3000])
    # Training flags default to "not given"; StageConfig and losses.DEFAULTS fill them (config.stage_config).
    assert (args.epochs, args.distill, args.batch_size, args.teacher) == (None, None, None, "vgg16_bn")
    config = stage_config(args, model=TINY, out=Path("o"), stage="student", distill=distill_method(args))
    assert (config.epochs, config.distill, config.batch_size, config.augment) == (30, "dkd", 128, False)
    # The other command keeps its own defaults.
    assert parser.parse_args(["train", "--model", "m", "--data", "d", "--out", "o"]).stem_stride is None


# ----------------------------------------------------------------------------- the shipped recipes


def test_there_are_shipped_recipes_for_both_commands():
    commands = {_command_of(read_recipe(path)) for path in SHIPPED}
    assert commands == {"run", "train"}, SHIPPED


def _command_of(recipe: dict) -> str:
    assert ("model" in recipe) != ("student" in recipe), recipe
    return "train" if "model" in recipe else "run"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.name)
def test_a_shipped_recipe_applies_to_its_command(path):
    recipe = read_recipe(path)
    command = _command_of(recipe)
    parser, sub = command_parser(command)
    apply_recipe(sub, recipe)
    args = vars(parser.parse_args([command]))  # no flag needed: the recipe gives every required one
    assert {key: args[key] for key in recipe} == recipe
    assert tomllib.loads(path.read_text(encoding="utf-8"))  # plain TOML too
    if recipe.get("early_input_size"):
        # Progressive resizing must leave the last epochs at the full size.
        early = round(recipe.get("early_fraction", 0.0) * recipe["epochs"])
        assert 0 < early < recipe["epochs"]


# ----------------------------------------------------------------------------- through cli.main


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('model = "vgg16"\nlearning_rate = 0.1\n', "learning_rate"),
        ("[schedule]\nepochs = '3'\n", "epochs = '3' should be a int"),
        ('[distillation]\ndistill = "xyz"\n', "distill = 'xyz' is not one of"),
        ("[a]\nlr = 0.1\n[b]\nlr = 0.2\n", "sets lr twice"),
        ("epochs = = 3\n", "not a readable TOML file"),
    ],
)
def test_a_bad_recipe_is_one_line_and_exit_code_2(tmp_path, capsys, text, expected):
    path = write(tmp_path / "bad.toml", text)
    out = tmp_path / "out"
    argv = ["train", "--recipe", str(path), "--model", TINY, "--data", str(tmp_path), "--out", str(out)]
    assert cli.main(argv) == 2
    assert expected in one_line_error(capsys)
    assert not out.exists()


def test_a_missing_recipe_is_one_line_and_exit_code_2(tmp_path, capsys):
    assert cli.main(["run", "--recipe", str(tmp_path / "gone.toml")]) == 2
    error = one_line_error(capsys)
    assert "gone.toml" in error and "does not exist" in error


def test_a_recipe_for_the_other_command_is_refused(tmp_path, capsys):
    teacher = next(path for path in SHIPPED if _command_of(read_recipe(path)) == "train")
    assert cli.main(["run", "--recipe", str(teacher)]) == 2
    error = one_line_error(capsys)
    assert "model" in error and "`python -m training run` does not take" in error


def test_commands_without_recipes_do_not_take_the_flag(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["export", "--checkpoint", "x.pt", "--out", "x.onnx", "--recipe", str(tmp_path / "r.toml")])
    assert stop.value.code == 2 and "--recipe" in capsys.readouterr().err


def test_the_recipe_reaches_the_stage_configuration(tree, tmp_path, monkeypatch):
    """Every recipe setting lands where `train` hands it to the training loop (no training here)."""
    seen = {}

    def fake_stage(config, data, world, meta):
        seen.update(config=config, meta=meta)
        return SimpleNamespace(best_acc=0.5, best_epoch=1, best_path=tmp_path / "b.pt", last_path=tmp_path / "l.pt")

    monkeypatch.setattr(commands, "train_stage", fake_stage)
    recipe = write(
        tmp_path / "stage.toml",
        f"model = '{TINY}'\ndata = '{tree}'\nout = '{tmp_path / 'out'}'\n"
        f"cache_dir = '{tree.parent / 'cache'}'\nimage_size = 32\n\n"
        "[schedule]\nepochs = 10\nbatch_size = 4\nearly_fraction = 0.3\nearly_input_size = 16\n\n"
        "[network]\nstem_stride = 1\ndropout = 0.1\n\n[loss]\nlabel_smoothing = 0.05\n",
    )
    assert cli.main(["train", "--recipe", str(recipe), "--batch-size", "2"]) == 0
    config, meta = seen["config"], seen["meta"]
    assert (config.model, config.epochs, config.batch_size) == (TINY, 10, 2)
    assert (config.early_fraction, config.early_input_size) == (0.3, 16)
    assert config.model_options == {"stem_stride": 1, "dropout": 0.1}
    assert config.distill == "none" and config.distill_options == {"label_smoothing": 0.05}
    assert meta["recipe"] == {"file": "stage.toml", "settings": read_recipe(recipe)}
    assert meta["command"] == f"python -m training train --recipe {recipe} --batch-size 2"


def test_without_a_recipe_the_meta_says_none(tree, tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(commands, "train_stage", lambda config, data, world, meta: seen.update(meta=meta) or _result())
    argv = ["train", "--model", TINY, "--data", str(tree), "--image-size", "32", "--out", str(tmp_path / "out")]
    assert cli.main([*argv, "--cache-dir", str(tree.parent / "cache")]) == 0
    assert seen["meta"]["recipe"] is None


def _result() -> SimpleNamespace:
    return SimpleNamespace(best_acc=0.0, best_epoch=0, best_path=Path("b.pt"), last_path=Path("l.pt"))


def test_train_with_a_recipe_end_to_end_records_it_in_the_checkpoint_and_card(tree, tmp_path, monkeypatch, capsys):
    sizes = []
    real = train_module.training_input_size

    def spy(config, epoch, input_size):
        sizes.append(real(config, epoch, input_size))
        return sizes[-1]

    monkeypatch.setattr(train_module, "training_input_size", spy)
    out = tmp_path / "out"
    recipe = write(
        tmp_path / "tiny_g002.toml",
        "# a tiny G-Ghost 002 recipe\n"
        f"[data]\ndata = '{tree}'\ncache_dir = '{tree.parent / 'cache'}'\nimage_size = 32\nseed = 0\n\n"
        f'[model]\nmodel = "{TINY}"\nstem_stride = 1\n\n'
        '[schedule]\nepochs = 3\nbatch_size = 8\nlr = 0.01\nprecision = "fp32"\nbn_batches = 1\n'
        "early_fraction = 0.5\nearly_input_size = 16\n\n"
        f"[augmentation]\nlabel_smoothing = 0.1\n\n[output]\nout = '{out}'\n",
    )
    assert cli.main(["train", "--recipe", str(recipe), "--epochs", "2"]) == 0  # the flag wins: 2 epochs
    assert "best val top-1" in capsys.readouterr().out

    state = load_checkpoint(out / "last.pt")
    assert state["meta"]["recipe"] == {"file": "tiny_g002.toml", "settings": read_recipe(recipe)}
    assert state["meta"]["recipe"]["settings"]["epochs"] == 3  # the recipe as written
    assert "--recipe" in state["meta"]["command"]
    assert state["config"]["epochs"] == 2 and len(state["history"]) == 2
    assert state["architecture"] == TINY and state["model_options"] == {"stem_stride": 1}
    assert state["distill"] == {"method": "none", "label_smoothing": 0.1}
    assert (state["input_size"], sizes) == (32, [16, 32])  # epoch 1 at the early side, the last at full size
    assert load_checkpoint(out / "best.pt")["meta"]["recipe"]["file"] == "tiny_g002.toml"
    card = card_from_checkpoint(state, gsd_m=10.0)
    assert card.training["recipe"] == state["meta"]["recipe"]
    # The run's resolved settings beside its log, a recipe that trains the same stage again.
    _, again = resolved(["train", "--recipe", str(out / "config.toml"), "--data", str(tree)])
    assert {**asdict(again), "resume": False} == {**state["config"], "resume": False}


# ----------------------------------------------------------------------------- one table of defaults


def resolved(argv: list[str]):
    """What `train`/`run` would train for ``argv``: its parsed flags and its StageConfig."""
    args = cli.parse_arguments(argv)
    model = args.model if args.command == "train" else args.student
    stage = "teacher" if distill_method(args) == "none" else "student"
    return args, stage_config(args, model=model, out=Path(args.out), stage=stage, distill=distill_method(args))


@pytest.mark.parametrize("path", EVERY_RECIPE, ids=lambda path: path.relative_to(REPO / "recipes").as_posix())
def test_every_shipped_recipe_names_every_setting(path):
    """Nothing a shipped recipe trains comes from StageConfig's or losses.DEFAULTS' code defaults."""
    args, config = resolved([_command_of(read_recipe(path)), "--recipe", str(path)])
    assert unnamed_settings(args, config.distill) == []
    assert config.lr is not None or config.base_lr is not None


def test_a_setting_left_out_of_a_recipe_is_named(tmp_path):
    text = (REPO / "recipes/eurosat_g_ghost_002_adamw_dkd.toml").read_text()
    for line in ("bn_batches = 20\n", "base_lr = 3e-3\n", "warmup_epochs = 10.0\n", "no_augment = false\n"):
        assert line in text
        text = text.replace(line, "")
    args, config = resolved(["run", "--recipe", str(write(tmp_path / "r.toml", text))])
    assert unnamed_settings(args, "dkd") == ["bn_batches", "no_augment", "warmup_epochs", "lr or base_lr"]
    # ... and then comes from the one table: StageConfig and losses.DEFAULTS.
    assert (config.bn_batches, config.augment, config.distill_options["warmup_epochs"]) == (20, True, 20.0)
    assert config.base_lr == train_module.default_base_lr("g_ghost_regnetx_002", "adamw")


def test_a_stage_written_as_config_toml_reads_back_as_the_same_stage(tmp_path):
    argv = ["train", "--model", TINY, "--data", "d", "--out", str(tmp_path / "o"), "--soft-labels", "s.npz"]
    argv += ["--beta", "2", "--stem-stride", "1", "--dropout", "0.1", "--no-augment", "--early-fraction", "0.25"]
    argv += ["--early-input-size", "16", "--weak-patches", "w.npz", "--momentum", "0.8", "--lr", "0.05"]
    _, config = resolved(argv)
    write_stage_recipe(asdict(config), tmp_path / "config.toml")

    args, again = resolved(["train", "--recipe", str(tmp_path / "config.toml"), "--data", "d"])
    assert again == config
    assert unnamed_settings(args, "dkd") == []


ABLATION = sorted((REPO / "recipes/ablation").glob("*.toml"))


@pytest.mark.parametrize("path", ABLATION, ids=lambda path: path.name)
def test_the_ablation_rows_read_the_committed_teacher_logits(path):
    """A new machine runs every distilled row from the repository alone: the logits are committed,
    and they are the 8 views of every training image from the teacher recipe's network."""
    import json

    import numpy as np

    values = read_recipe(path)
    if values.get("distill", "none") == "none":
        assert "soft_labels" not in values
        return
    logits_file = REPO / values["soft_labels"]
    assert logits_file.is_file() and logits_file.is_relative_to(REPO / "results"), logits_file
    with np.load(logits_file, allow_pickle=False) as archive:
        meta = json.loads(str(archive["meta"]))
        shape = archive["logits"].shape
    assert meta["architecture"] == read_recipe(REPO / "recipes/eurosat_vgg16_bn_teacher.toml")["model"]
    assert shape == (18_900, 8, 10)  # EuroSAT's training split, 8 flips and turns, 10 classes
