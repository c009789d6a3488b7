"""One input raster of a classify-many job: its plan of blocks, its output name, what an earlier run did."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import shapely

from ..classify.sinks import check_layers, check_output, layer_name
from ..errors import RsGhostError
from ..options import message_of
from ..outputs import Inputs
from .blocks import Block, BlockPlan, plan_blocks
from .manifest import MANIFEST_FORMAT, WORK


@dataclass
class RasterJob:
    """One input raster: its plan, its finished blocks, its outputs or why it failed."""

    path: str
    key: str = ""
    name: str = ""
    info: object = None
    plan: BlockPlan | None = None
    done: dict = field(default_factory=dict)  # block index -> manifest record
    summary: dict | None = None  # after the merge: tiles and areas per class
    error: str | None = None  # an OptionText where it names options
    warned: bool = False

    @property
    def missing(self) -> list[Block]:
        """The blocks not finished yet."""
        return [block for block in self.plan.blocks if block.index not in self.done] if self.plan else []


def plan_raster(raster: RasterJob, model, options, block_cells: int | None) -> None:
    """Open the raster and cut it into blocks; errors go to raster.error."""
    from ..sources.rasterio_source import RasterioSource

    try:
        with RasterioSource(raster.path) as source:
            raster.info = source.info
        raster.plan = plan_blocks(raster.info, model.card, options.area, options.stride, block_cells)
    except RsGhostError as error:
        raster.error = message_of(error)
        return
    raster.key = fingerprint(raster.path, model.path, options, raster.plan.block_cells)


def assign_names(rasters: list[RasterJob]) -> None:
    """Each planned raster's output name: its file name, or, where names clash, with a tag of its path.

    The tag depends on the path alone, so a raster keeps its outputs whatever the order of the
    inputs. Names differing in case alone clash too (file systems of Windows and macOS).
    """
    planned = [raster for raster in rasters if not raster.error]
    groups: dict[str, list[RasterJob]] = {}
    for raster in planned:
        groups.setdefault(raster.info.name.casefold(), []).append(raster)
    for raster in planned:
        raster.name = raster.info.name if len(groups[raster.info.name.casefold()]) == 1 else _tagged(raster, 8)
    clashes = {raster.name.casefold() for raster in planned if raster.name != raster.info.name} & set(groups)
    for raster in planned:
        if raster.name.casefold() in clashes:  # "a_1234abcd" given as a raster too: a longer tag
            raster.name = _tagged(raster, 16)


def _tagged(raster: RasterJob, digits: int) -> str:
    """The raster's name with the first ``digits`` hex digits of its path's hash."""
    from ..sources.rasterio_source import is_gdal_path

    path = raster.path if is_gdal_path(raster.path) else str(Path(raster.path).resolve())
    return f"{raster.info.name}_{hashlib.sha256(path.encode()).hexdigest()[:digits]}"


def resume(raster: RasterJob, manifest: dict, out: Path, overwrite: bool, inputs: Inputs) -> None:
    """Find what the manifest already holds for the raster; check its outputs may be written."""
    record = manifest.get(raster.key, {})
    work = out / WORK / raster.key
    for index, entry in record.get("blocks", {}).items():
        if (work / f"{index}.gpkg").exists() and (work / f"{index}.tif").exists():
            raster.done[int(index)] = entry
    outputs = (out / f"{raster.name}.gpkg", out / f"{raster.name}.tif")
    merged = record.get("merged")
    # The outputs of the merge on record, under the name this raster has now (not another raster's).
    same_name = bool(merged) and Path(merged["vector"]).name == outputs[0].name
    if same_name and all(path.exists() for path in outputs):
        raster.summary = merged
        # Its block files were removed after the merge: the manifest's word is what counts.
        raster.done = {block.index: record["blocks"].get(str(block.index), {}) for block in raster.plan.blocks}
        return
    # This raster's own files, from an earlier or interrupted merge under the same name.
    ours = same_name or record.get("publishing") in (True, raster.name)
    for path, suffixes, what in ((outputs[0], (".gpkg",), "vector output"), (outputs[1], (".tif",), "raster output")):
        check_output(path, overwrite or ours, suffixes, what, input_path=raster.path, inputs=inputs)
    check_layers(outputs[0], layer_name(raster.info.name), overwrite or ours)  # overwrite replaces ours only


def fingerprint(path: str, model_path: Path, options, block_cells: int) -> str:
    """A key for the raster under these options: a rerun with anything changed starts that raster afresh."""

    def stat(name) -> list:
        with contextlib.suppress(OSError):
            found = os.stat(name)
            return [found.st_size, found.st_mtime_ns]
        return []

    area = options.area
    geometries = [hashlib.sha256(shapely.to_wkb(g)).hexdigest() for g in area.geometries or []]
    payload = {
        "manifest_format": MANIFEST_FORMAT,
        "input": path if "://" in path or path.startswith("/vsi") else str(Path(path).resolve()),
        "input_stat": stat(path),
        "model": str(model_path),
        "model_stat": stat(model_path),
        "stride": options.stride,
        "bands": options.bands,
        "scaling": options.scaling,
        "offset": options.offset,
        "product": options.product,
        "min_valid": options.min_valid_fraction,
        "area": [area.bounds, area.crs_wkt, geometries],
        "block_cells": block_cells,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]
