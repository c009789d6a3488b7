"""``python -m rs_ghost_qgis classify-many INPUT... --out-dir DIR``: many rasters on a Dask cluster.

Each raster's tile grid is cut into blocks (``core.blocks``); each block is one Dask task
that runs the ordinary engine (``core.pipeline.classify``) on its area and sends back its
GeoPackage and class GeoTIFF as bytes, so workers need no shared folder. This process
writes every block into ``DIR/.blocks/<key>/`` atomically, then records it in
``DIR/manifest.jsonl``; a rerun with the same inputs and options skips what the manifest
holds. When a raster's last block is in, its blocks are merged into ``DIR/<name>.gpkg`` and
``DIR/<name>.tif`` (halo tiles kept once), published together under temporary names.

A worker that dies mid-task is Dask's business: the scheduler runs the task again on another
worker (``distributed.scheduler.allowed-failures`` times, 3 by default). A raster that cannot
be read fails alone: one ``failed:`` line, the others finish, and the exit code is
EXIT_SOME_FAILED. Dask is imported only here, and only when the command runs.

One run at a time writes into DIR (``core.folderlock``). An input given twice (two spellings,
a symlink) is classified once and reported as ``skipped:``; inputs of the same file name from
different folders get outputs named after their path (``<name>_<8 hex digits>``), whatever
their order. A worker's scratch folder in the temp dir is named after its process (pid and
start time), so the leftovers of a killed worker are recognised and removed later.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import dataclasses
import errno
import glob
import hashlib
import importlib.util
import io
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import InputError, OutputError, RsGhostError
from ..core.options import face_message

EXIT_SOME_FAILED = 3  # some inputs failed, the others are done (2 stays "nothing was done: fix the command")
RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt", ".img")  # what a folder given as INPUT contributes
LIST_SUFFIXES = (".txt", ".lst")  # an INPUT with these names lists one path per line
MANIFEST = "manifest.jsonl"
MANIFEST_FORMAT = 2  # part of every raster's key: blocks recorded by an older format are run again
WORK = ".blocks"
SUMMARY = "summary.csv"
SCRATCH = "rs_ghost_block_"  # a worker's folder per block in the temp dir: rs_ghost_block_<pid>-<start>_<random>
_SCRATCH_OWNER = re.compile(rf"^{SCRATCH}(?P<token>\d+-\d+)_")
_SCRATCH_OLD_S = 86_400.0  # a scratch folder of the older, unnamed kind: stale when untouched this long
MERGE_BATCH = 2000  # features per add() while merging
# classify's options that classify-many replaces (its outputs are DIR) or must not copy.
_NOT_COPIED = {"help", "input", "out_vector", "out_raster", "preview"}

Progress = Callable[[int, int, int, int], None]  # (blocks done, blocks, tiles done, tiles)


def add_parser(commands, classify: argparse.ArgumentParser) -> None:
    """Register ``classify-many``; it takes the same model and options as ``classify`` (copied from it)."""
    many = commands.add_parser(
        "classify-many",
        help="classify many rasters (or huge ones) in blocks on a Dask cluster",
        description="Classify every INPUT (raster files, folders, globs, or .txt files listing paths; GDAL "
        "paths such as /vsicurl/ included) with the options of `classify`, in blocks on a Dask cluster; write "
        "DIR/<raster>.gpkg and DIR/<raster>.tif per raster and DIR/summary.csv. A rerun resumes.",
    )
    many.add_argument("inputs", nargs="+", metavar="INPUT", help="rasters, folders, globs or lists of paths")
    many.add_argument("--out-dir", required=True, metavar="DIR", help="where the outputs and the manifest go")
    for action in classify._actions:
        if action.dest in _NOT_COPIED:
            continue
        if action.dest == "threads":
            action = copy.copy(action)
            action.help = "onnxruntime threads per worker (default: 1, with one worker process per core)"
        many._add_action(action)  # the same option objects: any option classify gains, this command has
    many.add_argument(
        "--workers", type=int, metavar="N", help="start a local cluster of N processes (default: one per core)"
    )
    many.add_argument("--scheduler", metavar="ADDRESS", help="use a running Dask cluster, e.g. tcp://host:8786")
    many.add_argument(
        "--block-cells", type=int, metavar="B", help="block side in grid cells (default: see docs/ENGINE.md)"
    )
    many.set_defaults(func=command)


# ---------------------------------------------------------------------------------------------
# Inputs


def expand_inputs(items: list[str]) -> list[str]:
    """Files, folders (their rasters), globs and path lists -> raster paths, in order, each once.

    GDAL paths (/vsicurl/..., https://...) are kept as given. A name that is none of these is
    kept too: it fails later as that raster's own error, without stopping the others.
    """
    from ..core.rasterio_source import is_gdal_path

    found: list[str] = []
    for item in items:
        path = Path(item)
        if is_gdal_path(item):
            found.append(item)
        elif path.is_dir():
            found += sorted(str(p) for p in path.iterdir() if p.suffix.lower() in RASTER_SUFFIXES)
        elif path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
            found += _read_list(path)
        elif not path.exists() and glob.has_magic(item):
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise InputError(f"The INPUT pattern {item} matches no file; check it (quote it for the shell).")
            found += matches
        else:
            found.append(item)
    if not found:
        raise InputError("The INPUTs hold no raster; give raster files, folders with .tif files, globs or lists.")
    return found  # repeats too: run_job says which it skips


def distinct_inputs(paths: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """The inputs without repeats, and (repeat, the input it repeats) for each one dropped.

    A repeat is the same text, or the same file under another spelling or through a link
    (same device and inode). Classifying it twice would race for one set of blocks.
    """
    from ..core.rasterio_source import is_gdal_path

    kept: list[str] = []
    seen: dict[object, str] = {}
    repeats: list[tuple[str, str]] = []
    for path in paths:
        identity: object = path
        if not is_gdal_path(path):
            with contextlib.suppress(OSError):
                found = os.stat(path)
                identity = (found.st_dev, found.st_ino)
        if identity in seen:
            repeats.append((path, seen[identity]))
            continue
        seen[identity] = path
        kept.append(path)
    return kept, repeats


def _read_list(path: Path) -> list[str]:
    """One path per line (blank lines and # comments skipped); relative paths are relative to the list."""
    from ..core.rasterio_source import is_gdal_path

    paths = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        paths.append(line if is_gdal_path(line) or Path(line).is_absolute() else str(path.parent / line))
    return paths


def many_options(args: argparse.Namespace):
    """The engine options of classify (main.classify_options), without outputs, one onnxruntime thread per worker."""
    from .main import classify_options

    options = classify_options(args, None, None)
    return dataclasses.replace(
        options,
        # Workers may run elsewhere: the model's absolute path, the same on every machine (docs/CLUSTER.md).
        model_path=str(Path(options.model_path).resolve()) if options.model_path else None,
        threads=1 if args.threads is None else args.threads,
        overwrite=False,
    )


# ---------------------------------------------------------------------------------------------
# The worker's side: one block


@dataclass(frozen=True)
class BlockTask:
    """What a worker needs to classify one block."""

    path: str
    key: str
    index: int
    tiles: int
    options: object  # ClassifyOptions with the block's area and no outputs
    whole: bool = False  # the raster is one block: the engine's own files are the outputs, no merge


def run_block(task: BlockTask) -> dict:
    """Classify one block with the engine; return its GeoPackage and GeoTIFF as bytes (runs on a worker).

    A problem with the raster comes back as ``{"ok": False, "error": ...}`` rather than an
    exception, so Dask does not retry what would fail again.
    """
    from rasterio._err import CPLE_BaseError
    from rasterio.errors import RasterioError

    from ..core.pipeline import classify
    from ..core.rasterio_source import RasterioSource

    started = time.perf_counter()
    _sweep_scratch_once()
    try:
        with RasterioSource(task.path) as source, _scratch() as scratch:
            out_vector, out_raster = Path(scratch) / "tiles.gpkg", Path(scratch) / "classes.tif"
            options = dataclasses.replace(
                task.options,
                out_vector=str(out_vector),
                out_raster=str(out_raster),
                overwrite=True,
                # A raster of one block fails, as with `classify`, when nothing is classified.
                allow_nothing_classified=not task.whole,
            )
            result = classify(source, options, model=_worker_model(options.model_path, options.threads))
            return {
                "ok": True,
                "gpkg": out_vector.read_bytes(),
                "tif": out_raster.read_bytes(),
                "cells": [row.cells for row in result.areas],
                "hectares": [row.hectares for row in result.areas],
                "tiles_by_class": [row.tiles for row in result.areas],
                "tiles_total": result.tiles_total,
                "tiles_classified": result.tiles_classified,
                "warnings": list(result.warnings),
                "seconds": time.perf_counter() - started,
            }
    except RsGhostError as error:
        return {"ok": False, "error": str(error)}
    except (RasterioError, CPLE_BaseError, OSError) as error:
        reason = str(error).strip() or type(error).__name__
        return {"ok": False, "error": f"cannot read {task.path}: {reason}"}


def _worker_model(path: str | None, threads: int | None):
    """The worker's model, loaded once per worker process rather than once per block.

    Keyed to the file's size and modification time too, so a model replaced between jobs on a
    long-lived cluster is loaded afresh.
    """
    from ..core.runtime import default_model_path, load_model

    resolved = Path(path) if path else default_model_path()
    try:
        found = resolved.stat()
        stamp = (found.st_size, found.st_mtime_ns)
    except OSError:
        return load_model(resolved, threads)  # let the engine's own message say what is wrong
    key = (str(resolved), stamp, threads)
    if _WORKER_MODEL.get("key") != key:
        _WORKER_MODEL.clear()
        _WORKER_MODEL.update(key=key, model=load_model(resolved, threads))
    return _WORKER_MODEL["model"]


_WORKER_MODEL: dict = {}  # one model per worker process: a block task reuses its session
_SWEPT: list[bool] = []  # the temp dir was swept by this process


def _scratch() -> tempfile.TemporaryDirectory:
    """A block's scratch folder in the temp dir, named after this process (pid and start time)."""
    from ..core.atomic import process_token

    return tempfile.TemporaryDirectory(prefix=f"{SCRATCH}{process_token()}_")


def _sweep_scratch_once() -> None:
    """Remove the scratch folders of dead workers from the temp dir, once per process."""
    if not _SWEPT:
        _SWEPT.append(True)
        with contextlib.suppress(OSError):  # an unreadable temp dir is no reason to fail the block
            sweep_scratch(Path(tempfile.gettempdir()))


def sweep_scratch(folder: Path) -> list[Path]:
    """Remove the block scratch folders in ``folder`` whose process is gone; return them.

    A SIGKILLed worker never runs its cleanup. Its folder names its pid and start time: gone
    when that pid runs no more, or runs a process started later (a reused pid). Folders of the
    older, unnamed kind go when untouched for a day (a block takes minutes).
    """
    from ..core.atomic import token_alive

    removed = []
    for candidate in folder.glob(f"{SCRATCH}*"):
        match = _SCRATCH_OWNER.match(candidate.name)
        try:
            if match:
                stale = not token_alive(match["token"])
            else:
                stale = time.time() - candidate.stat().st_mtime > _SCRATCH_OLD_S
        except OSError:
            continue
        if stale and candidate.is_dir() and not candidate.is_symlink():
            shutil.rmtree(candidate, ignore_errors=True)
            removed.append(candidate)
    return removed


# ---------------------------------------------------------------------------------------------
# The client's side: the job


@dataclass
class RasterJob:
    """One input raster: its plan, its finished blocks, its outputs or why it failed."""

    path: str
    key: str = ""
    name: str = ""
    info: object = None
    plan: object = None  # core.blocks.BlockPlan
    done: dict = field(default_factory=dict)  # block index -> manifest record
    summary: dict | None = None  # after the merge: tiles and areas per class
    error: str | None = None
    warned: bool = False

    @property
    def missing(self) -> list:
        """The blocks not finished yet."""
        return [block for block in self.plan.blocks if block.index not in self.done] if self.plan else []


@dataclass
class JobResult:
    """What a classify-many run did."""

    rasters: list[RasterJob]
    class_names: list[str]
    blocks_total: int
    blocks_skipped: int  # finished by an earlier run (manifest)
    blocks_run: int
    tiles: int  # tiles read over all blocks, halo included
    seconds: float
    summary_csv: Path | None
    tiles_run: int = 0  # of them, in blocks this run classified
    repeats: list[tuple[str, str]] = field(default_factory=list)  # (input skipped, the input it repeats)

    @property
    def failures(self) -> list[RasterJob]:
        """The inputs that failed."""
        return [job for job in self.rasters if job.error]

    def totals(self) -> list[dict]:
        """Per class over every finished raster: tiles, cells, hectares, percent."""
        rows = [
            {"class_id": i, "class_name": n, "tiles": 0, "cells": 0, "hectares": 0.0}
            for i, n in enumerate(self.class_names)
        ]
        for job in self.rasters:
            for row, part in zip(rows, (job.summary or {}).get("classes", [])):
                row["tiles"] += part["tiles"]
                row["cells"] += part["cells"]
                row["hectares"] += part["hectares"]
        total = sum(row["hectares"] for row in rows)
        for row in rows:
            row["percent"] = 100.0 * row["hectares"] / total if total else 0.0
        return rows

    def table(self) -> str:
        """The area per class over all inputs, as fixed-width text."""
        rows = self.totals()
        width = max([len("class")] + [len(row["class_name"]) for row in rows])
        lines = [f"{'class':<{width}}  {'tiles':>9}  {'hectares':>13}  {'percent':>7}"]
        for row in rows:
            lines.append(
                f"{row['class_name']:<{width}}  {row['tiles']:>9,}  {row['hectares']:>13,.1f}  {row['percent']:>7.1f}"
            )
        lines.append(
            f"{'total':<{width}}  {sum(r['tiles'] for r in rows):>9,}  {sum(r['hectares'] for r in rows):>13,.1f}  "
            f"{100.0 if any(r['hectares'] for r in rows) else 0.0:>7.1f}"
        )
        return "\n".join(lines)


def run_job(
    inputs: list[str],
    out_dir: str | os.PathLike,
    options,
    client,
    block_cells: int | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
    warn: Callable[[str], None] | None = None,
) -> JobResult:
    """Classify every input in blocks on the Dask ``client``; merge, summarise and return what happened.

    ``options`` is a ClassifyOptions without outputs. Raises RsGhostError for problems of the
    whole job (the model, DIR or its lock, an output in the way without ``overwrite``, a full
    disk); a raster that cannot be classified is recorded in its RasterJob.error instead. DIR
    is locked while the job runs; what the job created and left empty is removed.
    """
    from ..core.folderlock import folder_lock

    out = Path(out_dir)
    created = _make_dir(out)
    try:
        with folder_lock(out):
            try:
                return _run_locked(inputs, out, options, client, block_cells, overwrite, progress, warn)
            finally:
                _tidy_work(out / WORK)  # a refused, failed or finished job leaves no empty folders there
    finally:
        if created is not None:
            _remove_empty(out, created)  # DIR itself, when this job made it and left nothing there


def _run_locked(inputs, out: Path, options, client, block_cells, overwrite, progress, warn) -> JobResult:
    """run_job's work, with DIR made and locked."""
    from distributed import as_completed

    from ..core.atomic import remove_stale_parts
    from ..core.runtime import load_model

    started = time.perf_counter()
    inputs, repeats = distinct_inputs(list(inputs))
    _prepare_dir(out)
    model = load_model(options.model_path, 1)  # a bad model stops the job before any work
    manifest = _read_manifest(out / MANIFEST)
    jobs = [RasterJob(path) for path in inputs]
    for job in jobs:
        _plan(job, model, options, block_cells)
    _assign_names(jobs)
    for job in jobs:
        if not job.error:
            _resume(job, manifest, out, overwrite)
    for job in jobs:
        if job.key:
            remove_stale_parts(out / WORK / job.key)
    skipped = sum(len(job.done) for job in jobs if job.plan)
    blocks_total = sum(len(job.plan.blocks) for job in jobs if job.plan and not job.error)
    tiles_total = sum(job.plan.tiles for job in jobs if job.plan and not job.error)
    tiles_done = sum(b.tiles for job in jobs if job.plan for b in job.plan.blocks if b.index in job.done)
    blocks_done = skipped
    if progress:
        progress(blocks_done, blocks_total, tiles_done, tiles_total)
    for job in jobs:
        if job.plan and not job.error and not job.missing and job.summary is None:
            _merge_or_fail(job, model.card, out)

    tasks, owner = [], {}
    # Keys name the output folder too: two jobs on one cluster never share (or steal) a task.
    job_tag = hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:8]
    for job in jobs:
        if job.error:
            continue
        for block in job.missing:
            area = dataclasses.replace(options, area=block.area)
            task = BlockTask(job.path, job.key, block.index, block.tiles, area, whole=len(job.plan.blocks) == 1)
            future = client.submit(run_block, task, key=f"rs-ghost-block-{job.key}-{block.index}-{job_tag}", pure=False)
            tasks.append(future)
            owner[future.key] = (job, block)
    run = tiles_run = 0
    try:
        for future in as_completed(tasks):
            job, block = owner[future.key]
            if job.error:
                continue
            try:
                outcome = future.result()
            except Exception as error:  # noqa: BLE001 - a worker died too often, or a bug: this raster fails alone
                outcome = {"ok": False, "error": _describe_failure(error, block.index)}
            future.release()
            if not outcome["ok"]:
                job.error = outcome["error"]
                client.cancel([f for f in tasks if owner[f.key][0] is job and not f.done()])
                continue
            _store_block(job, block, outcome, out, warn)
            run += 1
            tiles_run += block.tiles
            blocks_done += 1
            tiles_done += block.tiles
            if progress:
                progress(blocks_done, blocks_total, tiles_done, tiles_total)
            if not job.missing:
                _merge_or_fail(job, model.card, out)
    except BaseException:
        client.cancel([f for f in tasks if not f.done()])  # Ctrl-C: the finished blocks stay for a rerun
        raise
    result = JobResult(
        jobs, list(model.card.class_names), blocks_total, skipped, run, tiles_total, time.perf_counter() - started, None
    )
    result.tiles_run = tiles_run
    result.repeats = repeats
    result.summary_csv = _write_summary(result, out)
    return result


def _make_dir(out: Path) -> Path | None:
    """Create DIR (and its parents); return the topmost folder this made, None when DIR existed."""
    missing = next((folder for folder in reversed([out, *out.parents]) if not folder.exists()), None)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(
            f"Cannot write into --out-dir {out}: {error.strerror or error}; choose another folder."
        ) from None
    return missing


def _tidy_work(work: Path) -> None:
    """Remove the empty raster folders of DIR/.blocks, then .blocks itself when empty."""
    with contextlib.suppress(OSError):
        for folder in work.iterdir():
            _remove_empty(folder, folder)
    _remove_empty(work, work)


def _remove_empty(folder: Path, top: Path) -> None:
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


def _prepare_dir(out: Path) -> Path:
    """Create DIR/.blocks and check DIR can be written (before any work)."""
    from ..core.atomic import remove_stale_parts

    try:
        (out / WORK).mkdir(parents=True, exist_ok=True)
        probe = out / f".probe.{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as error:
        raise OutputError(
            f"Cannot write into --out-dir {out}: {error.strerror or error}; choose another folder."
        ) from None
    remove_stale_parts(out)
    return out


def _plan(job: RasterJob, model, options, block_cells) -> None:
    """Open the raster and cut it into blocks; errors go to job.error."""
    from ..core.blocks import plan_blocks
    from ..core.rasterio_source import RasterioSource

    try:
        with RasterioSource(job.path) as source:
            job.info = source.info
        job.plan = plan_blocks(job.info, model.card, options.area, options.stride, block_cells)
    except RsGhostError as error:
        job.error = str(error)
        return
    job.key = _fingerprint(job.path, model.path, options, job.plan.block_cells)


def _assign_names(jobs: list[RasterJob]) -> None:
    """Each planned raster's output name: its file name, or, where names clash, with a tag of its path.

    The tag depends on the path alone, so a raster keeps its outputs whatever the order of the
    inputs. Names differing in case alone clash too (file systems of Windows and macOS).
    """
    planned = [job for job in jobs if not job.error]
    groups: dict[str, list[RasterJob]] = {}
    for job in planned:
        groups.setdefault(job.info.name.casefold(), []).append(job)
    for job in planned:
        job.name = job.info.name if len(groups[job.info.name.casefold()]) == 1 else _tagged(job, 8)
    clashes = {job.name.casefold() for job in planned if job.name != job.info.name} & set(groups)
    for job in planned:
        if job.name.casefold() in clashes:  # "a_1234abcd" given as a raster too: a longer tag
            job.name = _tagged(job, 16)


def _tagged(job: RasterJob, digits: int) -> str:
    """The raster's name with the first ``digits`` hex digits of its path's hash."""
    from ..core.rasterio_source import is_gdal_path

    path = job.path if is_gdal_path(job.path) else str(Path(job.path).resolve())
    return f"{job.info.name}_{hashlib.sha256(path.encode()).hexdigest()[:digits]}"


def _resume(job: RasterJob, manifest: dict, out: Path, overwrite: bool) -> None:
    """Find what the manifest already holds for the raster; check its outputs may be written."""
    from ..core.pipeline import _layer_name
    from ..core.sinks import check_layers, check_output

    record = manifest.get(job.key, {})
    work = out / WORK / job.key
    for index, entry in record.get("blocks", {}).items():
        if (work / f"{index}.gpkg").exists() and (work / f"{index}.tif").exists():
            job.done[int(index)] = entry
    outputs = (out / f"{job.name}.gpkg", out / f"{job.name}.tif")
    merged = record.get("merged")
    # The outputs of the merge on record, under the name this raster has now (not another raster's).
    same_name = bool(merged) and Path(merged["vector"]).name == outputs[0].name
    if same_name and all(path.exists() for path in outputs):
        job.summary = merged
        # Its block files were removed after the merge: the manifest's word is what counts.
        job.done = {block.index: record["blocks"].get(str(block.index), {}) for block in job.plan.blocks}
        return
    # This raster's own files, from an earlier or interrupted merge under the same name.
    ours = same_name or record.get("publishing") in (True, job.name)
    for path, suffixes, what in ((outputs[0], (".gpkg",), "vector output"), (outputs[1], (".tif",), "raster output")):
        check_output(path, overwrite or ours, suffixes, what, input_path=job.path)
    check_layers(outputs[0], _layer_name(job.info), overwrite or ours)  # --overwrite replaces ours only


def _fingerprint(path: str, model_path: Path, options, block_cells: int) -> str:
    """A key for the raster under these options: a rerun with anything changed starts that raster afresh."""
    import shapely

    def stat(name) -> list:
        with contextlib.suppress(OSError):
            found = os.stat(name)
            return [found.st_size, found.st_mtime_ns]
        return []

    area = options.area
    geometries = [hashlib.sha256(shapely.to_wkb(g)).hexdigest() for g in area.geometries or []]
    payload = {
        "manifest_format": MANIFEST_FORMAT,
        "input": path if "://" in path or path.startswith("/vsi") else str(Path(path).resolve()),
        "input_stat": stat(path),
        "model": str(model_path),
        "model_stat": stat(model_path),
        "stride": options.stride,
        "bands": options.bands,
        "scaling": options.scaling,
        "offset": options.offset,
        "product": options.product,
        "min_valid": options.min_valid_fraction,
        "area": [area.bounds, area.crs_wkt, geometries],
        "block_cells": block_cells,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _read_manifest(path: Path) -> dict:
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


def _append_manifest(out: Path, entry: dict) -> None:
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


def _store_block(job: RasterJob, block, outcome: dict, out: Path, warn) -> None:
    """Write a finished block's files atomically, then record it in the manifest.

    A write that fails (a full disk) leaves neither of the block's files: the block is not
    recorded, a rerun classifies it again.
    """
    from ..core.atomic import atomic_path

    work = out / WORK / job.key
    files = [(work / f"{block.index}{suffix}", outcome[suffix[1:]]) for suffix in (".gpkg", ".tif")]
    entry = {
        "key": job.key,
        "block": block.index,
        "input": job.path,
        "cells": outcome["cells"],
        "hectares": outcome["hectares"],
        "seconds": round(outcome["seconds"], 3),
        "whole": len(job.plan.blocks) == 1,
        **{k: outcome[k] for k in ("tiles_by_class", "tiles_total", "tiles_classified")},
    }
    try:
        for path, data in files:
            with atomic_path(path) as tmp:
                tmp.write_bytes(data)
        _append_manifest(out, entry)  # a torn last line is ignored when read: the block is not done
    except OSError as error:
        for path, _ in files:
            with contextlib.suppress(OSError):
                path.unlink()
        raise _storage_error(error, out, block.index, job.path) from None
    job.done[block.index] = entry
    if warn and not job.warned and outcome["tiles_classified"]:
        job.warned = True
        for text in outcome["warnings"]:
            warn(f"{job.name}: {face_message(text, 'cli')}")


def _storage_error(error: OSError, out: Path, index: int, path: str) -> OutputError:
    """The job's one error for a block that could not be stored in DIR/.blocks."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        reason = "the disk is full" if error.errno == errno.ENOSPC else "the disk quota is used up"
        return OutputError(
            f"Cannot store block {index} of {path} in {out / WORK}: {reason}. Free some space there, or choose "
            "another --out-dir; run the same command again to resume (finished blocks are kept)."
        )
    return OutputError(
        f"Cannot store block {index} of {path} in {out / WORK}: {error.strerror or error}; fix the folder or "
        "choose another --out-dir, then run the same command again to resume."
    )


def _describe_failure(error: BaseException, index: int) -> str:
    """One line for an exception a block's future raised."""
    from distributed import KilledWorker

    if isinstance(error, KilledWorker):
        return (
            f"block {index} killed every worker that ran it (out of memory?); give the workers more memory or "
            "pass a smaller --block-cells"
        )
    return f"block {index} failed: {type(error).__name__}: {error}"


def _merge_or_fail(job: RasterJob, card, out: Path) -> None:
    """Merge a raster whose blocks are all in; a raster with nothing classified fails like `classify`."""
    try:
        job.summary = merge_blocks(job, card, out)
    except RsGhostError as error:
        job.error = str(error)
        return
    _append_manifest(out, {"key": job.key, "merged": job.summary})
    # The blocks are in the merged files now; a country's worth would double the disk used.
    shutil.rmtree(out / WORK / job.key, ignore_errors=True)


def merge_blocks(job: RasterJob, card, out: Path) -> dict:
    """Merge the raster's block files into DIR/<name>.gpkg and DIR/<name>.tif; return its summary.

    Halo tiles, classified by two blocks alike, are written once. Both files are finished and
    checked under temporary names, then published together (or neither).
    """
    import numpy as np
    import rasterio
    import shapely
    from osgeo import ogr

    from ..core.pipeline import _description, _layer_name  # the engine's own names and wording
    from ..core.sinks import ClassRasterWriter, GeoPackageSink, TileRecord, publish_all, tile_fields

    grid, work = job.plan.grid, out / WORK / job.key
    if len(job.plan.blocks) == 1 and job.done[0].get("whole"):
        return _publish_whole(job, card, out)
    # A block without a classified tile adds nodata to the class map, which is where the merge starts.
    with_classes = [b for b in job.plan.blocks if job.done[b.index]["tiles_classified"]]
    if not with_classes:
        raise InputError(f"No tile of {job.info.name} in the area has enough valid pixels: nothing was classified.")
    with rasterio.open(work / f"{with_classes[0].index}.tif") as ds:
        metadata = {k: v for k, v in ds.tags().items() if k != "AREA_OR_POINT"}
    fields = tile_fields(card)
    vector = GeoPackageSink(out / f"{job.name}.gpkg", _layer_name(job.info), _description(metadata), metadata)
    raster = None
    class_tiles = np.zeros(card.num_classes, dtype=np.int64)
    seen: set[tuple[int, int]] = set()
    try:
        vector.open(fields, job.info.crs_wkt)
        for block in job.plan.blocks:
            ds = ogr.Open(str(work / f"{block.index}.gpkg"))
            batch = []
            for feature in ds.GetLayer(0):
                values = [feature.GetField(i) if feature.IsFieldSetAndNotNull(i) else None for i in range(len(fields))]
                if (values[0], values[1]) in seen:
                    continue  # a halo tile: the neighbour block has it already
                seen.add((values[0], values[1]))
                if values[2] is not None:
                    class_tiles[values[2]] += 1
                geometry = shapely.from_wkb(bytes(feature.GetGeometryRef().ExportToIsoWkb()))
                batch.append(TileRecord(geometry, values))
                if len(batch) >= MERGE_BATCH:
                    vector.add(batch)
                    batch = []
            vector.add(batch)
            ds = None
        raster = ClassRasterWriter(
            out / f"{job.name}.tif", card, grid.crs_wkt, grid.transform, grid.width, grid.height, metadata
        )
        _merge_rasters(raster, grid, job.plan, work, with_classes)
        finished = [vector.finish(), raster.finish()]
        _append_manifest(out, {"key": job.key, "publishing": job.name})  # from here on, the outputs are ours
        # Existing outputs were refused before any work unless --overwrite (or this job's own).
        publish_all(finished, overwrite=True)
    except BaseException:
        vector.abort()
        if raster is not None:
            raster.abort()
        raise
    cells = np.sum([job.done[b.index]["cells"] for b in with_classes], axis=0)
    hectares = np.sum([job.done[b.index]["hectares"] for b in with_classes], axis=0)
    classified = int(class_tiles.sum())
    return {
        "input": job.path,
        "vector": str(out / f"{job.name}.gpkg"),
        "raster": str(out / f"{job.name}.tif"),
        "tiles_total": len(seen),
        "tiles_classified": classified,
        "classes": [
            {"class_name": name, "tiles": int(class_tiles[i]), "cells": int(cells[i]), "hectares": float(hectares[i])}
            for i, name in enumerate(card.class_names)
        ],
    }


def _publish_whole(job: RasterJob, card, out: Path) -> dict:
    """A raster of one block: its files, written and checked by the engine, are published as they are."""
    from ..core.sinks import publish_all

    record, work = job.done[0], out / WORK / job.key
    _append_manifest(out, {"key": job.key, "publishing": job.name})
    publish_all(
        [(work / "0.gpkg", out / f"{job.name}.gpkg"), (work / "0.tif", out / f"{job.name}.tif")], overwrite=True
    )
    return {
        "input": job.path,
        "vector": str(out / f"{job.name}.gpkg"),
        "raster": str(out / f"{job.name}.tif"),
        "tiles_total": record["tiles_total"],
        "tiles_classified": record["tiles_classified"],
        "classes": [
            {
                "class_name": name,
                "tiles": record["tiles_by_class"][i],
                "cells": record["cells"][i],
                "hectares": record["hectares"][i],
            }
            for i, name in enumerate(card.class_names)
        ],
    }


def _merge_rasters(raster, grid, plan, work: Path, blocks: list) -> None:
    """Write the class map row by row from the block GeoTIFFs, one band of blocks at a time."""
    import numpy as np
    import rasterio

    from ..core.sinks import NODATA_CLASS

    side = plan.block_cells
    for top in range(grid.rows[0], grid.rows[1], side):
        bottom = min(top + side, grid.rows[1])
        band = np.full((2, bottom - top, grid.width), NODATA_CLASS, dtype=np.uint8)
        for block in blocks:
            if not top <= block.rows[0] < bottom:
                continue
            with rasterio.open(work / f"{block.index}.tif") as ds:
                data = ds.read()
            r, c = block.rows[0] - top, block.cols[0] - grid.cols[0]
            band[:, r : r + data.shape[1], c : c + data.shape[2]] = data
        for row in range(band.shape[1]):
            raster.write_row(band[0, row], band[1, row])


def _write_summary(result: JobResult, out: Path) -> Path:
    """DIR/summary.csv: per raster and over all inputs ('all'), tiles, cells, hectares and percent per class."""
    from ..core.atomic import atomic_path

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["raster", "class_id", "class_name", "tiles", "cells", "hectares", "percent"])
    for job in result.rasters:
        if not job.summary:
            continue
        total = sum(part["hectares"] for part in job.summary["classes"])
        for index, part in enumerate(job.summary["classes"]):
            percent = 100.0 * part["hectares"] / total if total else 0.0
            writer.writerow(
                [
                    job.name,
                    index,
                    part["class_name"],
                    part["tiles"],
                    part["cells"],
                    f"{part['hectares']:.4f}",
                    f"{percent:.4f}",
                ]
            )
    for row in result.totals():
        writer.writerow(
            [
                "all",
                row["class_id"],
                row["class_name"],
                row["tiles"],
                row["cells"],
                f"{row['hectares']:.4f}",
                f"{row['percent']:.4f}",
            ]
        )
    path = out / SUMMARY
    with atomic_path(path) as tmp:
        tmp.write_text(text.getvalue(), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# The command


def command(args: argparse.Namespace) -> int:
    """``classify-many``: connect or start a cluster, run the job, print the summary; the exit code."""
    from .main import Terminated

    if args.workers is not None and args.scheduler:
        raise InputError("Give either --workers (a local cluster) or --scheduler (a running one), not both.")
    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers must be at least 1, not {args.workers}.")
    if args.block_cells is not None and args.block_cells < 1:
        raise InputError(f"--block-cells must be at least 1, not {args.block_cells}.")
    options = many_options(args)
    inputs = expand_inputs(args.inputs)
    with _cluster(args) as client:
        bar = _Bar()
        try:
            result = run_job(
                inputs, args.out_dir, options, client, args.block_cells, args.overwrite, bar.update, bar.write
            )
        except KeyboardInterrupt as interrupt:
            bar.close()
            print(
                f"\ncancelled: finished blocks are kept in {Path(args.out_dir) / MANIFEST}; run the same command "
                "again to resume.",
                file=sys.stderr,
            )
            return 143 if isinstance(interrupt, Terminated) else 130
        except BaseException:
            bar.close()  # the error goes on a line of its own, below the bar
            raise
        bar.close()
    print(result.table())
    print()
    for job in result.rasters:
        if job.summary:
            print(f"done:    {job.name}: {job.summary['vector']}, {job.summary['raster']}")
    for repeat, first in result.repeats:
        same = "given more than once" if repeat == first else f"the same file as {first}"
        print(f"skipped: {repeat}: {same}; classified once")
    for job in result.failures:
        print(f"failed:  {job.path}: {job.error}", file=sys.stderr)
    rate = result.tiles_run / result.seconds if result.seconds else 0.0
    print(
        f"summary: {result.summary_csv}\nblocks:  {result.blocks_run:,} run, {result.blocks_skipped:,} from an "
        f"earlier run, of {result.blocks_total:,}; {result.tiles_run:,} tiles in {result.seconds:.1f} s "
        f"({rate:,.0f} tiles/s)"
    )
    if result.failures:
        print(
            f"error: {len(result.failures)} of {len(result.rasters)} inputs failed (see the failed: lines); "
            f"exit code {EXIT_SOME_FAILED}",
            file=sys.stderr,
        )
        return EXIT_SOME_FAILED
    return 0


@contextlib.contextmanager
def _cluster(args: argparse.Namespace):
    """A Dask client: on --scheduler's cluster, or on a local one of --workers processes."""
    try:
        from distributed import Client
    except ImportError:
        raise InputError(
            "classify-many needs Dask: install it with `pip install dask distributed` (see requirements.txt)."
        ) from None
    if args.scheduler:
        try:
            client = Client(args.scheduler, timeout="20s")
        except (OSError, TimeoutError) as error:
            raise InputError(
                f"Cannot reach the Dask scheduler at {args.scheduler} (--scheduler): {error}; start it or fix the "
                "address."
            ) from None
        cluster = None
    else:
        cluster = local_cluster(args.workers or _cores())
        client = Client(cluster)
    try:
        count = len(client.scheduler_info().get("workers", {}))
        print(f"dask:    {count} worker(s) at {client.scheduler.address}", file=sys.stderr)
        if "dashboard" in client.scheduler_info().get("services", {}):
            # Without bokeh, Dask serves only a page that says to install it.
            missing = "" if importlib.util.find_spec("bokeh") else " (pip install bokeh to see it)"
            print(f"dashboard: {client.dashboard_link}{missing}", file=sys.stderr)
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# Dask starts workers with MALLOC_TRIM_THRESHOLD_=65536 so that they hand memory back to the
# system; any such setting also freezes glibc's mmap threshold, so every tile batch's buffers
# are mapped and zeroed afresh: the engine ran 10-15 % slower so. Unset, glibc's own default.
WORKER_ENVIRON = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


def local_cluster(workers: int):
    """A Dask LocalCluster of ``workers`` processes with one thread each, set up for the engine."""
    import dask
    from distributed import LocalCluster

    with dask.config.set(WORKER_ENVIRON):
        return LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, silence_logs=logging.ERROR, dashboard_address=":0"
        )


def _cores() -> int:
    """CPU cores this process may use."""
    with contextlib.suppress(AttributeError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class _Bar:
    """One tqdm bar for the whole job: tiles, with blocks in the postfix; created at the first report."""

    def __init__(self) -> None:
        self._bar = None

    def update(self, blocks_done: int, blocks: int, tiles_done: int, tiles: int) -> None:
        """Show the job's progress."""
        from tqdm import tqdm

        if self._bar is None:
            self._bar = tqdm(total=tiles, initial=tiles_done, unit="tiles", desc="classifying", unit_scale=True)
        self._bar.set_postfix_str(f"blocks {blocks_done}/{blocks}", refresh=False)
        self._bar.update(tiles_done - self._bar.n)

    def write(self, text: str) -> None:
        """A warning above the bar."""
        from tqdm import tqdm

        tqdm.write(f"warning: {text}", file=sys.stderr)

    def close(self) -> None:
        """Close the bar."""
        if self._bar is not None:
            self._bar.close()
