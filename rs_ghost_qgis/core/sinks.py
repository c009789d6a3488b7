"""Where results go: a vector sink for the tiles and a GeoTIFF writer for the class map.

Vector sinks share one small interface so the QGIS Processing algorithm can plug in a
QgsFeatureSink adapter; the command line uses GeoPackageSink.

- FieldSpec: one attribute column, ``name`` and ``kind`` ("int", "float" or "str").
- TileRecord: one tile. ``geometry`` is a shapely Polygon in the CRS given to ``open``
  (``wkb`` gives it as ISO WKB bytes, e.g. for ``QgsGeometry.fromWkb``); ``attributes``
  is a list in the order of the fields, None for NULL.
- VectorSink: ``open(fields, crs_wkt)`` once, ``add(records)`` per batch, then
  ``commit()`` on success or ``abort()`` on failure or cancel (which must leave nothing).

Files are written under a hidden temporary name next to the target and moved into place by
``commit``, so a failed or cancelled run never leaves a half-written output.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import rasterio
import shapely
from osgeo import gdal, ogr
from rasterio.errors import RasterioError
from rasterio.windows import Window

from .atomic import remove_stale_parts, temporary_path
from .crs import srs_from_wkt
from .errors import OutputError
from .modelcard import ModelCard

NODATA_CLASS = 255
NODATA_NAME = "nodata"
COMMIT_EVERY = 20_000  # features per GeoPackage transaction


@dataclass(frozen=True)
class FieldSpec:
    """One attribute column: ``kind`` is "int", "float" or "str"."""

    name: str
    kind: str


@dataclass
class TileRecord:
    """One tile's polygon and attribute values (in field order; None = NULL)."""

    geometry: shapely.Polygon
    attributes: list

    @property
    def wkb(self) -> bytes:
        """The geometry as ISO WKB."""
        return shapely.to_wkb(self.geometry, flavor="iso")


class VectorSink(Protocol):
    """Receives the tiles of one run; see the module docstring."""

    def open(self, fields: list[FieldSpec], crs_wkt: str) -> None:
        """Prepare to receive features with these fields in this CRS."""
        ...

    def add(self, tiles: list[TileRecord]) -> None:
        """Receive a batch of tiles."""
        ...

    def commit(self) -> None:
        """Finish: make the output visible."""
        ...

    def abort(self) -> None:
        """Give up: leave nothing behind."""
        ...


PROB_PREFIX = "prob_"  # per-class probability fields: prob_<class>


def tile_fields(card: ModelCard) -> list[FieldSpec]:
    """The attribute columns of the tile layer for a model (fixed before the run starts).

    tile_row, tile_col (grid position), class_id (NULL for nodata tiles), class_name
    ('nodata' for them), confidence (top probability), second_class_id, second_class,
    second_confidence, valid_fraction, then one prob_<class> per class.
    """
    fields = [
        FieldSpec("tile_row", "int"),
        FieldSpec("tile_col", "int"),
        FieldSpec("class_id", "int"),
        FieldSpec("class_name", "str"),
        FieldSpec("confidence", "float"),
        FieldSpec("second_class_id", "int"),
        FieldSpec("second_class", "str"),
        FieldSpec("second_confidence", "float"),
        FieldSpec("valid_fraction", "float"),
    ]
    return fields + [FieldSpec(name, "float") for name in probability_fields(card)]


def probability_fields(card: ModelCard) -> list[str]:
    """``prob_<class>`` column names: lower case, letters, digits and underscores, unique."""
    names: list[str] = []
    for index, class_name in enumerate(card.class_names):
        name = PROB_PREFIX + (re.sub(r"[^0-9a-zA-Z]+", "_", class_name).strip("_").lower() or str(index))
        names.append(name if name not in names else f"{name}_{index}")
    return names


def check_output(
    path: str | os.PathLike, overwrite: bool, suffixes: tuple[str, ...], what: str, input_path: str = ""
) -> Path:
    """Check early that ``path`` can be written: right type, not the input, folder writable, not in the way.

    Also removes the temporaries that runs killed before their cleanup left in that folder.
    """
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise OutputError(f"The {what} must be a {' or '.join(suffixes)} file, not {path.name}.")
    if path.is_dir():
        raise OutputError(f"The {what} {path} is a folder; give a file name.")
    if _same_file(path, input_path):
        raise OutputError(
            f"The {what} {path} is the input raster; writing it would replace the input. Choose another file name."
        )
    if path.exists() and not overwrite:
        raise OutputError(f"{path} already exists; pass --overwrite to replace it, or choose another file name.")
    probe = temporary_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe.touch()
        probe.unlink()
    except OSError as error:
        raise OutputError(f"Cannot write the {what} into {path.parent}: {error.strerror or error}.") from None
    remove_stale_parts(path.parent)
    return path


def _same_file(path: Path, other: str) -> bool:
    """Whether ``path`` and ``other`` name one existing file (through links and relative paths too)."""
    try:
        return bool(other) and os.path.samefile(path, other)
    except OSError:  # either does not exist
        return False


def publish(tmp: Path, path: Path) -> None:
    """Move a finished temporary file onto its final name."""
    try:
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"Cannot move the finished output to {path}: {error.strerror or error}.") from None


