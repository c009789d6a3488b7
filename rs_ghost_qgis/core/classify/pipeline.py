"""The one classification pipeline behind the command line, the QGIS task and Processing.

Strips of tiles are read from a RasterSource (``strips``: one read per run of neighbouring
tiles in a grid row), scaled, batched through onnxruntime on a worker thread (``batching``:
reading and writing go on while a batch runs), and streamed to the outputs (``sinks``) in
reading order: tile features as each batch finishes, class-map rows as soon as no later tile
can touch them. The model loads on another thread meanwhile: the run plans with its card, and
reads its first batch's strips, before it waits for the session; where values are used as they
are (8-bit data), the first BATCHES_IN_FLIGHT batches are read and start before the radiometry's
sample is taken, since it can only add warnings. Nothing is written or told before the warnings.
Memory is bounded by one strip, BATCHES_IN_FLIGHT batches and ``tile_size / stride`` rows of the
class map, whatever the raster size. What a run produced is a ``results.ClassifyResult``.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import shapely

from .. import crs
from ..atomic import make_folders, remove_folders
from ..errors import Cancelled, InputError
from ..model.card import ModelCard
from ..model.runtime import Model, ModelLoad
from ..options import Area, OptionError, OptionText, check_area, check_threads
from ..radiometry.plan import Radiometry
from ..radiometry.scaling import adapted_data_warning, plan_radiometry
from . import workload
from .batching import BATCHES_IN_FLIGHT, Batcher
from .evidence import (
    Evidence,
    apply_water_rule,
    check_min_confidence,
    find_evidence_bands,
    water_class_ids,
)
from .grid import EDGE_POLICY, Grid, build_grid
from .results import AreaRow, ClassifyResult, ClassMap
from .sinks import (
    NODATA_CLASS,
    NODATA_NAME,
    ClassRasterWriter,
    GeoPackageSink,
    TileRecord,
    VectorSink,
    check_layers,
    check_output,
    layer_description,
    layer_name,
    publish_all,
    tile_fields,
)
from .strips import MAX_TILES_PER_READ, fill_invalid, read_strip, valid_shares

TILE_EDGE_SEGMENTS = 4  # vertices added per tile edge when tiles are reprojected for the vector output


@dataclass
class ClassifyOptions:
    """Everything a run needs besides the raster; defaults suit most uses."""

    model_path: str | None = None  # None = bundled default
    area: Area = field(default_factory=Area)
    stride: int | None = None  # pixels at the model GSD; None = tile_size
    bands: list[int] | None = None  # 1-based raster bands feeding the model's channels; None = auto
    scaling: str = "auto"  # "auto" | "none" | "card" | "percentile" | "percentile-per-band"
    offset: float | None = None  # raw value removed before the card mapping (1000); None = from the metadata
    product: str = "auto"  # Sentinel-2 level of reflectance data: "auto" | "l1c" | "l2a"
    min_valid_fraction: float = 0.5
    threads: int | None = None
    batch_size: int = 32
    out_vector: str | None = None  # GeoPackage path
    out_raster: str | None = None  # GeoTIFF path
    overwrite: bool = False
    keep_class_map: bool = False  # the class map stays in the result (one byte per cell): for the preview
    # A block of a larger job (classify-many): a block where no tile has enough valid pixels is a
    # result (its tiles, all nodata, belong in the merge), not the error it is for a whole run.
    allow_nothing_classified: bool = False
    # Evidence from near infrared (core/classify/evidence.py): the water rule, and the band holding near
    # infrared (None: found by description or wavelength). Tiles below min_confidence are marked
    # doubtful (None: the card's threshold, else evidence.DEFAULT_MIN_CONFIDENCE).
    water_rule: bool = True
    nir_band: int | None = None
    min_confidence: float | None = None


def classify(
    source,
    options: ClassifyOptions,
    progress: Callable[[float], None] | None = None,
    is_canceled: Callable[[], bool] | None = None,
    vector_sink: VectorSink | None = None,
    warn: Callable[[str], None] | None = None,
    extra_outputs: Callable[[ClassifyResult], list[tuple[Path, Path]]] | None = None,
    model: Model | None = None,
) -> ClassifyResult:
    """Classify ``source`` tile by tile and write the requested outputs.

    ``progress`` receives 0..100; ``is_canceled`` is polled between strips and batches (a
    cancelled run raises Cancelled and leaves no output). ``vector_sink`` replaces the
    GeoPackage of ``options.out_vector`` when given. ``warn`` receives each radiometry warning
    as soon as the scaling is chosen (they are in the result too). ``extra_outputs`` (the
    preview) is called with the result once the outputs are complete under their temporary
    names; it returns more finished (temporary, final path) pairs, published together with
    them: all the outputs or none. ``model`` is the model of ``options.model_path`` when a face
    has loaded it already (the dialog, to show its card); None loads it here. Raises
    RsGhostError subclasses for every problem the user can fix.
    """
    started = time.perf_counter()
    _check_options(options)
    check_area(options.area, source.info)
    out_vector = None if vector_sink is not None or not options.out_vector else options.out_vector
    info = source.info
    for path, suffixes, what in (
        (out_vector, (".gpkg",), "vector output"),
        (options.out_raster, (".tif", ".tiff"), "raster output"),
    ):
        if path:
            check_output(path, options.overwrite, suffixes, what, input_path=info.path)
    loading = ModelLoad(options.model_path, options.threads) if model is None else None
    # Planned with the card while onnxruntime builds the session on the loader's thread; the
    # batcher's first batches may start before it is ready (each waits for it on its own thread).
    card = model.card if model is not None else loading.card()
    batcher = Batcher(model or _WhenLoaded(loading, card), options.batch_size)
    try:
        try:
            model_name = (model.path if model is not None else loading.path).name
            grid, radiometry, evidence, strips = _prepare(source, card, model_name, options, batcher, is_canceled)
        except Exception:
            if loading is not None:
                loading.model()  # a broken model's own error first, as when the model was loaded before planning
            raise
        model = model or loading.model()
        for warning in [*grid.warnings, *radiometry.warnings] if warn else ():
            warn(warning)
        metadata = _metadata(info.name, model, grid, radiometry, options, evidence)
        if out_vector:
            check_layers(out_vector, layer_name(info.name), options.overwrite)
            vector_sink = GeoPackageSink(out_vector, layer_name(info.name), layer_description(metadata), metadata)
        raster = None
        made: list = []  # the output folders this run made: removed again if it fails
        try:
            for path in (out_vector, options.out_raster):
                made += make_folders(Path(path).parent) if path else []
            if vector_sink is not None:
                vector_sink.open(tile_fields(card), info.crs_wkt)
            if options.out_raster:
                raster = ClassRasterWriter(
                    options.out_raster, card, grid.crs_wkt, grid.transform, grid.width, grid.height, metadata
                )
            run = _Run(
                source, strips, batcher, grid, model, options, vector_sink, raster, progress, is_canceled, evidence
            )
            run.execute()
            if run.tiles_classified == 0 and not options.allow_nothing_classified:
                raise InputError(_nothing_classified(info, run, options.min_valid_fraction))
            finished = []  # every file complete under its temporary name before any is published
            if isinstance(vector_sink, GeoPackageSink):
                finished.append(vector_sink.finish())
            if raster is not None:
                finished.append(raster.finish())
            result = _result(run, grid, radiometry, model, options, out_vector, started)
            if extra_outputs is not None:
                finished += extra_outputs(result)
            publish_all(finished, options.overwrite)
            if vector_sink is not None and not isinstance(vector_sink, GeoPackageSink):
                vector_sink.commit()  # a QGIS sink: after the files, which are the likelier to fail
        except BaseException:
            # Cancel, Ctrl-C or failure: leave nothing half-written.
            if vector_sink is not None:
                vector_sink.abort()
            if raster is not None:
                raster.abort()
            remove_folders(made)
            raise
    finally:
        batcher.close()  # nothing runs after a run ends, however it ended
    if progress:
        progress(100.0)
    return result


class _WhenLoaded:
    """The model as the batcher sees it while it loads: each batch waits for the load, on the batcher's thread."""

    def __init__(self, loading: ModelLoad, card: ModelCard) -> None:
        self.loading = loading
        self.card = card

    def predict(self, *batch) -> np.ndarray:
        """Model.predict of the tiles (and their band statistics), once the model has loaded (else the load's error)."""
        return self.loading.model().predict(*batch)


