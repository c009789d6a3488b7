"""Blocks: a raster's tile grid cut into rectangles of cells, each classified on its own.

A block is a rectangle of the grid's cells (``rows`` x ``cols``, grid indices). Running the
engine (``pipeline.classify``) on the block's area gives exactly the cells of the block,
each averaged over every tile that covers it: the engine itself reads the halo, the tiles
that start up to ``tile_cells - 1`` cells before the block and stick into it. Blocks
therefore partition the class map (no cell counted twice or lost), while the tiles of
the halo are classified by both neighbours; the merge keeps one of them (the tile
``(tile_row, tile_col)`` is the same tile in either block).

Block size (``choose_block_cells``): a side of BLOCK_CELLS cells (128: 16,384 tile starts,
about two minutes of one core at ~150 tiles/s), raised to ``HALO_FACTOR * (n - 1)`` cells for
an overlapping stride (n = tile_size / stride cells per tile side) so the halo adds at most
(1 + 1/16)^2 - 1 = 13 % of tiles. Every block must lie on the grid of the whole raster; when
the engine would lay a block's grid differently (a raster across a UTM zone boundary, a
projection true to scale at one end only), the raster is one block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import shapely

from ..classify.grid import Grid, build_grid
from ..model.card import ModelCard
from ..options import Area
from ..sources.source import Bounds, RasterInfo

BLOCK_CELLS = 128  # block side in cells at the default stride
HALO_FACTOR = 16  # block side >= 16 x the halo (n - 1 cells): the halo costs at most 13 % more tiles


@dataclass(frozen=True)
class Block:
    """One rectangle of the grid: cells ``rows`` x ``cols`` (grid indices, [first, end))."""

    index: int
    rows: tuple[int, int]
    cols: tuple[int, int]
    area: Area  # what to pass to classify (in the grid's CRS)
    tiles: int  # tiles its run classifies or skips, halo included


@dataclass
class BlockPlan:
    """A raster's grid and the blocks that cover it."""

    grid: Grid
    blocks: list[Block]
    block_cells: int

    @property
    def tiles(self) -> int:
        """Tiles read over all blocks (halo tiles once per block that reads them)."""
        return sum(block.tiles for block in self.blocks)


def choose_block_cells(tile_cells: int) -> int:
    """The block side in cells for tiles of ``tile_cells`` x ``tile_cells`` cells (see the module docstring)."""
    return max(BLOCK_CELLS, HALO_FACTOR * (tile_cells - 1))


def plan_blocks(
    info: RasterInfo,
    card: ModelCard,
    area: Area | None = None,
    stride: int | None = None,
    block_cells: int | None = None,
) -> BlockPlan:
    """Cut the grid of ``area`` of the raster into blocks of ``block_cells`` cells a side (None = chosen).

    Raises the engine's InputError for an area or stride the engine refuses.
    """
    area = area or Area()
    grid = build_grid(info, card, area, stride)
    side = int(block_cells or choose_block_cells(grid.tile_cells))
    whole = Block(0, grid.rows, grid.cols, area, count_tiles(grid))
    blocks = []
    for top in range(grid.rows[0], grid.rows[1], side):
        for left in range(grid.cols[0], grid.cols[1], side):
            rows, cols = (top, min(top + side, grid.rows[1])), (left, min(left + side, grid.cols[1]))
            block_area = _block_area(grid, rows, cols)
            if block_area is None:
                continue  # no cell of the area in this rectangle (a mask with holes)
            block_grid = build_grid(info, card, block_area, stride)
            if not _same_lattice(block_grid, grid, rows, cols):
                return BlockPlan(grid, [whole], side)
            blocks.append(Block(len(blocks), block_grid.rows, block_grid.cols, block_area, count_tiles(block_grid)))
    if len(blocks) <= 1:
        return BlockPlan(grid, [whole], side)
    return BlockPlan(grid, blocks, side)


def count_tiles(grid: Grid) -> int:
    """Tiles a run over ``grid`` reads: those covering at least one cell of its area."""
    return sum(end - start for row in grid.tile_rows() for start, end in grid.tile_runs(row))


def cell_bounds(grid: Grid, rows: tuple[int, int], cols: tuple[int, int]) -> Bounds:
    """The rectangle of cells ``rows`` x ``cols`` in the grid's CRS."""
    return (
        grid.x0 + cols[0] * grid.cell,
        grid.y0 - rows[1] * grid.cell,
        grid.x0 + cols[1] * grid.cell,
        grid.y0 - rows[0] * grid.cell,
    )


def _block_area(grid: Grid, rows: tuple[int, int], cols: tuple[int, int]) -> Area | None:
    """The block's part of the classified area, in the grid's CRS; None when it holds none of it."""
    box = cell_bounds(grid, rows, cols)
    if grid.area is None:
        return Area(bounds=box, crs_wkt=grid.crs_wkt)
    piece = shapely.intersection(grid.area, shapely.box(*box))
    if shapely.area(piece) <= (1e-6 * grid.cell) ** 2:
        return None
    return Area(geometries=list(shapely.get_parts(piece)), crs_wkt=grid.crs_wkt)


def _same_lattice(block: Grid, grid: Grid, rows: tuple[int, int], cols: tuple[int, int]) -> bool:
    """Whether the engine lays the block's grid on the whole raster's lattice, inside the block."""
    tolerance = 1e-6 * grid.cell
    return (
        block.crs_wkt == grid.crs_wkt
        and block.tile_cells == grid.tile_cells
        and math.isclose(block.cell, grid.cell, rel_tol=1e-9)
        and abs(block.x0 - grid.x0) <= tolerance
        and abs(block.y0 - grid.y0) <= tolerance
        and rows[0] <= block.rows[0] < block.rows[1] <= rows[1]
        and cols[0] <= block.cols[0] < block.cols[1] <= cols[1]
    )
