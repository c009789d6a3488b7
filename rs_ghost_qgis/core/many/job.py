"""A classify-many job: many rasters (or huge ones) in blocks on a Dask cluster.

Each raster's tile grid is cut into blocks (``blocks``); each block is one Dask task that
runs the ordinary engine on its area and sends back its files as bytes (``worker``), so
workers need no shared folder. This process writes every block into
``DIR/.blocks/<key>/`` atomically, then records it in ``DIR/manifest.jsonl`` (``manifest``); a
rerun with the same inputs and options skips what the manifest holds. When a raster's last
block is in, its blocks are merged (``merge``) into ``DIR/<name>.gpkg`` and ``DIR/<name>.tif``,
published together by the sinks (``sinks.publish_all``).

A worker that dies mid-task is Dask's business: the scheduler runs the task again on another
worker (``distributed.scheduler.allowed-failures`` times, 3 by default). A raster that cannot
be read fails alone (its ``RasterJob.error``); the others finish. Dask is imported only when a
job runs.

One run at a time writes into DIR (``lock``). An input given twice (two spellings,
a symlink) is classified once and reported as a repeat; inputs of the same file name from
different folders get outputs named after their path (``<name>_<8 hex digits>``, ``raster``),
whatever their order. Messages that name an option are OptionTexts, worded by each face
(``options.face_message``).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import errno
import hashlib
import io
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import atomic_path, remove_stale_parts
from ..errors import OutputError, RsGhostError
from ..model.card import ModelCard
from ..model.runtime import load_model
from ..options import OptionText, message_of
from ..outputs import Inputs, same_file
from .blocks import Block
from .lock import folder_lock
from .manifest import (
    MANIFEST,
    WORK,
    append_manifest,
    make_dir,
    prepare_dir,
    published_outputs,
    read_manifest,
    remove_empty,
    tidy_work,
)
from .merge import merge_blocks
from .raster import RasterJob, assign_names, plan_raster, resume
from .worker import BlockResult, BlockTask, run_block

SUMMARY = "summary.csv"
# Dask starts workers with MALLOC_TRIM_THRESHOLD_=65536 so that they hand memory back to the
# system; any such setting also freezes glibc's mmap threshold, so every tile batch's buffers
# are mapped and zeroed afresh: the engine ran 10-15 % slower so. Unset, glibc's own default.
WORKER_ENVIRON = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}

Progress = Callable[[int, int, int, int], None]  # (blocks done, blocks, tiles done, tiles)
Warn = Callable[[str, str], None]  # (the raster's output name, a warning: an OptionText where it names options)


def distinct_inputs(paths: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """The inputs without repeats, and (repeat, the input it repeats) for each one dropped.

    A repeat is the same text, or the same file under another spelling or through a link
    (same device and inode). Classifying it twice would race for one set of blocks.
    """
    from ..sources.rasterio_source import is_gdal_path

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


def local_cluster(workers: int | None = None):
    """A Dask LocalCluster set up for the engine: ``workers`` processes (None: one per core), one thread each."""
    import dask
    from distributed import LocalCluster

    with dask.config.set(WORKER_ENVIRON):
        return LocalCluster(
            n_workers=workers or _cores(),
            threads_per_worker=1,
            processes=True,
            silence_logs=logging.ERROR,
            dashboard_address=":0",
        )


def _cores() -> int:
    """CPU cores this process may use."""
    with contextlib.suppress(AttributeError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


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


def run_job(
    inputs: list[str],
    out_dir: str | os.PathLike,
    options,
    client,
    block_cells: int | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
    warn: Warn | None = None,
    other_inputs: Inputs | None = None,
) -> JobResult:
    """Classify every input in blocks on the Dask ``client``; merge, summarise and return what happened.

    ``options`` is a ClassifyOptions without outputs; ``other_inputs`` names the files the job
    reads besides the rasters and the model (the mask: {"the mask (--mask)": path}), which no
    output may replace (core/outputs.py). Raises RsGhostError for problems of the
    whole job (the model, DIR or its lock, an output in the way without ``overwrite``, a full
    disk); a raster that cannot be classified is recorded in its RasterJob.error instead. DIR
    is locked while the job runs; what the job created and left empty is removed.
    """
    out = Path(out_dir)
    created = make_dir(out)
    try:
        with folder_lock(out, "out_dir"):
            try:
                job_inputs = {"the model ({model})": options.model_path, **(other_inputs or {})}
                return _run_locked(inputs, out, options, client, block_cells, overwrite, progress, warn, job_inputs)
            finally:
                tidy_work(out / WORK)  # a refused, failed or finished job leaves no empty folders there
    finally:
        if created is not None:
            remove_empty(out, created)  # DIR itself, when this job made it and left nothing there


@dataclass
class _Job:
    """A job under way: DIR, the engine options, the model's card, the callbacks and the counts."""

    out: Path
    options: object  # ClassifyOptions without outputs
    card: ModelCard
    progress: Progress | None
    warn: Warn | None
    blocks: int = 0  # of every raster planned
    tiles: int = 0
    blocks_done: int = 0  # by this run or an earlier one
    tiles_done: int = 0
    blocks_run: int = 0  # by this run
    tiles_run: int = 0
    inputs: Inputs = field(default_factory=dict)  # the files besides the rasters that no output may be

    def report(self) -> None:
        """Tell the face how far the job is."""
        if self.progress:
            self.progress(self.blocks_done, self.blocks, self.tiles_done, self.tiles)

    def block_done(self, block: Block) -> None:
        """Count a block this run classified."""
        self.blocks_run += 1
        self.tiles_run += block.tiles
        self.blocks_done += 1
        self.tiles_done += block.tiles
        self.report()


