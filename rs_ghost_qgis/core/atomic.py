"""Atomic files: written under a temporary name beside the target, moved into place when complete.

A crash, Ctrl-C or a full disk then never leaves a half-written file at the final path. The
temporary name is hidden, carries the writer's process id (``.name.<pid>.<random>.part.ext``),
so a later run can recognise and remove the leftovers of a process that is gone. A pid alone
is not enough: containers restart with the same pids, so a leftover whose pid runs again is
stale too when that process started after the file was last written (``process_started``).

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


# SQLite (a GeoPackage) writes '<file>-journal' beside the file: a temporary name leaves room for it.
_SIDECAR = len("-journal")


def temporary_path(path: Path) -> Path:
    """A hidden, unique name next to ``path`` with the same suffix, tagged with this process id.

    The name's own stem is cut where needed so that the temporary name (and a GeoPackage's
    journal beside it) fits the file system's limit on a name whenever ``path``'s name does.
    """
    tail = f".{os.getpid()}.{uuid.uuid4().hex[:8]}.part{path.suffix}"
    room = name_max(path.parent) - _SIDECAR - len(tail.encode()) - 1
    stem = path.stem.encode()[: max(1, room)].decode(errors="ignore") or "x"
    return path.with_name(f".{stem}{tail}")


def name_max(folder: str | os.PathLike) -> int:
    """The longest file name, in bytes, that the file system of ``folder`` (or its nearest existing parent) allows."""
    folder = Path(os.path.abspath(folder))
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows) or no answer: the usual limit
        return 255


def name_too_long(path: str | os.PathLike) -> int | None:
    """The file system's limit on a name, when ``path``'s name (in bytes) is longer than it; else None."""
    path = Path(path)
    limit = name_max(path.parent)
    return limit if len(path.name.encode()) > limit else None


def make_folders(folder: str | os.PathLike) -> list[Path]:
    """Create ``folder`` and its missing parents; return the folders this made, outermost first.

    A run that fails hands them to ``remove_folders``: it leaves no empty folder it made.
    """
    missing: list[Path] = []
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for made in reversed(missing):
        made.mkdir(exist_ok=True)
    return list(reversed(missing))


def remove_folders(folders: list[Path]) -> None:
    """Remove the folders ``make_folders`` made, innermost first, where they are still empty."""
    for folder in reversed(folders):
        with contextlib.suppress(OSError):
            folder.rmdir()


def nearest_folder(path: str | os.PathLike) -> Path:
    """The nearest existing ancestor of ``path`` (the folder a new file or folder would go into)."""
    folder = Path(os.path.abspath(path)).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


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
        # Only a temporary that exists is removed: on a read-only file system even the unlink
        # of a missing file fails (EROFS), and must not hide why the write failed.
        if os.path.lexists(tmp):
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
        if match is None:
            continue
        try:
            written = candidate.stat().st_mtime
        except OSError:
            continue  # gone already
        if not writer_alive(int(match["pid"]), written):
            with contextlib.suppress(OSError):
                candidate.unlink()
                removed.append(candidate)
    return removed


def writer_alive(pid: int, written: float) -> bool:
    """Whether the process ``pid`` that last wrote something at ``written`` (epoch seconds) may still run.

    A process that started after the write is another one that got the same pid (a restarted
    container counts its pids from 1 again). Where the start time cannot be read, the pid decides.
    """
    if not _running(pid):
        return False
    started = process_started(pid)
    # Start times are read in whole clock ticks and the boot time in whole seconds: allow 2 s.
    return started is None or pid == os.getpid() or started <= written + 2.0


def process_token(pid: int | None = None) -> str:
    """``<pid>-<start ticks>``: names one process for good, where a pid alone may be reused (``-0``: unknown)."""
    pid = os.getpid() if pid is None else pid
    return f"{pid}-{_start_ticks(pid) or 0}"


def token_alive(token: str) -> bool:
    """Whether the process named by ``process_token`` still runs (a malformed token: assume it does)."""
    pid, _, ticks = token.partition("-")
    if not (pid.isdigit() and ticks.isdigit()):
        return True
    if not _running(int(pid)):
        return False
    now = _start_ticks(int(pid))
    return int(ticks) == 0 or now is None or now == int(ticks)


def process_started(pid: int) -> float | None:
    """When process ``pid`` started, in epoch seconds; None where unknown (no /proc, no such process)."""
    ticks, boot = _start_ticks(pid), _boot_time()
    if ticks is None or boot is None:
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def _start_ticks(pid: int) -> int | None:
    """The process's start in clock ticks after boot (Linux /proc/<pid>/stat, field 22), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        # The command name (field 2) may hold spaces and parentheses: count from its closing one.
        return int(stat[stat.rindex(")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _boot_time() -> float | None:
    """When the system booted, in epoch seconds (Linux /proc/stat), or None."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/stat").read_text(encoding="ascii").splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    return None


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