def _prepare(
    source, card: ModelCard, model_name: str, options: ClassifyOptions, batcher: Batcher, is_canceled
) -> tuple[Grid, Radiometry, Evidence, _Strips]:
    """Plan the run and read its first strips, before the run waits for the model and makes its outputs.

    Where the sample can only add warnings (values used as they are), the tiles' scaling is
    known before it: the first two batches' strips are then read and handed to ``batcher``
    before the sample is taken, and run while it is (nothing is written or told before the
    warnings). Else the first batch's strips are read after planning, while the session may
    still build.
    """
    early: list[_Strips] = []

    def begin(grid: Grid, plan: Radiometry) -> None:
        nir = find_evidence_bands(source.info, plan.bands, card.bands, options.nir_band)
        strips = _strips(source, grid, plan, card, options, nir)
        strips.read_ahead(BATCHES_IN_FLIGHT * options.batch_size, is_canceled)
        strips.start(batcher)
        early.append(strips)

    grid, radiometry, evidence = _plan(source, card, model_name, options, begin)
    if early:
        return grid, radiometry, evidence, early[0]
    strips = _strips(source, grid, radiometry, card, options, evidence.bands)
    strips.read_ahead(options.batch_size, is_canceled)
    return grid, radiometry, evidence, strips


def _strips(source, grid: Grid, radiometry: Radiometry, card: ModelCard, options: ClassifyOptions, nir) -> _Strips:
    """The reader of the run's strips (``nir``: the near-infrared evidence's bands, or None)."""
    return _Strips(source, grid, radiometry, card.statistics_bands, options.min_valid_fraction, nir)


