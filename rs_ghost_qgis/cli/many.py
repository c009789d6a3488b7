"""``python -m rs_ghost_qgis classify-many INPUT... --out-dir DIR``: many rasters on a Dask cluster.

The face of ``core/many/`` (``job.run_job``), which does the job (blocks, manifest, merge,
outputs, DIR's lock): this module reads the command, connects to a cluster or starts one,
shows progress and warnings, prints what was done and returns the exit code. A raster that
cannot be read fails alone: one ``failed:`` line, the others finish, and the exit code is
EXIT_SOME_FAILED. Dask is imported only when the command runs.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import glob
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import InputError
from ..core.options import face_message
from .common import EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated, classify_options

if TYPE_CHECKING:
    from ..core.many.job import JobResult

EXIT_SOME_FAILED = 3  # some inputs failed, the others are done (2 stays "nothing was done: fix the command")
RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt", ".img")  # what a folder given as INPUT contributes
LIST_SUFFIXES = (".txt", ".lst")  # an INPUT with these names lists one path per line
# classify's options that classify-many replaces (its outputs are DIR) or must not copy.
_NOT_COPIED = {"help", "input", "out_vector", "out_raster", "preview"}


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


def expand_inputs(items: list[str]) -> list[str]:
    """Files, folders (their rasters), globs and path lists -> raster paths, in order, each once.

    GDAL paths (/vsicurl/..., https://...) are kept as given. A name that is none of these is
    kept too: it fails later as that raster's own error, without stopping the others.
    """
    from ..core.sources.rasterio_source import is_gdal_path

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


def _read_list(path: Path) -> list[str]:
    """One path per line (blank lines and # comments skipped); relative paths are relative to the list."""
    from ..core.sources.rasterio_source import is_gdal_path

    paths = []
    try:  # utf-8-sig: Notepad saves UTF-8 with a byte-order mark, which would start the first path.
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(
            f"The list {path} is not UTF-8 text (saved as UTF-16 or another encoding?); save it as UTF-8, one path "
            "per line."
        ) from None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        paths.append(line if is_gdal_path(line) or Path(line).is_absolute() else str(path.parent / line))
    return paths


def many_options(args: argparse.Namespace):
    """The engine options of classify (common.classify_options), without outputs, one onnxruntime thread per worker."""
    options = classify_options(args, None, None)
    return dataclasses.replace(
        options,
        # Workers may run elsewhere: the model's absolute path, the same on every machine (docs/CLUSTER.md).
        model_path=str(Path(options.model_path).resolve()) if options.model_path else None,
        threads=1 if args.threads is None else args.threads,
        overwrite=False,
    )


def command(args: argparse.Namespace) -> int:
    """``classify-many``: connect or start a cluster, run the job, print the summary; the exit code."""
    from ..core.many.job import run_job
    from ..core.many.manifest import MANIFEST

    _check_arguments(args)
    options = many_options(args)
    inputs = expand_inputs(args.inputs)
    with _cluster(args) as client:
        bar = _Bar()
        try:
            result = run_job(
                inputs,
                args.out_dir,
                options,
                client,
                args.block_cells,
                args.overwrite,
                bar.update,
                bar.warn,
                other_inputs={"the mask (--mask)": args.mask},
            )
        except KeyboardInterrupt as interrupt:
            bar.close()
            print(
                f"\ncancelled: finished blocks are kept in {Path(args.out_dir) / MANIFEST}; run the same command "
                "again to resume.",
                file=sys.stderr,
            )
            return EXIT_TERMINATED if isinstance(interrupt, Terminated) else EXIT_INTERRUPTED
        finally:
            bar.close()  # an error goes on a line of its own, below the bar
    return _report(result)


def _check_arguments(args: argparse.Namespace) -> None:
    """The options of classify-many alone: a cluster and a block size that can be."""
    if args.workers is not None and args.scheduler:
        raise InputError("Give either --workers (a local cluster) or --scheduler (a running one), not both.")
    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers must be at least 1, not {args.workers}.")
    if args.block_cells is not None and args.block_cells < 1:
        raise InputError(f"--block-cells must be at least 1, not {args.block_cells}.")


def _report(result: JobResult) -> int:
    """Print the area table and one line per raster, repeat and failure; the exit code."""
    from ..core.classify.evidence import counts_line

    print(_table(result.totals()))
    print()
    for job in result.rasters:
        if job.summary:
            print(f"done:    {job.name}: {job.summary['vector']}, {job.summary['raster']}")
            if job.summary.get("evidence"):  # a job resumed from an older version has no counts
                print(f"         {counts_line(job.summary['evidence'])}")
    for repeat, first in result.repeats:
        same = "given more than once" if repeat == first else f"the same file as {first}"
        print(f"skipped: {repeat}: {same}; classified once")
    for job in result.failures:
        reason = " ".join(face_message(job.error, "cli").split())  # one line, whatever GDAL's text held
        print(f"failed:  {job.path}: {reason}", file=sys.stderr)
    rate = result.tiles_run / result.seconds if result.seconds else 0.0
    print(
        f"summary: {result.summary_csv}\nblocks:  {result.blocks_run:,} run, {result.blocks_skipped:,} from an "
        f"earlier run, of {result.blocks_total:,}; {result.tiles_run:,} tiles in {result.seconds:.1f} s "
        f"({rate:,.0f} tiles/s)"
    )
    if not result.failures:
        return 0
    print(
        f"error: {len(result.failures)} of {len(result.rasters)} inputs failed (see the failed: lines); "
        f"exit code {EXIT_SOME_FAILED}",
        file=sys.stderr,
    )
    return EXIT_SOME_FAILED


def _table(rows: list[dict]) -> str:
    """The area per class over all inputs (JobResult.totals), as fixed-width text."""
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


@contextlib.contextmanager
def _cluster(args: argparse.Namespace):
    """A Dask client: on --scheduler's cluster, or on a local one of --workers processes."""
    from ..core.many.job import local_cluster

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
        cluster = local_cluster(args.workers)
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

    def warn(self, name: str, text: str) -> None:
        """A raster's warning above the bar."""
        from tqdm import tqdm

        tqdm.write(f"warning: {name}: {face_message(text, 'cli')}", file=sys.stderr)

    def close(self) -> None:
        """Close the bar (once: a later call does nothing)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
