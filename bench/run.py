"""`make bench`: where the time and memory go, as ratios measured in one run.

Rows (medians of several repeats, interleaved so that drifting load on a shared machine hits
every contender alike):
1. onnxruntime alone vs end to end, on a generated raster and on the Demmin scene. The
   pipeline records the exact batches it feeds the model; "ORT alone" is a plain loop that
   creates a session with the same settings and replays them. End to end = the in-process
   pipeline (model load and checks, reading, scaling, inference, GeoPackage + GeoTIFF), and
   the command line as a new process (adds Python start-up and imports, about 0.5 s). Goals,
   in process: <= 1.10 on 2048 x 2048 px, <= 1.5 on the Demmin scene (24 tiles, where the
   fixed costs weigh most). The pipeline runs inference on a worker thread while it reads and
   writes; on a machine loaded by other jobs that extra thread can win it more CPU than the
   plain loop gets, so a ratio near or below 1 there says little: quote quiet runs. Both sides
   create the session; the pipeline builds it on a thread while it plans and reads, and waits
   only for what of it outlasts that work. Issue 31 item 6, quiet, this row alone
   (2026-12-07, the code before and after run back to back): 2048^2 1.157 -> 1.069 and
   1.222 -> 1.123, Demmin 3.45 -> 2.02 and 3.03 -> 2.20. 2026-12-08, on a 2-core Intel Xeon
   (AMX), 15 interleaved repeats: the last batch run on the caller's thread (a new thread's first
   inference pays for a fresh malloc arena) took Demmin from 2.09 to 1.93 (pipeline 94 -> 87 ms,
   ORT alone 45 ms); 2048^2 read 1.076-1.093. What is left on Demmin is planning (the sample,
   18 ms) and warping the strips from EPSG:4326 (25 ms) beyond the session's 22 ms.
   ``--ratios-only`` runs just this row, both rasters (about a minute).
2. G-Ghost student vs VGG-16 teacher throughput on the same tiles (random weights; the
   speed does not depend on them).
3. Peak RSS of the command line on two raster sizes up to 20,000 x 20,000 px: flat means
   streaming works. A cheap model keeps this row short; memory is the pipeline's.
4. Threads and batch size.
6. (listed last, run after row 1) adapt on the Demmin scene: the whole ``core.adapt.adapt`` (model load, radiometry,
   chips, features, cross-validation, fit, writing the model) with the polygons of
   bench/demmin_labels.py (target 30 s on 2 cores); ``--adapt-only`` runs just this row.
5. classify-many (Dask distributed) on one batch of generated rasters, one block each: the
   plain single-process loop of ``classify`` (one onnxruntime thread), then Dask LocalClusters
   of 1 and 2 worker processes (one thread each; one cluster at a time, started and warmed
   before timing). Rows: 2 workers vs 1 (target 1.7x on 2 cores) and Dask with 1 worker vs
   the plain loop (the overhead: tasks, block bytes, merge; target 1.10). ``--many-only`` runs just these rows.

The model is the bundled one when present, else a G-Ghost RegNet 040 with random weights at
64 px (the bundled model's compute). Usage: python bench/run.py [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rs_ghost_qgis.core.classify.pipeline import ClassifyOptions, classify  # noqa: E402
from rs_ghost_qgis.core.errors import ModelError  # noqa: E402
from rs_ghost_qgis.core.model import runtime  # noqa: E402
from rs_ghost_qgis.core.options import Area  # noqa: E402
from rs_ghost_qgis.core.sources.rasterio_source import RasterioSource  # noqa: E402

DEMMIN = REPO.parent / "shared" / "data" / "geotiff" / "sentinel2_demmin_germany_20230603.tif"
# The RSS rasters are VRT mosaics of one textured GeoTIFF repeated 10 x 10 times: the same
# number of VRT sources (each costs GDAL some memory) whatever the size.
MOSAIC_SIDE = 10
RECORD_BATCHES = 64  # batches kept for replay; larger runs replay them cyclically


def main() -> int:
    """Run every row and print the table."""
    parser = argparse.ArgumentParser(description="rs_ghost_qgis benchmarks")
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat (about a minute)")
    parser.add_argument("--large-size", type=int, help="side of the generated raster in px (2048; quick 512)")
    parser.add_argument("--repeats", type=int, help="repeats per measurement (3; quick 1)")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime threads for rows 1-3 (2)")
    parser.add_argument("--many-only", action="store_true", help="only the classify-many rows (row 5)")
    parser.add_argument("--adapt-only", action="store_true", help="only the adaptation row (row 6)")
    parser.add_argument("--ratios-only", action="store_true", help="only end to end / ORT, both rasters (row 1)")
    args = parser.parse_args()
    quick = args.quick
    size = args.large_size or (512 if quick else 2048)
    repeats = args.repeats or (1 if quick else 3)
    rss_sizes = (4000, 8000) if quick else (10_000, 20_000)
    started = time.perf_counter()
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="rs_ghost_bench_") as scratch:
        work = Path(scratch)
        model, model_note = _model(work)
        print(f"bench: model {model_note}; {repeats} repeat(s); onnxruntime threads {args.threads}", flush=True)
        if args.many_only:
            rows += _many_rows(model, work, repeats, 768 if quick else 1536)
            return _print_rows(rows, started)
        if args.adapt_only:
            return _print_rows(_adapt_rows(model, work, repeats, args.threads), started)
        large = _textured_raster(work / f"large_{size}.tif", size)
        rows += _ort_vs_end_to_end(f"generated {size}x{size} uint8", large, model, work, repeats, args.threads, "1.10")
        if DEMMIN.is_file():
            rows += _ort_vs_end_to_end(
                "Demmin scene (EPSG:4326, uint16)", DEMMIN, model, work, repeats, args.threads, "1.5"
            )
        else:
            rows.append(("Demmin scene", "skipped", f"{DEMMIN} not found"))
        if args.ratios_only:
            return _print_rows(rows, started)
        rows += _adapt_rows(model, work, repeats, args.threads)
        rows += _student_vs_teacher(large, model, work, repeats, args.threads, 64 if quick else 256)
        rows += _peak_rss(work, rss_sizes)
        rows += _threads_and_batches(large, model, work, repeats, min(size, 512 if quick else 1024))
        rows += _many_rows(model, work, repeats, 768 if quick else 1536)
    return _print_rows(rows, started)


def _print_rows(rows: list[tuple[str, str, str]], started: float) -> int:
    print()
    print("| measurement | value | note |\n|---|---|---|")
    for row in rows:
        print(f"| {row[0]} | {row[1]} | {row[2]} |")
    print(f"\nbench: {time.perf_counter() - started:.0f} s in total")
    return 0


def _model(work: Path) -> tuple[Path, str]:
    try:
        path = runtime.default_model_path()
        return path, f"bundled {path.name}"
    except ModelError:
        return _export("g_ghost_regnetx_040", work), "G-Ghost RegNet 040, random weights, 64 px (no bundled model yet)"


def _export(name: str, work: Path, tiny: bool = False) -> Path:
    """Export ``name`` (or the tiny test model) at 64 px, 10 classes, random weights."""
    import torch

    from tests.tiny_model import TinyNet, tiny_card
    from training.export import export_onnx

    card = tiny_card(input_size=64, tile_size=64)
    if tiny:
        return export_onnx(TinyNet(), card, work / "tiny64.onnx")
    from training.models import build_model

    names = [f"class_{i}" for i in range(10)]
    colours = [f"#{(i * 0x19E3B5) % 0xFFFFFF:06x}" for i in range(10)]
    card = dataclasses.replace(card, class_names=names, class_colors=colours, architecture=name)
    torch.manual_seed(0)
    return export_onnx(build_model(name, 10).eval(), card, work / f"{name}.onnx")


def _textured_raster(path: Path, size: int, block: int = 512) -> Path:
    """A uint8 RGB raster at 10 m with field-like patches and noise, written block by block."""
    rng = np.random.default_rng(0)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=size,
        height=size,
        count=3,
        dtype="uint8",
        crs="EPSG:32633",
        transform=from_origin(500_000, 6_000_000, 10, 10),
        tiled=True,
        compress="deflate",
    ) as ds:
        for row in range(0, size, block):
            for col in range(0, size, block):
                h, w = min(block, size - row), min(block, size - col)
                yy, xx = np.mgrid[row : row + h, col : col + w]
                fields = ((yy // 97 * 7 + xx // 131 * 13) % 5) * 40 + 30
                data = np.stack([fields + rng.integers(0, 30, (h, w)) for _ in range(3)])
                ds.write(data.astype(np.uint8), window=rasterio.windows.Window(col, row, w, h))
    return path


class _Recorder:
    """Wraps Model.predict to keep (a bounded number of) the batches the pipeline feeds it."""

    def __init__(self) -> None:
        self.batches: list[np.ndarray] = []
        self.count = 0

    def __enter__(self):
        self._original = runtime.Model.predict
        recorder = self

        def predict(model, batch):
            recorder.count += 1
            if len(recorder.batches) < RECORD_BATCHES:
                recorder.batches.append(np.array(batch))
            return recorder._original(model, batch)

        runtime.Model.predict = predict
        return self

    def __exit__(self, *exc) -> None:
        runtime.Model.predict = self._original


def _pipeline_seconds(raster: Path, model: Path, work: Path, threads: int, batch: int = 32, area=None) -> float:
    options = ClassifyOptions(
        model_path=str(model),
        threads=threads,
        batch_size=batch,
        area=area or Area(),
        overwrite=True,
        # One file per raster: a GeoPackage holding another raster's layer is refused, not overwritten.
        out_vector=str(work / f"bench_{raster.stem}.gpkg"),
        out_raster=str(work / f"bench_{raster.stem}.tif"),
    )
    with RasterioSource(raster) as source:
        started = time.perf_counter()
        classify(source, options)
        return time.perf_counter() - started


# The child reports its own peak RSS (VmHWM, counted from its exec): getrusage's ru_maxrss
# would also count the pages of this big parent (torch, models) that the fork copied.
_CLI_WITH_PEAK = (
    "import sys\n"
    "from rs_ghost_qgis.cli.main import main\n"
    "code = main(sys.argv[1:])\n"
    "peak = [line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM')][0]\n"
    "sys.stderr.write(f'VmHWM_kB {peak}\\n')\n"
    "sys.exit(code)\n"
)


def _cli(raster: Path, model: Path, work: Path, threads: int) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one command-line run in a new process."""
    command = [sys.executable, "-c", _CLI_WITH_PEAK, "classify", str(raster), "--model", str(model)]
    outputs = [str(work / f"cli_{raster.stem}.gpkg"), str(work / f"cli_{raster.stem}.tif")]
    command += ["--out-vector", outputs[0], "--out-raster", outputs[1], "--overwrite"]
    command += ["--threads", str(threads)]
    started = time.perf_counter()
    run = subprocess.run(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    seconds = time.perf_counter() - started
    if run.returncode != 0:
        raise RuntimeError(f"command failed ({run.returncode}): {run.stderr[-500:]}")
    peak_kb = int(run.stderr.rsplit("VmHWM_kB ", 1)[1].split()[0])
    return seconds, peak_kb * 1024


def _ort_seconds(model: Path, batches: list[np.ndarray], count: int, threads: int, with_session: bool = True) -> float:
    """A plain onnxruntime loop: create the session, run ``count`` batches (cycling through ``batches``).

    ``with_session`` False leaves session creation (and one warm-up batch) out of the time.
    """
    started = time.perf_counter()
    session = runtime.create_session(model, threads)
    name = session.get_inputs()[0].name
    if not with_session:
        session.run(None, {name: batches[0]})
        started = time.perf_counter()
    for index in range(count):
        session.run(None, {name: batches[index % len(batches)]})
    return time.perf_counter() - started


def _ort_vs_end_to_end(label, raster, model, work, repeats, threads, goal):
    with _Recorder() as recorder:
        _pipeline_seconds(raster, model, work, threads)
    tiles = sum(len(b) for b in recorder.batches) if recorder.count <= RECORD_BATCHES else None
    # Interleaved repeats: on a shared machine the load drifts, so each ratio compares runs
    # made one after the other, and the median of the ratios is reported.
    runs = []
    for _ in range(repeats):
        ort = _ort_seconds(model, recorder.batches, recorder.count, threads)
        pipeline = _pipeline_seconds(raster, model, work, threads)
        cli, rss = _cli(raster, model, work, threads)
        runs.append((ort, pipeline, cli, rss))
    ort, pipeline, cli = (statistics.median(r[i] for r in runs) for i in range(3))
    pipeline_ratio = statistics.median(r[1] / r[0] for r in runs)
    cli_ratio = statistics.median(r[2] / r[0] for r in runs)
    rss = max(r[3] for r in runs)
    count = f"{tiles} tiles" if tiles is not None else f"{recorder.count} batches"
    print(f"bench: {label}: ORT {ort:.2f} s, pipeline {pipeline:.2f} s, CLI {cli:.2f} s", flush=True)
    return [
        (f"{label}: ORT alone", f"{ort:.2f} s", f"{count}, batch 32, session creation included"),
        (
            f"{label}: end to end / ORT (pipeline in process)",
            f"{pipeline_ratio:.3f}",
            f"{pipeline:.2f} s; goal <= {goal}",
        ),
        (
            f"{label}: end to end / ORT (CLI, new process)",
            f"{cli_ratio:.3f}",
            f"{cli:.2f} s incl. start-up; peak RSS {rss / 2**20:.0f} MiB",
        ),
    ]


def _student_vs_teacher(raster, model, work, repeats, threads, tiles):
    with _Recorder() as recorder:
        _pipeline_seconds(raster, model, work, threads)
    pool = np.concatenate(recorder.batches)[:tiles]
    batches = [pool[i : i + 32] for i in range(0, len(pool), 32)]
    try:
        teacher = _export("vgg16_bn", work)
    except ImportError as error:
        return [("student vs VGG-16 teacher", "skipped", f"training.models not importable: {error}")]
    times = {"student": [], "teacher": []}
    for _ in range(repeats):  # interleaved, as above
        for name, path in (("student", model), ("teacher", teacher)):
            times[name].append(_ort_seconds(path, batches, len(batches), threads, False))
    rates = {name: len(pool) / statistics.median(values) for name, values in times.items()}
    teacher.unlink()
    print(f"bench: student {rates['student']:.0f} tiles/s, teacher {rates['teacher']:.0f} tiles/s", flush=True)
    return [
        (
            "student throughput",
            f"{rates['student']:.0f} tiles/s",
            f"{len(pool)} tiles, ORT after warm-up, {threads} threads",
        ),
        ("VGG-16-BN teacher throughput", f"{rates['teacher']:.0f} tiles/s", "same tiles, same settings"),
        ("student / teacher speed-up", f"{rates['student'] / rates['teacher']:.1f}x", ""),
    ]


def _adapt_rows(model: Path, work: Path, repeats: int, threads: int) -> list[tuple[str, str, str]]:
    """Row 6: the whole adaptation on the Demmin scene with bench/demmin_labels.py's polygons."""
    from bench.demmin_labels import CLASS_FIELD, write_demmin_labels
    from rs_ghost_qgis.core.adapt.adapt import AdaptOptions, adapt, labels_from_file

    if not DEMMIN.is_file():
        return [("adapt on the Demmin scene", "skipped", f"{DEMMIN} not found")]
    labels = labels_from_file(str(write_demmin_labels(work / "demmin_labels.gpkg")), CLASS_FIELD)
    times, result = [], None
    for _ in range(repeats):
        options = AdaptOptions(
            out_path=str(work / "adapted.onnx"), model_path=str(model), threads=threads, overwrite=True
        )
        started = time.perf_counter()
        with RasterioSource(DEMMIN) as source:
            result = adapt(source, labels, options)
        times.append(time.perf_counter() - started)
    chips = sum(result.chips.values())
    return [
        (
            "adapt on the Demmin scene (7 polygons, 3 classes), wall time",
            f"{statistics.median(times):.2f} s",
            f"{chips} chips, {result.feature_source} + band statistics, cv accuracy {result.cv_accuracy:.1%}; "
            "target 30 s on 2 cores",
        )
    ]


def _mosaic(work: Path, size: int) -> Path:
    """A size x size px VRT made of one textured GeoTIFF repeated: big rasters without big files."""
    side = -(-size // MOSAIC_SIDE)  # ceil
    tile = work / f"mosaic_tile_{side}.tif"
    if not tile.exists():
        _textured_raster(tile, side)
    sources = []
    for row in range(0, size, side):
        for col in range(0, size, side):
            h, w = min(side, size - row), min(side, size - col)
            rect = (
                f'<SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>'
                f'<DstRect xOff="{col}" yOff="{row}" xSize="{w}" ySize="{h}"/>'
            )
            sources.append(
                f"<SimpleSource><SourceFilename>{tile}</SourceFilename><SourceBand>{{band}}</SourceBand>{rect}</SimpleSource>"
            )
    bands = "".join(
        f'<VRTRasterBand dataType="Byte" band="{b}">' + "".join(s.format(band=b) for s in sources) + "</VRTRasterBand>"
        for b in (1, 2, 3)
    )
    path = work / f"mosaic_{size}.vrt"
    path.write_text(
        f'<VRTDataset rasterXSize="{size}" rasterYSize="{size}"><SRS>EPSG:32633</SRS>'
        f"<GeoTransform>500000, 10, 0, 6000000, 0, -10</GeoTransform>{bands}</VRTDataset>"
    )
    return path


def _peak_rss(work, sizes):
    tiny = _export("tiny", work, tiny=True)
    rows = []
    for size in sizes:
        seconds, rss = _cli(_mosaic(work, size), tiny, work, 2)
        tiles = (size // 64 + (size % 64 > 0)) ** 2
        print(f"bench: {size}x{size}: peak RSS {rss / 2**20:.0f} MiB in {seconds:.0f} s", flush=True)
        rows.append(
            (
                f"peak RSS, CLI on {size:,} x {size:,} px",
                f"{rss / 2**20:.0f} MiB",
                f"{tiles:,} tiles in {seconds:.0f} s (tiny model); goal <= 1 GB, flat",
            )
        )
    return rows


def _threads_and_batches(raster, model, work, repeats, side):
    area = Area(bounds=(500_000, 6_000_000 - side * 10, 500_000 + side * 10, 6_000_000))
    tiles = (side // 64) ** 2
    configs = [(threads, batch) for threads in (1, 2) for batch in (8, 32, 64)]
    seconds = {config: [] for config in configs}
    for _ in range(repeats):  # configurations interleaved within each repeat: the load drifts
        for threads, batch in configs:
            seconds[(threads, batch)].append(_pipeline_seconds(raster, model, work, threads, batch, area))
    rows = []
    for (threads, batch), values in seconds.items():
        rate = tiles / statistics.median(values)
        print(f"bench: threads {threads}, batch {batch}: {rate:.0f} tiles/s", flush=True)
        rows.append((f"pipeline, {threads} thread(s), batch {batch}", f"{rate:.0f} tiles/s", f"{tiles} tiles"))
    return rows


MANY_RASTERS = 8  # the batch of row 5: enough tasks that one slow task does not decide the 2-worker time


def _many_rows(model: Path, work: Path, repeats: int, side: int) -> list[tuple[str, str, str]]:
    """Row 5: the same batch through the plain loop, Dask with 1 worker and Dask with 2 workers."""
    import logging

    from distributed import Client

    from rs_ghost_qgis.core.many.job import local_cluster, run_job

    logging.getLogger("distributed").setLevel(logging.ERROR)  # the clusters' closing chatter
    rasters = [_textured_raster(work / f"many_{i}.tif", side) for i in range(MANY_RASTERS)]
    options = ClassifyOptions(model_path=str(model), threads=1)

    def plain() -> float:
        started = time.perf_counter()
        for raster in rasters:
            out = dataclasses.replace(
                options,
                out_vector=str(work / f"plain_{raster.stem}.gpkg"),
                out_raster=str(work / f"plain_{raster.stem}.tif"),
                overwrite=True,
            )
            with RasterioSource(raster) as source:
                classify(source, out)
        return time.perf_counter() - started

    def dask(client, label: str, batch: list[Path]) -> float:
        out = Path(tempfile.mkdtemp(prefix=f"many_{label}_", dir=work))
        started = time.perf_counter()
        result = run_job([str(r) for r in batch], out, options, client)
        seconds = time.perf_counter() - started
        assert not result.failures, [job.error for job in result.failures]
        return seconds

    def timed(workers: int, label: str) -> float:
        # One cluster at a time: an idle second cluster's processes would take CPU from this one's.
        with local_cluster(workers) as cluster, Client(cluster) as client:
            dask(client, f"warm{workers}_{label}", rasters[:workers])  # imports and the model, on every worker
            return dask(client, f"w{workers}_{label}", rasters)

    times: dict[str, list[float]] = {"plain": [], "1": [], "2": []}
    for repeat in range(repeats):  # interleaved: drifting load hits all three alike
        times["plain"].append(plain())
        for workers in (1, 2):
            times[str(workers)].append(timed(workers, str(repeat)))
    tp, t1, t2 = (statistics.median(times[k]) for k in ("plain", "1", "2"))
    tiles = MANY_RASTERS * (side // 64) ** 2
    print(
        f"bench: classify-many {tiles} tiles: plain {tp:.2f} s, 1 worker {t1:.2f} s, 2 workers {t2:.2f} s", flush=True
    )
    batch = f"{MANY_RASTERS} rasters of {side}x{side} px ({tiles:,} tiles), 1 onnxruntime thread per process"
    return [
        ("classify-many: plain loop / Dask 1 worker / Dask 2 workers", f"{tp:.2f} s / {t1:.2f} s / {t2:.2f} s", batch),
        ("classify-many: 2 workers vs 1 worker", f"{t1 / t2:.2f}x", "target >= 1.7x on 2 cores"),
        ("classify-many: Dask 1 worker / plain loop (overhead)", f"{t1 / tp:.2f}", "target <= 1.10"),
    ]


if __name__ == "__main__":
    sys.exit(main())