def _plan(
    source, card: ModelCard, model_name: str, options: ClassifyOptions, begin: Callable[[Grid, Radiometry], None]
) -> tuple[Grid, Radiometry, Evidence]:
    """The run's grid, radiometry (from a sample of the raster) and near-infrared evidence, from the model's card.

    ``begin`` is called with the grid and the tiles' scaling when it is known before the sample.
    """
    info = source.info
    min_confidence = check_min_confidence(options.min_confidence, card)
    check_adapted_bands(card, model_name, info)
    grid = build_grid(info, card, options.area, options.stride)
    workload.check(workload.estimate(grid, card), info)  # a planet-sized web download is refused here
    within = _area_in_raster(grid, info, options.area)  # sampled when the whole raster's sample finds no data
    choice = (options.bands, options.scaling, options.offset, options.product)
    radiometry = plan_radiometry(source, card, *choice, within, lambda plan: begin(grid, plan))
    radiometry = _adapted_bands_warning(card, model_name, radiometry)
    other_data = adapted_data_warning(model_name, card.training, info, radiometry) if card.head else ""
    if other_data:
        radiometry = dataclasses.replace(radiometry, warnings=(*radiometry.warnings, other_data))
    evidence_bands = find_evidence_bands(info, radiometry.bands, card.bands, options.nir_band)
    return grid, radiometry, Evidence(evidence_bands, options.water_rule, min_confidence)


def check_adapted_bands(card: ModelCard, model_name: str, info) -> None:
    """An adapted model reads every band of the raster it was adapted on: refuse a raster with other bands."""
    want = card.statistics_bands
    if want and info.band_count != want:
        adapted_on = card.training.get("raster", "its raster")
        raise InputError(
            f"{model_name} was adapted on {adapted_on} with {want} bands and uses statistics of every band, "
            f"but {info.name} has {info.band_count}. Run it on a raster with the same {want} bands in the same "
            "order (e.g. the same sensor's product), or adapt a model on this raster."
        )


def _area_in_raster(grid: Grid, info, area: Area | None):
    """The bounds, in the raster's CRS, of what ``grid`` reads for a box or mask; None for the whole raster."""
    if area is None or (area.bounds is None and area.geometries is None):
        return None
    return crs.transform_geometry(shapely.box(*grid.reach()), grid.crs_wkt, info.crs_wkt).bounds


def _adapted_bands_warning(card: ModelCard, model_name: str, radiometry: Radiometry) -> Radiometry:
    """An adapted model fed other bands than it was adapted with: the plan, with a warning naming the option."""
    adapted_with = card.training.get("bands") if card.head else None
    if not adapted_with or list(adapted_with) == list(radiometry.bands):
        return radiometry
    warning = OptionText(
        "{name} was adapted with bands {adapted} feeding the network, but this run uses {used}; set {bands} to "
        "{adapted} unless this raster's bands come in another order.",
        name=model_name,
        adapted=",".join(map(str, adapted_with)),
        used=",".join(map(str, radiometry.bands)),
    )
    return dataclasses.replace(radiometry, warnings=(*radiometry.warnings, warning))


