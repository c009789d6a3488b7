"""The one rule for every file a command writes (a model, a map, a report, a card).

- An output that is, or resolves to, one of the command's inputs (the same file through a
  symbolic link, a hard link, a relative path or ``..``), or lies inside an input folder, is
  refused, whatever the overwrite setting: writing it would destroy or change what the command reads.
- An existing output is replaced only when the user said so (``--overwrite`` on the command
  line; Processing asks before it hands over a destination that exists).
- The file is written under a temporary name and moved into place when complete
  (``atomic.atomic_path``); a full disk or a folder that cannot be written is one line naming
  the output, and nothing is left behind.

Classify, classify-many and adapt (through ``sinks.check_output``), Processing's classify and
assess, and the training commands (export, quantize, l2a-fit) all check their outputs here.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from .atomic import atomic_path, nearest_folder, temporary_path
from .errors import OutputError
from .options import OptionText

Inputs = Mapping[str, "str | os.PathLike | None"]  # what the face calls an input -> its path (None: not given)


def check_output_file(path: str | os.PathLike, what: str, inputs: Inputs, overwrite: bool) -> Path:
    """OutputError unless ``path`` may be written: not a folder, not an input, not in the way without ``overwrite``.

    ``what`` and the keys of ``inputs`` name the output and the inputs as the face does, e.g.
    "the int8 model (--out)" and "the fp32 model (--model)"; they may hold option keys (``{model}``).
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(OptionText(f"{_first(what)} {{path}} is a folder; give a file name.", path=path))
    check_not_input(path, what, inputs)
    if os.path.lexists(path) and not overwrite:
        raise OutputError(
            OptionText(
                f"{_first(what)} {{path}} already exists; use {{overwrite}} to replace it, or choose another "
                "file name.",
                path=path,
            )
        )
    return path


def check_not_input(path: str | os.PathLike, what: str, inputs: Inputs) -> None:
    """OutputError when ``path`` is one of ``inputs``, through links and relative paths too (even with overwrite).

    An input that is a folder (training data) may not hold the output either: the file would
    join what the next run reads.
    """
    for name, source in inputs.items():
        if not source:
            continue
        if same_file(path, source):
            raise OutputError(
                OptionText(
                    f"{_first(what)} {{path}} is the same file as {name} {{source}}; an output never replaces an "
                    f"input, not even {{even_overwrite}}. Choose another file name for {what}.",
                    path=Path(path),
                    source=Path(source_path(source)),
                )
            )
        if inside_folder(path, source):
            raise OutputError(
                OptionText(
                    f"{_first(what)} {{path}} lies inside {name} {{source}}, a folder the command reads; writing "
                    f"there would add to that input. Choose a file name outside it for {what}.",
                    path=Path(path),
                    source=Path(source_path(source)),
                )
            )


def inside_folder(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """Whether ``path`` (existing or not) lies in the existing folder ``folder``, through links too."""
    folder = source_path(folder)
    if not os.path.isdir(folder):
        return False
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(folder))


def same_file(path: str | os.PathLike, other: str | os.PathLike) -> bool:
    """Whether ``path`` and ``other`` (a file or a QGIS source 'file|layername=...') are one existing file."""
    try:
        return os.path.samefile(path, source_path(other))
    except (OSError, ValueError):  # either does not exist (an output not yet written is no input)
        return False


def source_path(source: str | os.PathLike) -> str:
    """The file of a data source: a path, or a QGIS/OGR source with options after '|'."""
    return os.fspath(source).split("|")[0]


def check_folder(path: str | os.PathLike, what: str) -> None:
    """OutputError unless a file can be made where ``path`` goes, probed without making any folder (a run makes them).

    Read-only or full file systems and folders without write permission are found here, before
    the work, with the system's reason.
    """
    path = Path(path)
    folder = nearest_folder(path)
    if not folder.is_dir():
        raise OutputError(
            f"Cannot write {what} {path}: {folder} is a file, not a folder. Choose a folder for the output."
        )
    probe = temporary_path(folder / path.name)
    try:
        probe.touch()
        probe.unlink()
    except OSError as error:
        raise OutputError(f"Cannot write {what} into {folder}: {error.strerror or error}.") from None


@contextlib.contextmanager
def written(path: str | os.PathLike, what: str) -> Iterator[Path]:
    """``atomic.atomic_path`` for the output ``what``: an OSError while writing becomes one OutputError line.

    Nothing is published and no temporary file is left when the block fails; an existing file
    at ``path`` stays as it was.
    """
    try:
        with atomic_path(path) as tmp:
            yield tmp
    except OSError as error:
        raise cannot_write(path, what, error) from None


def cannot_write(path: str | os.PathLike, what: str, error: OSError) -> OutputError:
    """The one message for an output that could not be written: a full disk said so, else the system's reason."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        reason = "the disk is full" if error.errno == errno.ENOSPC else "the disk quota is used up"
        advice = "free some space there, or choose another folder"
    else:
        reason = (error.strerror or str(error)).rstrip(".")
        advice = "choose a folder you can write to"
    return OutputError(
        OptionText(
            f"Cannot write {what} {{path}}: {{reason}}. Nothing was written (an existing file is left as it "
            f"was); {advice}.",
            path=Path(path),
            reason=reason,
        )
    )


def _first(what: str) -> str:
    """``what`` opening a sentence."""
    return what[:1].upper() + what[1:]
