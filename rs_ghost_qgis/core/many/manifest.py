"""DIR, a classify-many job's folder: made and checked, its manifest, its folder of block files.

``DIR/manifest.jsonl`` holds one line per finished block or merged raster, on disk before it
counts as done; a rerun with the same inputs and options skips what it holds. A torn last line
(a crash, a full disk) is ignored. Block files live in ``DIR/.blocks/<key>/`` until their
raster is merged.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from ..atomic import nearest_folder, remove_stale_parts
from ..errors import OutputError
from ..options import OptionText

MANIFEST = "manifest.jsonl"
MANIFEST_FORMAT = 2  # part of every raster's key: blocks recorded by an older format are run again
WORK = ".blocks"


def published_outputs(manifest: dict, out: Path) -> list[Path]:
    """The class maps earlier runs published in DIR, by the manifest."""
    merged = [record["merged"] for record in manifest.values() if record.get("merged")]
    return [out / Path(summary["raster"]).name for summary in merged if summary.get("raster")]


def make_dir(out: Path) -> Path | None:
    """Create DIR (and its parents); return the topmost folder this made, None when DIR existed."""
    _check_not_a_file(out)
    missing = next((folder for folder in reversed([out, *out.parents]) if not folder.exists()), None)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _cannot_write(out, error) from None
    return missing


def _check_not_a_file(out: Path) -> None:
    """Refuse a DIR that is, or lies under, a regular file (mkdir says only 'File exists' or 'Not a directory')."""
    blocking = out if out.exists() else nearest_folder(out)
    if blocking.exists() and not blocking.is_dir():
        raise OutputError(
            OptionText(
                "Cannot write into {out_dir} {folder}: {file} is a file, not a folder; choose a folder.",
                folder=out,
                file=blocking,
            )
        )


def prepare_dir(out: Path) -> None:
    """Create DIR/.blocks and check DIR can be written (before any work)."""
    try:
        (out / WORK).mkdir(parents=True, exist_ok=True)
        probe = out / f".probe.{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as error:
        raise _cannot_write(out, error) from None
    remove_stale_parts(out)


def _cannot_write(out: Path, error: OSError) -> OutputError:
    """The job's one error for a DIR it cannot write into."""
    return OutputError(
        OptionText(
            "Cannot write into {out_dir} {folder}: {reason}; choose another folder.",
            folder=out,
            reason=error.strerror or error,
        )
    )


def tidy_work(work: Path) -> None:
    """Remove the empty raster folders of DIR/.blocks, then .blocks itself when empty."""
    with contextlib.suppress(OSError):
        for folder in work.iterdir():
            remove_empty(folder, folder)
    remove_empty(work, work)


def remove_empty(folder: Path, top: Path) -> None:
    """Remove ``folder`` and its parents up to ``top`` while they are empty folders."""
    folder, top = folder.absolute(), top.absolute()
    while True:
        try:
            folder.rmdir()  # only ever an empty folder
        except OSError:
            return
        if folder == top or top not in folder.parents:
            return
        folder = folder.parent


def read_manifest(path: Path) -> dict:
    """key -> {"blocks": {index: record}, "merged": summary}; a torn last line (a crash) is ignored."""
    manifest: dict = {}
    if not path.exists():
        return manifest
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        record = manifest.setdefault(entry["key"], {"blocks": {}})
        if "merged" in entry:
            record["merged"] = entry["merged"]
        elif "publishing" in entry:
            record["publishing"] = entry["publishing"]  # the name published (True: before names were kept)
        else:
            record["blocks"][str(entry["block"])] = entry
    return manifest


def append_manifest(out: Path, entry: dict) -> None:
    """One line per finished block or raster, on disk before the next block counts as done."""
    with open(out / MANIFEST, "ab+") as stream:
        line = (json.dumps(entry) + "\n").encode("utf-8")
        if stream.seek(0, os.SEEK_END) > 0:
            stream.seek(-1, os.SEEK_END)
            if stream.read(1) != b"\n":
                line = b"\n" + line  # after a torn line (a full disk, a crash): a line of its own
        stream.write(line)
        stream.flush()
        os.fsync(stream.fileno())
