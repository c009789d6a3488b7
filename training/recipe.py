"""Recipe files: every hyper-parameter of one training stage in one TOML file.

A recipe is the single home of a shipped model's training settings (``recipes/*.toml``). Its
keys are the long flags of the command that reads it, spelled with underscores
(``label_smoothing = 0.1`` is ``--label-smoothing 0.1``); tables only group keys for people
and are flattened. Flags given on the command line win over the recipe, so one run can vary
one setting (``--seed 1``) and still say which recipe it started from.
"""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from rs_ghost_qgis.core import atomic
from training.errors import TrainingError

# StageConfig fields that are no flag of `train`: a label for logs and a control, not settings.
NOT_SETTINGS = ("stage", "resume")


def read_recipe(path: str | Path) -> dict[str, Any]:
    """The recipe at ``path`` as one flat {flag name: value} mapping, in file order."""
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TrainingError(f"--recipe {path} does not exist; give one of the files in recipes/.") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise TrainingError(f"--recipe {path} is not a readable TOML file ({error}); fix the file.") from None
    flat: dict[str, Any] = {}
    for key, value in document.items():
        for name, item in value.items() if isinstance(value, dict) else [(key, value)]:
            if name in flat:
                raise TrainingError(f"--recipe {path} sets {name} twice; keep one.")
            flat[name] = item
    return flat


def recipe_path(argv: list[str]) -> str | None:
    """The ``--recipe FILE`` given after the command in ``argv``, if any."""
    finder = argparse.ArgumentParser(add_help=False)
    finder.add_argument("--recipe")
    return finder.parse_known_args(argv[1:])[0].recipe


def apply_recipe(parser: argparse.ArgumentParser, recipe: dict[str, Any]) -> None:
    """Make ``recipe`` the defaults of ``parser``'s flags: a flag the recipe sets is no longer required.

    Unknown keys and values of the wrong type are TrainingErrors naming the key.
    """
    # argparse offers no public list of a parser's arguments; _actions has been it since 2.7.
    actions = {action.dest: action for action in parser._actions if action.dest not in ("help", "recipe")}
    unknown = sorted(set(recipe) - set(actions))
    if unknown:
        raise TrainingError(
            f"the recipe sets {', '.join(unknown)}, which `{parser.prog}` does not take; remove or rename them "
            "(keys are the command's flags with underscores)."
        )
    for name, value in recipe.items():
        action = actions[name]
        _check_type(name, value, action)
        action.required = False
    parser.set_defaults(**recipe)


def _check_type(name: str, value: Any, action: argparse.Action) -> None:
    """The value must be what the flag would have parsed to: its type, one of its choices."""
    if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
        expected: type = bool
    elif action.nargs not in (None, "?"):
        expected = list
    else:
        expected = action.type if isinstance(action.type, type) else str
    fits = isinstance(value, expected) and not (expected is not bool and isinstance(value, bool))
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        fits = True
    if not fits:
        raise TrainingError(f"the recipe's {name} = {value!r} should be a {expected.__name__}; fix the recipe.")
    if expected is list:
        _check_items(name, value, action)
    elif action.choices is not None and value not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise TrainingError(f"the recipe's {name} = {value!r} is not one of {choices}; fix the recipe.")


def _check_items(name: str, value: list, action: argparse.Action) -> None:
    """A list for a flag of several values: as many as the flag takes, each of its type."""
    if isinstance(action.nargs, int) and len(value) != action.nargs:
        raise TrainingError(f"the recipe's {name} should hold {action.nargs} values, not {len(value)}; fix the recipe.")
    kind = action.type if isinstance(action.type, type) else str
    for item in value:
        fits = isinstance(item, kind) or (kind is float and isinstance(item, int))
        if not fits or isinstance(item, bool):
            raise TrainingError(f"the recipe's {name} holds {item!r}, not a {kind.__name__}; fix the recipe.")


def recipe_text(path: str | Path | None) -> str | None:
    """The recipe file's text, to be embedded in checkpoints and model cards (None without one)."""
    return Path(path).read_text(encoding="utf-8") if path else None


def stage_recipe(settings: dict[str, Any]) -> dict[str, Any]:
    """A stage's resolved settings (``asdict(StageConfig)``) as a recipe of ``python -m training train``.

    Nested options become their flags (``beta``, ``stem_stride``), ``augment`` becomes ``no_augment``;
    unset switches (None) are left out, as a recipe leaves them out.
    """
    recipe: dict[str, Any] = {}
    for name, value in settings.items():
        if name in NOT_SETTINGS or value is None:
            continue
        if name in ("distill_options", "model_options"):
            recipe.update(value)
        elif name == "augment":
            recipe["no_augment"] = not value
        else:
            recipe[name] = value
    return recipe


def write_stage_recipe(settings: dict[str, Any], path: str | Path) -> Path:
    """Write ``stage_recipe(settings)`` as TOML at ``path`` (atomically): ``train --recipe`` reads it back."""
    header = (
        "# The resolved settings of this stage, every one named: python -m training train --recipe <this file>\n"
        "# --data ... trains it again (data flags are not stored here; give them on the command line).\n"
    )
    return atomic.write_text(path, header + tomli_w.dumps(stage_recipe(settings)))