def _result(
    run: _Run,
    grid: Grid,
    radiometry: Radiometry,
    model: Model,
    options: ClassifyOptions,
    out_vector: str | None,
    started: float,
) -> ClassifyResult:
    """What the run produced, for the faces and the preview."""
    return ClassifyResult(
        out_vector=out_vector,
        out_raster=options.out_raster or None,
        areas=run.area_rows(),
        tiles_total=run.tiles_total,
        tiles_classified=run.tiles_classified,
        tiles_nodata=run.tiles_total - run.tiles_classified,
        tiles_outside=run.skipped["outside"],
        tiles_no_data=run.skipped["nodata"],
        tiles_few_valid=run.skipped["few"],
        min_valid_fraction=options.min_valid_fraction,
        overlapping=grid.tile_cells > 1,
        bands_used=list(radiometry.bands),
        scaling_used=radiometry.scaling_note,
        provider=model.provider,
        seconds=time.perf_counter() - started,
        card=model.card,
        bands_note=radiometry.bands_note,
        warnings=[*grid.warnings, *radiometry.warnings],
        radiometry=radiometry,
        class_map=run.class_map(),
        evidence=run.evidence,
    )


def _nothing_classified(info, run: _Run, min_valid: float) -> str:
    """Why no tile was classified; for a web layer without a single pixel: the download failed."""
    if info.web and run.skipped["outside"] < run.tiles_total and not run.strips.any_valid:
        return (
            f"The tiles of the web layer '{info.name}' could not be fetched: not one pixel came back (offline, "
            "server down or sending errors, wrong URL, or no tiles at this place and zoom), so this is not "
            "nodata in the imagery. Check the connection and that the layer draws in QGIS at this extent, then "
            "run again; nothing was classified."
        )
    return nothing_classified(info.name, min_valid, run.skipped)


def nothing_classified(name: str, min_valid: float, skipped: dict[str, int] | None = None) -> str:
    """The one message for a run, or a job's blocks (classify-many), where no tile of ``name`` has enough valid pixels.

    ``skipped`` counts the tiles per reason ("outside", "nodata", "few") where a single run knows them.
    """
    text = f"No tile of {name} in the area has at least {min_valid:.0%} valid pixels: nothing was classified"
    if skipped is None:
        return f"{text}."
    return (
        f"{text} ({skipped['outside']:,} mostly outside the raster, {skipped['nodata']:,} nodata or NaN, "
        f"{skipped['few']:,} below {min_valid:.0%} valid pixels)."
    )


def _check_options(options: ClassifyOptions) -> None:
    # The minimum valid fraction and the batch size exist on the command line only.
    if not 0.0 <= options.min_valid_fraction <= 1.0:
        raise InputError(
            f"The minimum valid fraction (--min-valid) must be between 0 and 1, not {options.min_valid_fraction}."
        )
    if options.offset is not None and not (0 <= options.offset < 1e9):
        raise OptionError("offset", "{offset} must be a raw value of 0 or more, not {value}.", value=options.offset)
    if options.batch_size < 1:
        raise InputError(f"The batch size (--batch-size) must be at least 1, not {options.batch_size}.")
    check_threads(options.threads)  # before the raster is read; create_session checks it again