class GeoPackageSink:
    """Writes tiles to a one-layer GeoPackage; ``metadata`` is stored on the layer."""

    _KINDS = {"int": ogr.OFTInteger, "float": ogr.OFTReal, "str": ogr.OFTString}

    def __init__(self, path: str | os.PathLike, layer_name: str, description: str, metadata: dict[str, str]) -> None:
        self.path = Path(path)
        self.layer_name = layer_name
        self.description = description
        self.metadata = metadata
        self._tmp: Path | None = None
        self._ds = None
        self._layer = None
        self._pending = 0

    def open(self, fields: list[FieldSpec], crs_wkt: str) -> None:
        """Create the temporary GeoPackage and its layer."""
        self._tmp = temporary_path(self.path)
        # osgeo's exception mode is process-wide and QGIS plugins share the process, so this
        # module never switches it: failures are checked both ways.
        try:
            self._ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(self._tmp))
            if self._ds is not None:
                self._layer = self._ds.CreateLayer(
                    self.layer_name,
                    srs=srs_from_wkt(crs_wkt),
                    geom_type=ogr.wkbPolygon,
                    options=[f"DESCRIPTION={self.description}"],
                )
            if self._layer is None:
                raise RuntimeError(gdal.GetLastErrorMsg() or "GDAL could not create it")
            for spec in fields:
                if self._layer.CreateField(ogr.FieldDefn(spec.name, self._KINDS[spec.kind])) != 0:
                    raise RuntimeError(f"field {spec.name}: {gdal.GetLastErrorMsg()}")
            self._layer.StartTransaction()
        except RuntimeError as error:
            self.abort()
            raise OutputError(f"Cannot create the GeoPackage {self.path}: {error}.") from None

    def add(self, tiles: list[TileRecord]) -> None:
        """Append features; commits every COMMIT_EVERY features to keep the journal small."""
        definition = self._layer.GetLayerDefn()
        for tile in tiles:
            feature = ogr.Feature(definition)
            feature.SetGeometry(ogr.CreateGeometryFromWkb(tile.wkb))
            for index, value in enumerate(tile.attributes):
                if value is None:
                    feature.SetFieldNull(index)
                else:
                    feature.SetField(index, value)
            if self._layer.CreateFeature(feature) != 0:
                raise OutputError(f"Cannot write to {self.path}: {gdal.GetLastErrorMsg() or 'GDAL error'}.")
        self._pending += len(tiles)
        if self._pending >= COMMIT_EVERY:
            self._layer.CommitTransaction()
            self._layer.StartTransaction()
            self._pending = 0

    def commit(self) -> None:
        """Finish the layer, record the metadata and move the file into place."""
        self._layer.CommitTransaction()
        self._layer.SetMetadata(self.metadata)
        self._layer = None
        self._ds = None  # closes the file
        publish(self._tmp, self.path)
        self._tmp = None

    def abort(self) -> None:
        """Close and delete the temporary file."""
        self._layer = None
        self._ds = None
        if self._tmp is not None:
            for leftover in (
                self._tmp,
                Path(f"{self._tmp}-journal"),
                Path(f"{self._tmp}-wal"),
                Path(f"{self._tmp}-shm"),
            ):
                leftover.unlink(missing_ok=True)
            self._tmp = None


class ClassRasterWriter:
    """Writes the class map as a GeoTIFF, one row at a time, under a temporary name.

    Band 1: class id (uint8, the card's colour table, nodata 255). Band 2: confidence in
    percent (uint8, 0..100, nodata 255). One data type for both bands, as GeoTIFF requires.
    """

    def __init__(
        self, path: str | os.PathLike, card: ModelCard, crs_wkt: str, transform, width: int, height: int, tags: dict
    ) -> None:
        self.path = Path(path)
        self._tmp = temporary_path(self.path)
        self._rows: list[np.ndarray] = []
        self._next_row = 0
        try:
            self._ds = rasterio.open(
                self._tmp,
                "w",
                driver="GTiff",
                width=width,
                height=height,
                count=2,
                dtype="uint8",
                crs=crs_wkt,
                transform=transform,
                nodata=NODATA_CLASS,
                compress="deflate",
                tiled=width >= 256 and height >= 256,
            )
        except RasterioError as error:
            raise OutputError(f"Cannot create the GeoTIFF {self.path}: {error}.") from None
        self._ds.write_colormap(1, _colour_table(card))
        self._ds.set_band_description(1, "class")
        self._ds.set_band_description(2, "confidence_percent")
        self._ds.update_tags(**tags)
        self._ds.update_tags(1, **{f"CLASS_{i}": name for i, name in enumerate(card.class_names)})

    def write_row(self, classes: np.ndarray, confidence: np.ndarray) -> None:
        """Append the next row (uint8 class ids and confidence percent)."""
        self._rows.append(np.stack([classes, confidence]).astype(np.uint8))
        if len(self._rows) >= 256:
            self._flush()

    def commit(self) -> None:
        """Write what is buffered, close, move into place."""
        self._flush()
        self._ds.close()
        publish(self._tmp, self.path)

    def abort(self) -> None:
        """Close and delete the temporary file."""
        self._ds.close()
        self._tmp.unlink(missing_ok=True)

    def _flush(self) -> None:
        if not self._rows:
            return
        block = np.stack(self._rows, axis=1)  # (2, rows, width)
        window = Window(0, self._next_row, block.shape[2], block.shape[1])
        self._ds.write(block, window=window)
        self._next_row += block.shape[1]
        self._rows = []


def _colour_table(card: ModelCard) -> dict[int, tuple[int, int, int, int]]:
    table = {i: (0, 0, 0, 0) for i in range(256)}
    for index, colour in enumerate(card.class_colors):
        table[index] = (int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16), 255)
    return table