def _run_locked(
    inputs: list[str],
    out: Path,
    options,
    client,
    block_cells: int | None,
    overwrite: bool,
    progress: Progress | None,
    warn: Warn | None,
    job_inputs: Inputs,
) -> JobResult:
    """run_job's work, with DIR made and locked."""
    started = time.perf_counter()
    inputs, repeats = distinct_inputs(list(inputs))
    prepare_dir(out)
    model = load_model(options.model_path, 1)  # a bad model stops the job before any work
    job = _Job(out, options, model.card, progress, warn, inputs=job_inputs)
    rasters = _plan_all(inputs, model, job, block_cells, overwrite)
    skipped = job.blocks_done
    job.report()
    for raster in rasters:
        if raster.plan and not raster.error and not raster.missing and raster.summary is None:
            _merge_or_fail(raster, job)
    _run_blocks(client, rasters, job)
    result = JobResult(
        rasters,
        list(model.card.class_names),
        job.blocks,
        skipped,
        job.blocks_run,
        job.tiles,
        time.perf_counter() - started,
        None,
        tiles_run=job.tiles_run,
        repeats=repeats,
    )
    result.summary_csv = _write_summary(result, out)
    return result


def _plan_all(inputs: list[str], model, job: _Job, block_cells: int | None, overwrite: bool) -> list[RasterJob]:
    """Every input planned, named and resumed from the manifest; the job's counts set."""
    manifest = read_manifest(job.out / MANIFEST)
    rasters = [RasterJob(path) for path in inputs]
    published = published_outputs(manifest, job.out)
    for raster in rasters:
        if any(same_file(raster.path, output) for output in published):
            raster.error = _an_output(job.out)
            continue
        plan_raster(raster, model, job.options, block_cells)
    assign_names(rasters)
    planned = [raster for raster in rasters if raster.plan and not raster.error]
    for raster in planned:
        resume(raster, manifest, job.out, overwrite, job.inputs)
    for raster in planned:
        remove_stale_parts(job.out / WORK / raster.key)
    job.blocks = sum(len(raster.plan.blocks) for raster in planned)
    job.tiles = sum(raster.plan.tiles for raster in planned)
    job.blocks_done = sum(len(raster.done) for raster in planned)
    job.tiles_done = sum(
        block.tiles for raster in planned for block in raster.plan.blocks if block.index in raster.done
    )
    return rasters


def _an_output(out: Path) -> OptionText:
    """Why an input that is one of DIR's class maps is not classified (a glob reaching DIR finds them)."""
    return OptionText(
        "it is a class map an earlier run wrote into {folder}: classifying it would treat classes as colours. "
        "Leave it out of the INPUTs (a folder, glob or list that reaches {out_dir} brings it in).",
        folder=out,
    )


def _run_blocks(client, rasters: list[RasterJob], job: _Job) -> None:
    """Run every missing block on Dask; store, count and merge each raster's blocks as they come back."""
    from distributed import as_completed

    tasks, owner = _submit(client, rasters, job)
    try:
        for future in as_completed(tasks):
            raster, block = owner[future.key]
            if raster.error:
                continue
            outcome = _outcome(future, block)
            if outcome.error is not None:
                raster.error = outcome.error
                client.cancel([f for f in tasks if owner[f.key][0] is raster and not f.done()])
                continue
            _store_block(raster, block, outcome, job)
            job.block_done(block)
            if not raster.missing:
                _merge_or_fail(raster, job)
    except BaseException:
        client.cancel([f for f in tasks if not f.done()])  # Ctrl-C: the finished blocks stay for a rerun
        raise


def _submit(client, rasters: list[RasterJob], job: _Job) -> tuple[list, dict]:
    """One Dask task per missing block: the futures, and (raster, block) by task key."""
    tasks, owner = [], {}
    # Keys name the output folder too: two jobs on one cluster never share (or steal) a task.
    tag = hashlib.sha256(str(job.out.resolve()).encode()).hexdigest()[:8]
    for raster in rasters:
        if raster.error:
            continue
        for block in raster.missing:
            options = dataclasses.replace(job.options, area=block.area)
            whole = len(raster.plan.blocks) == 1
            task = BlockTask(raster.path, raster.key, block.index, block.tiles, options, whole=whole)
            future = client.submit(run_block, task, key=f"rs-ghost-block-{raster.key}-{block.index}-{tag}", pure=False)
            tasks.append(future)
            owner[future.key] = (raster, block)
    return tasks, owner