def _metadata(
    name: str, model: Model, grid: Grid, radiometry: Radiometry, options: ClassifyOptions, evidence: Evidence
) -> dict[str, str]:
    card = model.card
    return {
        "raster": name,
        "model": model.path.name,
        "architecture": card.architecture,
        "classes": ", ".join(card.class_names),
        "tile": f"{card.tile_size} px at {card.gsd_m:g} m = {card.tile_size_m:g} m",
        "stride": f"{grid.cell_m / card.gsd_m:g} px = {grid.cell_m:g} m (class map cell)",
        "grid_crs": grid.crs_note,
        "edge_policy": EDGE_POLICY,
        "nodata": (
            f"tiles with less than {options.min_valid_fraction:.0%} valid pixels: class_id NULL, class_name "
            f"'{NODATA_NAME}' in the vector; {NODATA_CLASS} in the raster"
        ),
        "bands": radiometry.bands_note,
        "scaling": radiometry.scaling_note,
        **({"scaling_warnings": " | ".join(radiometry.warnings)} if radiometry.warnings else {}),
        "near_infrared": evidence.bands.note if evidence.bands else "none found: no near-infrared check",
        "water_rule": "on" if evidence.bands and evidence.water_rule else "off",
        "doubtful": f"tiles below {evidence.min_confidence:.0%} confidence: doubtful = 1",
        "provider": model.provider,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


@dataclass
class _Chunk:
    """Tiles of one grid row read together; ``classified`` marks those sent to the model."""

    row: int
    cols: np.ndarray
    valid_fraction: np.ndarray
    cell_valid: np.ndarray
    classified: np.ndarray
    water_share: np.ndarray | None = None  # (tiles,) water pixels per valid pixel; None without near infrared
    vegetated_share: np.ndarray | None = None


@dataclass
class _RowEnd:
    row: int


class _Strips:
    """The grid's strips in reading order, ready for the model; the first ones may be read ahead.

    Iterating gives (row index, tile row, read, started) for each strip, and (row index, tile
    row, None, False) after a tile row's last strip; a read is (chunk, the tiles for the model,
    their band statistics for an adapted model or None), and ``started`` says its tiles went to
    the batcher already (``start``). ``read_ahead`` reads the first strips while the model
    loads; a failure there is raised in its strip's turn, where it came before.
    """

    def __init__(
        self, source, grid: Grid, radiometry: Radiometry, stat_bands: int, min_valid: float, evidence_bands
    ) -> None:
        self.source = source
        self.grid = grid
        self.radiometry = radiometry
        self.stat_bands = stat_bands  # raster bands an adapted model wants statistics of (0: none)
        self.min_valid = max(min_valid, 1e-9)  # a tile without one valid pixel is never classified
        self.evidence_bands = evidence_bands
        self.any_valid = False  # whether any pixel read was valid (a web layer may send none)
        self._ahead: deque = deque()
        self._started = 0  # how many of the strips read ahead went to the batcher already
        self._failure: Exception | None = None
        self._reads = self._read_all()

    def read_ahead(self, tiles: int, is_canceled: Callable[[], bool] | None) -> None:
        """Read strips until ``tiles`` tiles for the model wait (invisible work: nothing is written or told)."""
        waiting = 0
        try:
            while waiting < tiles and not (is_canceled and is_canceled()):
                item = next(self._reads, None)
                if item is None:
                    return
                self._ahead.append(item)
                waiting += len(item[2][1]) if item[2] is not None else 0
        except Exception as error:  # raised when the run reaches this strip, after the warnings and the outputs
            self._failure = error

    def start(self, batcher: Batcher) -> None:
        """Hand the tiles of the strips read ahead to ``batcher``: their batches run meanwhile.

        A cancel is not checked here: the run checks it before it takes the first strip.
        """
        for _, _, read in self._ahead:
            if read is not None:
                batcher.put(read[1], lambda: None, read[2])
        self._started = len(self._ahead)

    def __iter__(self):
        """(row index, tile row, read or None, whether the read's tiles went to the batcher already)."""
        while self._ahead:
            started, self._started = self._started > 0, max(self._started - 1, 0)
            yield (*self._ahead.popleft(), started)
        if self._failure is not None:
            raise self._failure
        for index, row, read in self._reads:
            yield index, row, read, False

    def _read_all(self):
        for index, row in enumerate(self.grid.tile_rows()):
            for start, end in self.grid.tile_runs(row):
                for first in range(start, end, MAX_TILES_PER_READ):
                    yield index, row, self._read_run(row, first, min(end, first + MAX_TILES_PER_READ))
            yield index, row, None

    def _read_run(self, row: int, start: int, end: int) -> tuple[_Chunk, np.ndarray, np.ndarray | None]:
        """Read the strip holding tiles [start, end) of ``row``; return them ready for the model.

        The third value holds the classified tiles' band statistics for an adapted model, else None.
        """
        strip = read_strip(
            self.source, self.grid, self.radiometry, row, start, end, self.stat_bands, self.evidence_bands
        )
        classified = strip.valid_fraction >= self.min_valid
        self.any_valid = self.any_valid or strip.any_valid
        px = self.grid.cell_px
        chunk = _Chunk(
            row=row,
            cols=np.arange(start, end),
            valid_fraction=strip.valid_fraction,
            # A tile's first cell is the tile itself at the default stride: its share is the tile's.
            cell_valid=strip.valid_fraction if px == self.grid.tile_px else valid_shares(strip.valid[:, :px, :px]),
            classified=classified,
            water_share=strip.water_share,
            vegetated_share=strip.vegetated_share,
        )
        statistics = strip.statistics[classified] if strip.statistics is not None else None
        return chunk, fill_invalid(strip.tiles[classified], strip.valid[classified]), statistics


class _Run:
    """One execution: batching the strips read, and streaming results to the outputs in order."""

    def __init__(
        self,
        source,
        strips: _Strips,
        batcher: Batcher,
        grid,
        model,
        options,
        vector_sink,
        raster,
        progress,
        is_canceled,
        evidence,
    ) -> None:
        self.source = source
        self.strips = strips
        self.batcher = batcher
        self.raster = raster
        self.grid = grid
        self.model = model
        self.options = options
        self.vector_sink = vector_sink
        self.progress = progress
        self.is_canceled = is_canceled
        self.card = model.card
        self.cells = _CellMap(grid, self.card.num_classes)
        self.class_rows: list[np.ndarray] | None = [] if options.keep_class_map else None
        self.tiles_total = 0
        self.tiles_classified = 0
        self.class_tiles = np.zeros(self.card.num_classes, dtype=np.int64)
        self.output_crs = source.info.crs_wkt
        self.skipped = {"outside": 0, "nodata": 0, "few": 0}
        self._footprint = None  # the raster's outline in the grid CRS, made when first needed
        self.evidence: Evidence = evidence
        self.water_ids = water_class_ids(self.card.class_names) if evidence.water_rule else []

    def execute(self) -> None:
        """Read, classify and write every tile of the grid."""
        queue: deque = deque()
        rows = len(self.grid.tile_rows())
        for index, row, read, started in self.strips:
            if read is not None:
                chunk, tiles, statistics = read
                self._check_cancel()
                queue.append(chunk)
                if not started:
                    self.batcher.put(tiles, self._check_cancel, statistics)
                self._drain(queue)
                continue
            queue.append(_RowEnd(row))
            self._drain(queue)
            if self.progress:
                self.progress(99.0 * (index + 1) / rows)
        self.batcher.flush(self._check_cancel)
        self._drain(queue)

    def area_rows(self) -> list[AreaRow]:
        """The per-class table from the finished class map."""
        hectares = self.cells.hectares
        total = hectares.sum()
        return [
            AreaRow(
                i,
                name,
                colour,
                int(self.class_tiles[i]),
                float(hectares[i]),
                float(100 * hectares[i] / total) if total else 0.0,
                int(self.cells.counts[i]),
            )
            for i, (name, colour) in enumerate(zip(self.card.class_names, self.card.class_colors))
        ]

    def class_map(self) -> ClassMap | None:
        """The finished class map, when the options asked to keep it."""
        if self.class_rows is None:
            return None
        grid = self.grid
        left, top = grid.transform.c, grid.transform.f
        bounds = (left, top - grid.height * grid.cell, left + grid.width * grid.cell, top)
        return ClassMap(np.stack(self.class_rows), bounds, grid.crs_wkt)

    def _check_cancel(self) -> None:
        if self.is_canceled and self.is_canceled():
            raise Cancelled()

    def _drain(self, queue: deque) -> None:
        """Apply every queued item whose predictions are ready, in reading order."""
        while queue:
            head = queue[0]
            if isinstance(head, _RowEnd):
                for classes, confidence in self.cells.finish_through(head.row):
                    if self.raster is not None:
                        self.raster.write_row(classes, confidence)
                    if self.class_rows is not None:
                        self.class_rows.append(classes)
            else:
                needed = int(head.classified.sum())
                if self.batcher.ready < needed:
                    return
                self._apply(head, self.batcher.take(needed))
            queue.popleft()

    def _count_skipped(self, chunk: _Chunk) -> None:
        """Tell apart why the chunk's unclassified tiles were skipped (see ClassifyResult)."""
        skipped = ~chunk.classified
        if not skipped.any():
            return
        inside = self._inside_fraction(chunk.row, chunk.cols[skipped])
        fractions = chunk.valid_fraction[skipped]
        outside = inside < self.options.min_valid_fraction
        self.skipped["outside"] += int(outside.sum())
        self.skipped["nodata"] += int((~outside & (fractions <= 0)).sum())
        self.skipped["few"] += int((~outside & (fractions > 0)).sum())

    def _inside_fraction(self, row: int, cols: np.ndarray) -> np.ndarray:
        """The share of each tile's square that lies on the raster (1 where that cannot be told)."""
        if self._footprint is None:
            info = self.source.info
            try:
                # Only the raster's part within the grid's reach: a world layer (XYZ) projected whole
                # into a UTM zone folds into a polygon that misses the area, and every tile of an
                # offline web layer was then 'mostly outside the raster'.
                near = crs.transform_geometry(shapely.box(*self.grid.reach()), self.grid.crs_wkt, info.crs_wkt)
                part = shapely.intersection(shapely.box(*info.bounds), near)
                self._footprint = crs.transform_geometry(part, info.crs_wkt, self.grid.crs_wkt)
            except InputError:  # a world layer beyond the zone has no outline there: call its tiles nodata
                self._footprint = False
            if self._footprint is not False and not np.isfinite(shapely.total_bounds(self._footprint)).all():
                self._footprint = False
            if self._footprint is not False:
                shapely.prepare(self._footprint)
        if self._footprint is False:
            return np.ones(len(cols))
        boxes = self.grid.tile_boxes(row, cols)
        return shapely.area(shapely.intersection(boxes, self._footprint)) / shapely.area(boxes)

    def _apply(self, chunk: _Chunk, probs: np.ndarray) -> None:
        self._count_skipped(chunk)
        self.tiles_total += len(chunk.cols)
        self.tiles_classified += len(probs)
        self.cells.set_valid(chunk.row, chunk.cols, chunk.cell_valid)
        network = probs.argmax(axis=1)
        if chunk.water_share is not None:
            probs = apply_water_rule(probs, chunk.water_share[chunk.classified], self.water_ids)
        self.cells.add(chunk.row, chunk.cols[chunk.classified], probs)
        order = np.argsort(-probs, axis=1)[:, :2] if len(probs) else np.zeros((0, 2), dtype=int)
        self.class_tiles += np.bincount(order[:, 0], minlength=self.card.num_classes)
        self._count_evidence(chunk, probs, network, order[:, 0])
        if self.vector_sink is not None:
            self.vector_sink.add(self._records(chunk, probs, order, network))

    def _count_evidence(self, chunk: _Chunk, probs: np.ndarray, network: np.ndarray, top: np.ndarray) -> None:
        """Add the chunk's tiles to the evidence: checked, changed by the water rule, doubtful."""
        evidence = self.evidence
        evidence.tiles_classified += len(probs)
        evidence.tiles_doubtful += int((probs.max(axis=1, initial=0.0) < evidence.min_confidence).sum())
        if chunk.water_share is not None:
            evidence.tiles_checked += len(probs)
            evidence.tiles_changed += int((top != network).sum())

    def _records(self, chunk: _Chunk, probs: np.ndarray, order: np.ndarray, network: np.ndarray) -> list[TileRecord]:
        grid, names = self.grid, self.card.class_names
        boxes = grid.tile_boxes(chunk.row, chunk.cols)
        boxes = crs.transform_geometry(
            boxes, grid.crs_wkt, self.output_crs, max_segment=grid.tile_cells * grid.cell / TILE_EDGE_SEGMENTS
        )
        # Python numbers made once per chunk (tolist: float32 -> float exactly, as float() does); the loop picks them.
        exact, rounded, valid = probs.tolist(), _rounded(probs), _rounded(chunk.valid_fraction)
        tops, seconds, networks = order[:, 0].tolist(), order[:, 1].tolist(), network.tolist()
        shares = _shares(chunk)
        records, k = [], 0
        row = int(chunk.row)
        for i, (geometry, col, classified) in enumerate(zip(boxes, chunk.cols.tolist(), chunk.classified.tolist())):
            if classified:
                p, first, second, net = rounded[k], tops[k], seconds[k], networks[k]
                values = [row, col, first, names[first], p[first], second, names[second], p[second], valid[i]]
                # The evidence fields: NULL water_pixels, vegetated_pixels and water_rule without near infrared.
                water, vegetated = shares[i] if shares else (None, None)
                changed = int(net != first) if shares else None
                doubtful = int(exact[k][first] < self.evidence.min_confidence)
                values += [water, vegetated, names[net], changed, doubtful]
                records.append(TileRecord(geometry, values + p))
                k += 1
            else:
                values = [row, col, None, NODATA_NAME, None, None, None, None, valid[i], None, None, None, None, None]
                records.append(TileRecord(geometry, values + [None] * len(names)))
        return records


def _shares(chunk: _Chunk) -> list[tuple[float, float]] | None:
    """Each tile's water_pixels and vegetated_pixels as attribute values; None without near infrared."""
    if chunk.water_share is None:
        return None
    return list(zip(_rounded(chunk.water_share), _rounded(chunk.vegetated_share)))


def _rounded(values: np.ndarray) -> list:
    """``values`` as Python floats rounded to 5 decimals (nested lists for 2-D): the attribute values."""
    if values.ndim == 2:
        return [[round(v, 5) for v in row] for row in values.tolist()]
    return [round(v, 5) for v in values.tolist()]


@dataclass
class _Row:
    sums: np.ndarray  # (width, classes) summed probabilities of the tiles covering each cell
    counts: np.ndarray  # (width,) how many classified tiles cover each cell
    valid: np.ndarray  # (width,) valid fraction of each cell


class _CellMap:
    """The class map on the cell grid, averaged over overlapping tiles, finished row by row."""

    def __init__(self, grid: Grid, num_classes: int) -> None:
        self.grid = grid
        self.num_classes = num_classes
        self.rows: dict[int, _Row] = {}
        self.next_row = grid.rows[0]
        self.hectares = np.zeros(num_classes, dtype=np.float64)
        self.counts = np.zeros(num_classes, dtype=np.int64)  # cells per class in the finished map

    def _row(self, row: int) -> _Row:
        if row not in self.rows:
            self.rows[row] = self._new_row()
        return self.rows[row]

    def _new_row(self) -> _Row:
        width = self.grid.width
        return _Row(np.zeros((width, self.num_classes)), np.zeros(width, np.int32), np.zeros(width))

    def _columns(self, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        index = np.asarray(cols) - self.grid.cols[0]
        keep = (index >= 0) & (index < self.grid.width)
        return index[keep], keep

    def set_valid(self, row: int, cols: np.ndarray, fractions: np.ndarray) -> None:
        """Record the valid fraction of cells (row, cols): each tile's first cell."""
        if self.grid.rows[0] <= row < self.grid.rows[1]:
            index, keep = self._columns(cols)
            self._row(row).valid[index] = fractions[keep]

    def add(self, row: int, cols: np.ndarray, probs: np.ndarray) -> None:
        """Add the probabilities of tiles starting at (row, cols) to every cell they cover."""
        n = self.grid.tile_cells
        sums = np.zeros((self.grid.width, self.num_classes))
        counts = np.zeros(self.grid.width, np.int32)
        for dc in range(n):
            index, keep = self._columns(cols + dc)
            sums[index] += probs[keep]
            counts[index] += 1
        for r in range(max(row, self.grid.rows[0]), min(row + n, self.grid.rows[1])):
            target = self._row(r)
            target.sums += sums
            target.counts += counts

    def finish_through(self, row: int):
        """Yield (class ids, confidence %) for each cell row up to ``row`` not yet finished."""
        last = min(row, self.grid.rows[1] - 1)
        while self.next_row <= last:
            yield self._finish(self.next_row)
            self.next_row += 1

    def _finish(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        data = self.rows.pop(row) if row in self.rows else self._new_row()
        inside = np.zeros(self.grid.width, dtype=bool)
        for start, end in self.grid.cell_intervals(row):
            inside[start - self.grid.cols[0] : end - self.grid.cols[0]] = True
        ok = inside & (data.counts > 0) & (data.valid > 0)
        mean = data.sums / np.maximum(data.counts, 1)[:, None]
        best = mean.argmax(axis=1)
        # Area counts every valid pixel, but a cell is drawn only where at least half of it is
        # valid: at the image edge a cell of a fine stride hangs past the last pixel, and drawing
        # it whole would paint the map beyond the image (the same rounding as a pixel centre).
        drawn = ok & (data.valid >= 0.5)
        classes = np.where(drawn, best, NODATA_CLASS).astype(np.uint8)
        confidence = np.where(drawn, np.rint(100 * mean.max(axis=1)), NODATA_CLASS).astype(np.uint8)
        self.hectares += np.bincount(
            best[ok], weights=data.valid[ok] * self.grid.cell_hectares, minlength=self.num_classes
        )
        self.counts += np.bincount(classes[drawn], minlength=self.num_classes)
        return classes, confidence
