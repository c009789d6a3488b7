"""What a classification run produced: the area table, the class map kept in memory, the result."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..model.card import ModelCard
from ..radiometry.plan import Radiometry
from .evidence import Evidence


@dataclass
class ClassMap:
    """The finished class map in memory: class ids per cell (NODATA_CLASS where none), with its place."""

    classes: np.ndarray  # (rows, cols) uint8
    bounds: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax in crs_wkt
    crs_wkt: str  # the grid's CRS


@dataclass
class AreaRow:
    """One class in the area table: tiles whose top class it is, and its cells and area in the class map.

    With overlapping tiles (stride below the tile size) a class can lead some tiles yet win no
    cell of the averaged map: ``cells`` and ``hectares`` follow the map. ``cells`` counts the
    drawn cells; ``hectares`` counts every valid pixel, also those of edge cells too little inside
    the image to be drawn.
    """

    class_id: int
    class_name: str
    color: str
    tiles: int
    hectares: float
    percent: float
    cells: int = 0

    @property
    def found(self) -> bool:
        """Whether the run found this class at all (as a tile's top class or in the map)."""
        return self.tiles > 0 or self.cells > 0


@dataclass
class ClassifyResult:
    """What a run produced and how it was configured."""

    out_vector: str | None
    out_raster: str | None
    areas: list[AreaRow]
    tiles_total: int
    tiles_classified: int
    tiles_nodata: int
    bands_used: list[int]
    scaling_used: str
    provider: str
    seconds: float
    card: ModelCard
    bands_note: str = ""  # how the bands were chosen, with the option that changes them
    warnings: list[str] = field(default_factory=list)  # what to check about bands and scaling
    radiometry: Radiometry | None = None  # the mapping the model's input went through
    # Why tiles were not classified (they add up to tiles_nodata): mostly outside the raster,
    # without any valid pixel (nodata, NaN, alpha), or with some but below min_valid_fraction.
    tiles_outside: int = 0
    tiles_no_data: int = 0
    tiles_few_valid: int = 0
    min_valid_fraction: float = 0.5
    overlapping: bool = False  # stride below the tile size: the map averages overlapping tiles
    class_map: ClassMap | None = None  # with ClassifyOptions.keep_class_map
    evidence: Evidence | None = None  # what the near-infrared check did, and the doubtful tiles

    def summary_table(self) -> str:
        """The area table as fixed-width text (read it in a monospace font), with totals and skipped tiles."""
        width = max([len("class")] + [len(a.class_name) for a in self.areas])
        cells = self.overlapping  # overlapping tiles: the map's cells are what the hectares count
        head = f"{'class':<{width}}  {'tiles':>7}  " + (f"{'cells':>9}  " if cells else "")
        lines = [head + f"{'hectares':>11}  {'percent':>7}"]
        for a in self.areas:
            middle = f"{a.cells:>9,}  " if cells else ""
            lines.append(f"{a.class_name:<{width}}  {a.tiles:>7,}  {middle}{a.hectares:>11,.1f}  {a.percent:>7.1f}")
        total_ha = sum(a.hectares for a in self.areas)
        middle = f"{sum(a.cells for a in self.areas):>9,}  " if cells else ""
        lines.append(
            f"{'total':<{width}}  {self.tiles_classified:>7,}  {middle}{total_ha:>11,.1f}  "
            f"{100.0 if total_ha else 0.0:>7.1f}"
        )
        if cells:
            lines.append(
                "tiles overlap: 'tiles' counts each tile's top class, 'cells' and hectares the averaged class map "
                "(a class can lead some tiles and no cell)"
            )
        lines.append(self.skipped_line())
        lines += self.evidence.lines() if self.evidence is not None else []
        return "\n".join(lines)

    def skipped_line(self) -> str:
        """Why tiles were not classified, told apart: outside the raster, nodata, too few valid pixels."""
        if not self.tiles_nodata:
            return f"not classified: 0 of {self.tiles_total:,} tiles"
        return (
            f"not classified: {self.tiles_nodata:,} of {self.tiles_total:,} tiles: "
            f"{self.tiles_outside:,} mostly outside the raster, {self.tiles_no_data:,} nodata, "
            f"{self.tiles_few_valid:,} below {self.min_valid_fraction:.0%} valid pixels"
        )
