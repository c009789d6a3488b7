"""A raster's block files, written by ``worker``, into one tile layer and one class map.

Blocks partition the class map (``blocks``), so their class GeoTIFFs are pasted side by
side. The tiles of a block's halo were classified by both neighbours alike: each tile
(``tile_row``, ``tile_col``) is written once. Attributes are read by field name, the tile
layer's own (``sinks.tile_fields``), whatever the order a block file keeps them in. The
writers are the sinks' own; ``merge_blocks`` finishes them and publishes both together.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from osgeo import ogr

from ..classify.evidence import layer_counts
from ..classify.pipeline import nothing_classified
from ..classify.sinks import (
    NODATA_CLASS,
    ClassRasterWriter,
    FieldSpec,
    GeoPackageSink,
    TileRecord,
    VectorSink,
    layer_description,
    layer_name,
    publish_all,
    tile_fields,
)
from ..errors import InputError
from ..model.card import ModelCard
from .blocks import Block, BlockPlan
from .manifest import WORK, append_manifest
from .raster import RasterJob

MERGE_BATCH = 2000  # features per add() while merging


@dataclass
class TileCount:
    """The tiles a merge wrote: each once, and those classified, per class."""

    tiles: int
    by_class: np.ndarray  # (classes,) int64


def class_map_tags(path: Path) -> dict[str, str]:
    """A block GeoTIFF's metadata (the run's, as the engine records it), for the merged outputs."""
    import rasterio

    with rasterio.open(path) as ds:
        return {key: value for key, value in ds.tags().items() if key != "AREA_OR_POINT"}


def copy_tiles(sink: VectorSink, files: list[Path], fields: list[FieldSpec], classes: int) -> TileCount:
    """Add the tiles of the block GeoPackages ``files`` to the open ``sink``, each tile once; count them."""
    at = {spec.name: index for index, spec in enumerate(fields)}
    seen: set[tuple[int, int]] = set()
    by_class = np.zeros(classes, dtype=np.int64)
    for path in files:
        batch = []
        for tile in _read_tiles(path, fields):
            position = (tile.attributes[at["tile_row"]], tile.attributes[at["tile_col"]])
            if position in seen:
                continue  # a halo tile: the neighbour block has it already
            seen.add(position)
            class_id = tile.attributes[at["class_id"]]
            if class_id is not None:
                by_class[class_id] += 1
            batch.append(tile)
            if len(batch) >= MERGE_BATCH:
                sink.add(batch)
                batch = []
        sink.add(batch)
    return TileCount(len(seen), by_class)


def _read_tiles(path: Path, fields: list[FieldSpec]) -> Iterator[TileRecord]:
    """The tiles of a block GeoPackage, their attributes in the order of ``fields`` (found by name)."""
    ds = ogr.Open(str(path))
    layer = ds.GetLayer(0)
    indices = [layer.GetLayerDefn().GetFieldIndex(spec.name) for spec in fields]
    for feature in layer:
        values = [feature.GetField(i) if feature.IsFieldSetAndNotNull(i) else None for i in indices]
        yield TileRecord(shapely.from_wkb(bytes(feature.GetGeometryRef().ExportToIsoWkb())), values)
    layer = ds = None  # closes the file before the next block's


def paste_class_maps(writer: ClassRasterWriter, plan: BlockPlan, files: dict[int, Path]) -> None:
    """Write the class map row by row from the block GeoTIFFs ``files`` (by block index), one band of blocks at a time.

    Cells of blocks without a file (none classified) stay nodata.
    """
    grid, side = plan.grid, plan.block_cells
    for top in range(grid.rows[0], grid.rows[1], side):
        bottom = min(top + side, grid.rows[1])
        band = np.full((2, bottom - top, grid.width), NODATA_CLASS, dtype=np.uint8)
        for block in plan.blocks:
            if block.index in files and top <= block.rows[0] < bottom:
                _paste(band, block, files[block.index], top, grid.cols[0])
        for row in range(band.shape[1]):
            writer.write_row(band[0, row], band[1, row])


def _paste(band: np.ndarray, block: Block, path: Path, top: int, left: int) -> None:
    """Copy one block's class GeoTIFF into ``band``, whose first row is grid row ``top`` and column ``left``."""
    import rasterio

    with rasterio.open(path) as ds:
        data = ds.read()
    r, c = block.rows[0] - top, block.cols[0] - left
    band[:, r : r + data.shape[1], c : c + data.shape[2]] = data