def _outcome(future, block: Block) -> BlockResult:
    """What a block's task returned; an exception it raised becomes the raster's error."""
    try:
        outcome = future.result()
    except Exception as error:  # noqa: BLE001 - a worker died too often, or a bug: this raster fails alone
        outcome = BlockResult(error=_describe_failure(error, block.index))
    future.release()
    return outcome


def _describe_failure(error: BaseException, index: int) -> str:
    """One line for an exception a block's future raised."""
    from distributed import KilledWorker

    if isinstance(error, KilledWorker):
        return OptionText(
            "block {index} killed every worker that ran it (out of memory?); give the workers more memory or pass "
            "a smaller {block_cells}",
            index=index,
        )
    return f"block {index} failed: {type(error).__name__}: {_one_line(str(error))} (a bug or a worker's fault)"


def _one_line(text: str) -> str:
    """An exception's text as one line: a traceback it carries (a worker's, relayed by Dask) down to its last line."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if any(line.startswith("Traceback (most recent call last)") for line in lines):
        lines = lines[-1:]  # "Type: message", the line that says what went wrong
    return " ".join(" ".join(lines).split()) or "no message"


def _store_block(raster: RasterJob, block: Block, outcome: BlockResult, job: _Job) -> None:
    """Write a finished block's files atomically, then record it in the manifest.

    A write that fails (a full disk) leaves neither of the block's files: the block is not
    recorded, a rerun classifies it again.
    """
    work = job.out / WORK / raster.key
    files = [(work / f"{block.index}.gpkg", outcome.gpkg), (work / f"{block.index}.tif", outcome.tif)]
    entry = {
        "key": raster.key,
        "block": block.index,
        "input": raster.path,
        "cells": outcome.cells,
        "hectares": outcome.hectares,
        "seconds": round(outcome.seconds, 3),
        "whole": len(raster.plan.blocks) == 1,
        "tiles_by_class": outcome.tiles_by_class,
        "tiles_total": outcome.tiles_total,
        "tiles_classified": outcome.tiles_classified,
    }
    try:
        for path, data in files:
            with atomic_path(path) as tmp:
                tmp.write_bytes(data)
        append_manifest(job.out, entry)  # a torn last line is ignored when read: the block is not done
    except OSError as error:
        for path, _ in files:
            with contextlib.suppress(OSError):
                path.unlink()
        raise _storage_error(error, job.out, block.index, raster.path) from None
    raster.done[block.index] = entry
    if job.warn and not raster.warned and outcome.tiles_classified:
        raster.warned = True  # every block of a raster warns alike: once is enough
        for text in outcome.warnings:
            job.warn(raster.name, text)


def _storage_error(error: OSError, out: Path, index: int, path: str) -> OutputError:
    """The job's one error for a block that could not be stored in DIR/.blocks."""
    values = {"index": index, "path": path, "work": out / WORK}
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        reason = "the disk is full" if error.errno == errno.ENOSPC else "the disk quota is used up"
        return OutputError(
            OptionText(
                "Cannot store block {index} of {path} in {work}: {reason}. Free some space there, or choose "
                "another {out_dir}; run the same command again to resume (finished blocks are kept).",
                reason=reason,
                **values,
            )
        )
    return OutputError(
        OptionText(
            "Cannot store block {index} of {path} in {work}: {reason}; fix the folder or choose another {out_dir}, "
            "then run the same command again to resume.",
            reason=error.strerror or error,
            **values,
        )
    )


def _merge_or_fail(raster: RasterJob, job: _Job) -> None:
    """Merge a raster whose blocks are all in; a raster with nothing classified fails like `classify`."""
    try:
        raster.summary = merge_blocks(raster, job.card, job.out, job.options.min_valid_fraction)
    except RsGhostError as error:
        raster.error = message_of(error)
        return
    append_manifest(job.out, {"key": raster.key, "merged": raster.summary})
    # The blocks are in the merged files now; a country's worth would double the disk used.
    shutil.rmtree(job.out / WORK / raster.key, ignore_errors=True)


def _write_summary(result: JobResult, out: Path) -> Path:
    """DIR/summary.csv: per raster and over all inputs ('all'), tiles, cells, hectares and percent per class."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["raster", "class_id", "class_name", "tiles", "cells", "hectares", "percent"])
    for raster in result.rasters:
        if not raster.summary:
            continue
        total = sum(part["hectares"] for part in raster.summary["classes"])
        for index, part in enumerate(raster.summary["classes"]):
            percent = 100.0 * part["hectares"] / total if total else 0.0
            writer.writerow(_csv_row(raster.name, index, part, percent))
    for row in result.totals():
        writer.writerow(_csv_row("all", row["class_id"], row, row["percent"]))
    path = out / SUMMARY
    with atomic_path(path) as tmp:
        tmp.write_text(text.getvalue(), encoding="utf-8")
    return path


def _csv_row(name: str, class_id: int, part: dict, percent: float) -> list:
    """One row of summary.csv."""
    hectares = f"{part['hectares']:.4f}"
    return [name, class_id, part["class_name"], part["tiles"], part["cells"], hectares, f"{percent:.4f}"]
