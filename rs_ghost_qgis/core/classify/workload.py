"""How big a run is before it starts: tiles, ground area, time; the limits every face applies.

One rule for the dialog, Processing and the command line: estimate the tile count from the
grid and the time from the model's measured speed; ask before a long run (the dialog
confirms above CONFIRM_SECONDS); refuse a web layer (XYZ, WMS, WMTS) beyond WEB_MAX_KM2,
because its pixels are downloaded tile by tile from a server made for viewing maps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import shapely

from ..errors import InputError
from ..model.card import ModelCard
from ..sources.source import RasterInfo
from .grid import Grid, build_grid

# A card without a measured speed: assume a VGG-16-sized model on a 2-core laptop CPU (the
# project's teacher ran at 23 tiles/s there); an estimate that is too long is the safe error.
DEFAULT_TILES_PER_S = 20.0
CONFIRM_SECONDS = 300.0  # the dialog asks before a run estimated to take longer than 5 minutes
# 50 x 50 km: at 10 m that is 25 million pixels, some 400 web tiles of 256 px at zoom 14 - a
# large but reasonable download. Beyond it, export the imagery to a GeoTIFF first.
WEB_MAX_KM2 = 2_500.0


@dataclass(frozen=True)
class Workload:
    """The estimated size of one run."""

    tiles: int
    km2: float
    tiles_per_s: float
    speed_note: str  # where the speed comes from

    @property
    def seconds(self) -> float:
        """Estimated run time (model only: reading and web downloads come on top)."""
        return self.tiles / self.tiles_per_s

    def describe(self) -> str:
        """One line: tiles, area and time, e.g. 'about 1,234 tiles over 505 km², about 7 s (...)'."""
        return (
            f"about {self.tiles:,} tiles over {self.km2:,.0f} km², about {_duration(self.seconds)} "
            f"at {self.tiles_per_s:,.0f} tiles/s ({self.speed_note})"
        )


def estimate(grid: Grid, card: ModelCard) -> Workload:
    """The run's size from its grid: every tile covering a cell of the area, at the card's speed."""
    n = grid.tile_cells
    fraction = 1.0
    if grid.area is not None:  # a mask or reprojected box: the share of its envelope it fills
        envelope = shapely.area(shapely.box(*grid.area.bounds))
        fraction = shapely.area(grid.area) / envelope if envelope > 0 else 1.0
    tiles = round((grid.height + n - 1) * (grid.width + n - 1) * fraction)
    km2 = grid.height * grid.width * fraction * grid.cell_m * grid.cell_m / 1e6
    speed, note = card_speed(card)
    return Workload(tiles=max(tiles, 1), km2=km2, tiles_per_s=speed, speed_note=note)


def plan(info: RasterInfo, card: ModelCard, area=None, stride: int | None = None) -> Workload:
    """Estimate a run over ``area`` of the raster before it starts; refuse what ``check`` refuses.

    Raises InputError for everything ``build_grid`` refuses (area outside, bad stride) too.
    """
    size = estimate(build_grid(info, card, area, stride), card)
    check(size, info)
    return size


def card_speed(card: ModelCard) -> tuple[float, str]:
    """Tiles per second from the card's metrics (the slowest measured), else DEFAULT_TILES_PER_S."""
    speeds = list(_speeds(card.metrics))
    if speeds:
        return min(speeds), "the slowest CPU speed measured in the model card"
    return DEFAULT_TILES_PER_S, "a conservative guess: the model card has no measured speed"


def check(workload: Workload, info: RasterInfo) -> None:
    """Refuse a web layer area beyond WEB_MAX_KM2, saying why and what to do instead."""
    if info.web and workload.km2 > WEB_MAX_KM2:
        raise InputError(
            f"'{info.name}' is a web layer and the area covers {workload.km2:,.0f} km² ({workload.tiles:,} tiles); "
            f"web layers are limited to {WEB_MAX_KM2:,.0f} km² (50 x 50 km), because every pixel is downloaded "
            "from a map server made for viewing, at the model's resolution. Zoom in and use 'Current map extent', "
            "choose a smaller extent or mask, or save the imagery as a GeoTIFF first."
        )


def _speeds(metrics: Mapping):
    """Every tiles/s figure in the card's metrics, however nested (e.g. int8_tiles_per_s.threads_1)."""
    for key, value in metrics.items():
        if isinstance(value, Mapping):
            inner = list(_speeds(value))
            if "tiles_per_s" in key:
                inner += [float(v) for v in value.values() if _positive(v)]
            yield from inner
        elif "tiles_per_s" in key and _positive(value):
            yield float(value)


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:,.0f} days"
