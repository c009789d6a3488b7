"""One block of a classify-many job, on a Dask worker (``job`` is the client's side).

The worker runs the ordinary engine (``pipeline.classify``) on the block's area into a scratch
folder of the temp dir and sends back the block's GeoPackage and class GeoTIFF as bytes, so
workers need no shared folder. A scratch folder is named after its process (pid and start
time), so the leftovers of a killed worker are recognised and removed later. Each worker
process loads the model once, not once per block.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import process_token, token_alive
from ..classify.pipeline import classify
from ..errors import RsGhostError
from ..model.runtime import default_model_path, load_model
from ..options import message_of

SCRATCH = "rs_ghost_block_"  # a worker's folder per block in the temp dir: rs_ghost_block_<pid>-<start>_<random>
_SCRATCH_OWNER = re.compile(rf"^{SCRATCH}(?P<token>\d+-\d+)_")
_SCRATCH_OLD_S = 86_400.0  # a scratch folder of the older, unnamed kind: stale when untouched this long


@dataclass(frozen=True)
class BlockTask:
    """What a worker needs to classify one block."""

    path: str
    key: str
    index: int
    tiles: int
    options: object  # ClassifyOptions with the block's area and no outputs
    whole: bool = False  # the raster is one block: the engine's own files are the outputs, no merge


@dataclass(frozen=True)
class BlockResult:
    """What a worker sends back: the block's files and counts, or (``error``) why the raster failed."""

    error: str | None = None  # an OptionText where the message names options
    gpkg: bytes = b""
    tif: bytes = b""
    cells: list[int] = field(default_factory=list)  # per class, as ClassifyResult.areas
    hectares: list[float] = field(default_factory=list)
    tiles_by_class: list[int] = field(default_factory=list)
    tiles_total: int = 0
    tiles_classified: int = 0
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


def run_block(task: BlockTask) -> BlockResult:
    """Classify one block with the engine; return its GeoPackage and GeoTIFF as bytes (runs on a worker).

    A problem with the raster comes back as ``BlockResult(error=...)`` rather than an
    exception, so Dask does not retry what would fail again.
    """
    from rasterio._err import CPLE_BaseError  # rasterio 1.3 exports GDAL's error class nowhere else
    from rasterio.errors import RasterioError

    from ..sources.rasterio_source import RasterioSource

    started = time.perf_counter()
    _sweep_scratch_once()
    try:
        with RasterioSource(task.path) as source, scratch_folder() as scratch:
            out_vector, out_raster = Path(scratch) / "tiles.gpkg", Path(scratch) / "classes.tif"
            options = dataclasses.replace(
                task.options,
                out_vector=str(out_vector),
                out_raster=str(out_raster),
                overwrite=True,
                # A raster of one block fails, as with `classify`, when nothing is classified.
                allow_nothing_classified=not task.whole,
            )
            result = classify(source, options, model=worker_model(options.model_path, options.threads))
            return BlockResult(
                gpkg=out_vector.read_bytes(),
                tif=out_raster.read_bytes(),
                cells=[row.cells for row in result.areas],
                hectares=[row.hectares for row in result.areas],
                tiles_by_class=[row.tiles for row in result.areas],
                tiles_total=result.tiles_total,
                tiles_classified=result.tiles_classified,
                warnings=list(result.warnings),
                seconds=time.perf_counter() - started,
            )
    except RsGhostError as error:
        return BlockResult(error=message_of(error))
    except (RasterioError, CPLE_BaseError, OSError) as error:
        reason = str(error).strip() or type(error).__name__
        return BlockResult(error=f"cannot read {task.path}: {reason}")


def worker_model(path: str | None, threads: int | None):
    """The worker's model, loaded once per worker process rather than once per block.

    Keyed to the file's size and modification time too, so a model replaced between jobs on a
    long-lived cluster is loaded afresh.
    """
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


def scratch_folder() -> tempfile.TemporaryDirectory:
    """A block's scratch folder in the temp dir, named after this process (pid and start time)."""
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
