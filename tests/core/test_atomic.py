"""One atomic-write helper (core/atomic.py) for every file written: whole files or the earlier one, no parts left."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys

import pytest

from rs_ghost_qgis.core import atomic


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _dead_pid() -> int:
    """The id of a process that has ended (a writer killed before its cleanup)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_atomic_path_gives_the_usual_rights_whatever_made_the_file(tmp_path):
    path = tmp_path / "model.onnx"
    with atomic.atomic_path(path) as tmp:
        os.close(os.open(tmp, os.O_CREAT | os.O_WRONLY, 0o600))  # as mkstemp makes it
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~_umask()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_atomic_path_keeps_the_earlier_file_on_failure_and_leaves_no_part(tmp_path):
    path = atomic.write_text(tmp_path / "card.md", "earlier")
    with pytest.raises(OSError), atomic.atomic_path(path) as tmp:
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert path.read_text() == "earlier" and sorted(p.name for p in tmp_path.iterdir()) == ["card.md"]


def test_atomic_path_removes_the_parts_of_dead_writers_only(tmp_path):
    dead = tmp_path / f".best.{_dead_pid()}.0123abcd.part.pt"
    alive = tmp_path / f".best.{os.getpid()}.0123abcd.part.pt"
    for leftover in (dead, alive):
        leftover.write_bytes(b"half")
    with atomic.atomic_path(tmp_path / "last.pt") as tmp:
        tmp.write_bytes(b"whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, "last.pt"])
