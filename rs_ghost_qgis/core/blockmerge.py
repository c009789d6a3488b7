"""A raster's block files, written by ``blockworker``, into one tile layer and one class map.

Blocks partition the class map (``core.blocks``), so their class GeoTIFFs are pasted side by
side. The tiles of a block's halo were classified by both neighbours alike: each tile
(``tile_row``, ``tile_col``) is written once. Attributes are read by field name, the tile
layer's own (``sinks.tile_fields``), whatever the order a block file keeps them in. The
writers are the sinks' own; ``core.many`` finishes and publishes them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .blocks import Block, BlockPlan
from .classify.sinks import NODATA_CLASS, ClassRasterWriter, FieldSpec, TileRecord, VectorSink

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
    import shapely
    from osgeo import ogr

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