def merge_blocks(raster: RasterJob, card: ModelCard, out: Path, min_valid: float) -> dict:
    """Merge the raster's block files into DIR/<name>.gpkg and DIR/<name>.tif; return its summary.

    Halo tiles, classified by two blocks alike, are written once. Both files are finished and
    checked under temporary names, then published together (or neither).
    """
    if len(raster.plan.blocks) == 1 and raster.done[0].get("whole"):
        return _publish_whole(raster, card, out)
    # A block without a classified tile adds nodata to the class map, which is where the merge starts.
    with_classes = [block for block in raster.plan.blocks if raster.done[block.index]["tiles_classified"]]
    if not with_classes:
        raise InputError(nothing_classified(raster.info.name, min_valid))
    count = _write_merged(raster, card, out, with_classes)
    records = [raster.done[block.index] for block in with_classes]
    counts = {
        "tiles_total": count.tiles,
        "tiles_classified": int(count.by_class.sum()),
        "tiles_by_class": count.by_class,
        "cells": np.sum([record["cells"] for record in records], axis=0),
        "hectares": np.sum([record["hectares"] for record in records], axis=0),
    }
    return _summary(raster, card, out, counts)


def _write_merged(raster: RasterJob, card: ModelCard, out: Path, with_classes: list[Block]) -> TileCount:
    """Write the merged tile layer and class map, record them as being published, publish them."""
    grid, work = raster.plan.grid, out / WORK / raster.key
    metadata = class_map_tags(work / f"{with_classes[0].index}.tif")
    vector = GeoPackageSink(
        out / f"{raster.name}.gpkg", layer_name(raster.info.name), layer_description(metadata), metadata
    )
    writer = None
    try:
        vector.open(tile_fields(card), raster.info.crs_wkt)
        blocks = [work / f"{block.index}.gpkg" for block in raster.plan.blocks]
        count = copy_tiles(vector, blocks, tile_fields(card), card.num_classes)
        writer = ClassRasterWriter(
            out / f"{raster.name}.tif", card, grid.crs_wkt, grid.transform, grid.width, grid.height, metadata
        )
        paste_class_maps(writer, raster.plan, {block.index: work / f"{block.index}.tif" for block in with_classes})
        finished = [vector.finish(), writer.finish()]
        append_manifest(out, {"key": raster.key, "publishing": raster.name})  # from here on, the outputs are ours
        # Existing outputs were refused before any work unless overwriting (or this job's own).
        publish_all(finished, overwrite=True)
    except BaseException:
        vector.abort()
        if writer is not None:
            writer.abort()
        raise
    return count


def _publish_whole(raster: RasterJob, card: ModelCard, out: Path) -> dict:
    """A raster of one block: its files, written and checked by the engine, are published as they are."""
    record, work = raster.done[0], out / WORK / raster.key
    append_manifest(out, {"key": raster.key, "publishing": raster.name})
    publish_all(
        [(work / "0.gpkg", out / f"{raster.name}.gpkg"), (work / "0.tif", out / f"{raster.name}.tif")],
        overwrite=True,
    )
    return _summary(raster, card, out, record)


def _summary(raster: RasterJob, card: ModelCard, out: Path, counts: dict) -> dict:
    """A merged raster's record: its outputs, and its tiles, cells and hectares per class.

    ``counts`` has the keys of a block's manifest record: tiles_total, tiles_classified, and
    per class tiles_by_class, cells and hectares. ``evidence`` counts the published tiles the
    water rule changed and those marked doubtful (core/classify/evidence.py).
    """
    return {
        "input": raster.path,
        "vector": str(out / f"{raster.name}.gpkg"),
        "evidence": layer_counts(out / f"{raster.name}.gpkg"),
        "raster": str(out / f"{raster.name}.tif"),
        "tiles_total": counts["tiles_total"],
        "tiles_classified": counts["tiles_classified"],
        "classes": [
            {
                "class_name": name,
                "tiles": int(counts["tiles_by_class"][i]),
                "cells": int(counts["cells"][i]),
                "hectares": float(counts["hectares"][i]),
            }
            for i, name in enumerate(card.class_names)
        ],
    }
