"""A data folder as a few compact arrays, to carry it where only a limited payload travels.

A lent GPU machine receives the working tree plus at most 64 MiB per call, and EuroSAT's JPEGs
alone are 79 MiB: the folder goes in parts, one per call, and is unpacked when all are there.
Each part is an ``.npz`` of plain arrays (read without pickle): every file's bytes, unchanged,
end to end in one uint8 array, with their offsets; their relative paths are in its JSON header. Files are never split,
so a part holds whole files in sorted order. Unpacking checks a sha256 of the whole folder
(paths and bytes), so what trains there is byte for byte the folder that was packed here.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rs_ghost_qgis.core.atomic import atomic_path, write_text
from training.errors import DataError

FORMAT = 1
MIB = 1 << 20


@dataclass(frozen=True)
class PackPart:
    """One part file of a pack and what it says about the whole."""

    path: Path
    name: str  # the packed folder's name
    part: int  # 1-based
    parts: int
    sha256: str  # of the whole folder's paths and bytes


def part_file_name(name: str, part: int, parts: int) -> str:
    """``eurosat_rgb.part2-of-3.npz``: what a part is called, here and there."""
    return f"{name}.part{part}-of-{parts}.npz"


def pack_folder(root: str | Path, out: str | Path, part_mib: float) -> list[Path]:
    """Write every file under ``root`` into parts of at most ``part_mib`` MiB in ``out``.

    A single file larger than a part gets a part of its own. Returns the part files in order.
    """
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; give --data the data folder to pack.")
    if part_mib <= 0:
        raise DataError(f"--part-mib must be positive (got {part_mib:g}); 30 leaves room for the working tree.")
    names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    if not names:
        raise DataError(f"{root} holds no files to pack; give --data the data folder.")
    groups = _group_by_size(root, names, int(part_mib * MIB))
    digest = folder_sha256(root, names)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(f"{root.name}.part*-of-*.npz"):
        stale.unlink()  # parts of an earlier pack of this folder would mix with the new ones
    paths = []
    for part, group in enumerate(groups, start=1):
        meta = {"format": FORMAT, "name": root.name, "part": part, "parts": len(groups), "sha256": digest}
        paths.append(_write_part(out / part_file_name(root.name, part, len(groups)), root, group, meta))
    return paths


def folder_sha256(root: Path, names: list[str]) -> str:
    """sha256 over each file's relative path, size and bytes, in the order given."""
    digest = hashlib.sha256()
    for name in names:
        content = (root / name).read_bytes()
        digest.update(f"{name}\n{len(content)}\n".encode())
        digest.update(content)
    return digest.hexdigest()


def read_parts(folder: str | Path) -> list[PackPart]:
    """The parts in ``folder``, checked to form one complete pack; raises DataError naming what is missing."""
    folder = Path(folder)
    parts = [_read_meta(path) for path in sorted(folder.glob("*.part*-of-*.npz"))]
    if not parts:
        raise DataError(f"{folder} holds no pack parts (*.partK-of-N.npz); make them with `python -m training pack`.")
    packs = {(p.name, p.sha256, p.parts) for p in parts}
    if len(packs) > 1:
        listed = ", ".join(sorted(p.path.name for p in parts))
        raise DataError(f"{folder} mixes parts of different packs ({listed}); keep the parts of one pack only.")
    name, _, count = packs.pop()
    present = {p.part for p in parts}
    missing = [k for k in range(1, count + 1) if k not in present]
    if missing:
        files = ", ".join(part_file_name(name, k, count) for k in missing)
        raise DataError(f"the pack of {name} in {folder} lacks {len(missing)} of {count} parts: bring {files}.")
    return sorted(parts, key=lambda p: p.part)


def unpack(folder: str | Path, out: str | Path) -> Path:
    """Unpack the complete pack in ``folder`` to ``out/<name>`` and return that folder.

    The files are written to a sibling folder first and moved into place only once their sha256
    matches the pack's, so ``out/<name>`` is either the packed folder or absent. A folder
    unpacked before from the same pack is reused.
    """
    parts = read_parts(folder)
    first = parts[0]
    target = Path(out) / first.name
    stamp = target.with_name(first.name + ".sha256")
    if target.is_dir() and stamp.is_file() and stamp.read_text().strip() == first.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # A unique hidden sibling per writer: two unpacks never write into one folder.
    partial = Path(tempfile.mkdtemp(prefix=f".{first.name}.", suffix=".partial", dir=target.parent))
    try:
        names = []
        for part in parts:
            names += _extract(part.path, partial)
        if folder_sha256(partial, names) != first.sha256:
            raise DataError(f"the pack in {folder} does not reproduce the folder it was made from; pack it again.")
        stamp.unlink(missing_ok=True)  # the stamp vouches for the new folder only once it is in place
        _swap_in(partial, target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    write_text(stamp, first.sha256 + "\n")
    return target


def _swap_in(folder: Path, target: Path) -> None:
    """Move ``folder`` to ``target``: an earlier ``target`` is renamed aside first and removed last,
    so at every moment ``target`` is either the old folder or the new one, never a half-deleted one."""
    old = target.with_name(f".{target.name}.{os.getpid()}.old")
    shutil.rmtree(old, ignore_errors=True)  # left by a run of a process with this id that died
    if target.exists():
        os.replace(target, old)
    try:
        os.replace(folder, target)
    except OSError:
        if old.exists() and not target.exists():
            os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _group_by_size(root: Path, names: list[str], budget: int) -> list[list[str]]:
    groups: list[list[str]] = [[]]
    used = 0
    for name in names:
        # Its path (JSON, quoted, comma) and offset (8 bytes) count too.
        size = (root / name).stat().st_size + len(name.encode()) + 12
        if groups[-1] and used + size > budget:
            groups.append([])
            used = 0
        groups[-1].append(name)
        used += size
    return groups


def _write_part(path: Path, root: Path, names: list[str], meta: dict) -> Path:
    contents = [(root / name).read_bytes() for name in names]
    offsets = np.cumsum([0] + [len(c) for c in contents], dtype=np.int64)
    data = np.frombuffer(b"".join(contents), dtype=np.uint8)
    # Stored, not compressed: JPEG and PNG bytes do not shrink, and unpacking stays a copy.
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, offsets=offsets, data=data, meta=_json_bytes({**meta, "names": names}))
    return path


def _json_bytes(value: dict) -> np.ndarray:
    # UTF-8 bytes: numpy's string arrays cost 4 bytes per character, 1.3 MiB for EuroSAT's paths.
    return np.frombuffer(json.dumps(value).encode(), dtype=np.uint8)


def _read_meta(path: Path) -> PackPart:
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(archive["meta"].tobytes())
        return PackPart(path, meta["name"], int(meta["part"]), int(meta["parts"]), meta["sha256"])
    except (OSError, ValueError, KeyError) as error:
        raise DataError(f"{path} is not a pack part of this project ({type(error).__name__}); pack again.") from None


def _extract(path: Path, out: Path) -> list[str]:
    with np.load(path, allow_pickle=False) as archive:
        names, offsets, data = json.loads(archive["meta"].tobytes())["names"], archive["offsets"], archive["data"]
    for index, name in enumerate(names):
        target = (out / name).resolve()
        if not target.is_relative_to(out.resolve()):
            raise DataError(f"{path} names a file outside the folder ({name}); it was not made by `pack`.")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data[offsets[index] : offsets[index + 1]].tobytes())
    return names
