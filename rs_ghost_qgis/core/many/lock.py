"""A folder lock: one run at a time writes into a folder (classify-many's --out-dir).

The lock is a file created atomically (``O_CREAT | O_EXCL``) that names its holder: pid, the
process's start time (``atomic.process_token``) and host. A lock whose holder is gone (no such
process on this host, or the pid now belongs to a process started later, as in a restarted
container) is stale and taken over. A lock held on another host cannot be checked from here:
the message says how to remove it by hand. Messages name the folder's option as each face
spells it (``options.OptionText``). Standard library only.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from ..atomic import process_token, token_alive
from ..errors import OutputError
from ..options import OptionText

LOCK_NAME = ".rs_ghost.lock"
_FRESH_S = 30.0  # a lock file still being written (empty or torn) counts as held for this long
_ATTEMPTS = 5


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, option: str = "out_dir") -> Iterator[Path]:
    """Hold the lock of ``folder`` (which must exist) while the block runs; refuse if another run holds it.

    ``option`` is the options.NAMES key of the option that chose the folder, named in the refusal.
    """
    path = Path(folder) / LOCK_NAME
    mine = _acquire(path, option)
    try:
        yield path
    finally:
        if _holder(path) == mine:  # never remove a lock that another run took over meanwhile
            with contextlib.suppress(OSError):
                path.unlink()


def _acquire(path: Path, option: str) -> dict:
    """Create the lock file, taking over a stale one; return what it holds."""
    mine = {"pid": os.getpid(), "token": process_token(), "host": socket.gethostname(), "since": time.time()}
    for _ in range(_ATTEMPTS):
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(path)
            if _held(path, holder):
                raise OutputError(_in_use(path, holder, option)) from None
            _take_over(path, holder)
            continue
        except OSError as error:
            raise _cannot_create(path, error, option) from None
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
                json.dump(mine, stream)
                stream.flush()
                os.fsync(stream.fileno())
        except OSError as error:  # a full disk: no empty lock is left to refuse the next run
            with contextlib.suppress(OSError):
                path.unlink()
            raise _cannot_create(path, error, option) from None
        return mine
    raise OutputError(_in_use(path, _holder(path), option))


def _cannot_create(path: Path, error: OSError, option: str) -> OutputError:
    """The one message for a lock file that could not be made or written."""
    reason = "the disk is full" if error.errno == errno.ENOSPC else error.strerror or error
    return OutputError(
        OptionText(
            "Cannot create the lock file {path}: {reason}; choose another " + _slot(option) + ".",
            path=path,
            reason=reason,
        )
    )


def _holder(path: Path) -> dict | None:
    """What the lock file says, or None (gone, unreadable, or still being written)."""
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _held(path: Path, holder: dict | None) -> bool:
    """Whether the lock's holder may still run."""
    if holder is None:
        # Empty or torn: its writer is between open and write, or died there. Age tells which.
        try:
            return time.time() - path.stat().st_mtime < _FRESH_S
        except OSError:
            return False  # removed meanwhile: try again
    if holder.get("host") != socket.gethostname():
        return True  # another machine's process: it cannot be checked from here
    return token_alive(str(holder.get("token", "")))


def _take_over(path: Path, stale: dict | None) -> None:
    """Remove a stale lock, unless another run replaced it meanwhile (then put that one back)."""
    aside = path.with_name(f"{path.name}.{process_token()}.stale")
    try:
        os.rename(path, aside)  # atomic: of two runs taking over, one moves the file
    except OSError:
        return  # someone else moved it: look again
    if _holder(aside) != stale:
        with contextlib.suppress(OSError):
            os.link(aside, path)  # a live lock moved by mistake goes back (unless a third run holds it now)
    with contextlib.suppress(OSError):
        aside.unlink()


def _in_use(path: Path, holder: dict | None, option: str) -> OptionText:
    """The refusal: who holds the folder, and what to do."""
    if holder is None:
        who = "another run"
    else:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(holder.get("since", 0))))
        who = f"another run (pid {holder.get('pid')} on {holder.get('host')}, since {since})"
    flag = _slot(option)
    return OptionText(
        f"{flag} {{folder}} is in use by {{who}}; wait for it to finish or choose another {flag}. If no such run "
        "is going on, delete {path}.",
        folder=path.parent,
        who=who,
        path=path,
    )


def _slot(option: str) -> str:
    """Where an OptionText puts the face's name of ``option`` (a key of options.NAMES)."""
    return "{" + option + "}"
