"""Atomic files: written under a temporary name beside the target, moved into place when complete.

A crash, Ctrl-C or a full disk then never leaves a half-written file at the final path. The
temporary name is hidden, carries the writer's process id (``.name.<pid>.<random>.part.ext``),
so a later run can recognise and remove the leftovers of a process that is gone.

The one home of this rule for the plugin, the command line and training (checkpoints, the ONNX
export, the int8 copy, the dataset cache, downloads). It imports the standard library only.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

_PART = re.compile(r"^\.(?P<stem>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.part(?P<suffix>\.[^.]*)?$")


def temporary_path(path: Path) -> Path:
    """A hidden, unique name next to ``path`` with the same suffix, tagged with this process id."""
    return path.with_name(f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part{path.suffix}")


def usual_mode() -> int:
    """The rights a plain ``open(path, 'w')`` would give: 0o666 less the umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write ``path`` through; publish it only when the block succeeds.

    On any exception the temporary file is removed and ``path`` is left as it was. The folder is
    created if needed and cleared of the temporaries of writers that died first. The published
    file gets the rights a plain ``open`` would give, whatever made it (``mkstemp`` makes 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(path.parent)
    tmp = temporary_path(path)
    try:
        yield tmp
        os.chmod(tmp, usual_mode())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def remove_stale_parts(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files in ``folder`` whose writing process no longer runs; return them."""
    removed = []
    for candidate in Path(folder).glob(".*.part*"):
        match = _PART.match(candidate.name)
        if match and not _running(int(match["pid"])):
            with contextlib.suppress(OSError):
                candidate.unlink()
                removed.append(candidate)
    return removed


def _running(pid: int) -> bool:
    # On Windows os.kill would terminate the process: never guess there, keep the file.
    if pid == os.getpid() or os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
