"""Where results go: a vector sink for the tiles and a GeoTIFF writer for the class map.

Vector sinks share one small interface so the QGIS Processing algorithm can plug in a
QgsFeatureSink adapter; the command line uses GeoPackageSink.

- FieldSpec: one attribute column, ``name`` and ``kind`` ("int", "float" or "str").
- TileRecord: one tile. ``geometry`` is a shapely Polygon in the CRS given to ``open``
  (``wkb`` gives it as ISO WKB bytes, e.g. for ``QgsGeometry.fromWkb``); ``attributes``
  is a list in the order of the fields, None for NULL.
- VectorSink: ``open(fields, crs_wkt)`` once, ``add(records)`` per batch, then
  ``commit()`` on success or ``abort()`` on failure or cancel (which must leave nothing).

Files are written under a hidden temporary name next to the target. ``finish`` completes and
checks one (every GDAL/OGR return code, then the file re-opened and read back), and
``publish_all`` moves a run's finished files into place together, so a failed, cancelled or
disk-full run never leaves a half-written output nor half a set of outputs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sqlite3
import traceback
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import shapely
from osgeo import gdal, ogr

from ..atomic import name_too_long, remove_stale_parts, temporary_path
from ..crs import srs_from_wkt
from ..errors import OutputError
from ..model.card import ModelCard
from ..options import OptionText
from ..outputs import Inputs, check_folder, check_not_input, same_file

NODATA_CLASS = 255
NODATA_NAME = "nodata"
COMMIT_EVERY = 20_000  # features per GeoPackage transaction
VERIFY_ROWS = 256  # class-map rows read back per step when a finished GeoTIFF is checked
# Filesystems without hard links (FAT, some network shares): publish_all falls back to a rename.
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS, errno.EXDEV}


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
    second_confidence, valid_fraction; the near-infrared evidence (core/classify/evidence.py, NULL where
    the raster has no near infrared): water_pixels and vegetated_pixels (shares of the tile's
    valid pixels), network_class (the network's own top class) and water_rule (1 where the water
    rule changed it); doubtful (1 below the run's confidence threshold); then one prob_<class>
    per class (after the water rule).
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
        FieldSpec("water_pixels", "float"),
        FieldSpec("vegetated_pixels", "float"),
        FieldSpec("network_class", "str"),
        FieldSpec("water_rule", "int"),
        FieldSpec("doubtful", "int"),
    ]
    return fields + [FieldSpec(name, "float") for name in probability_fields(card)]


def probability_fields(card: ModelCard) -> list[str]:
    """``prob_<class>`` column names: lower case, letters, digits and underscores, unique."""
    names: list[str] = []
    for index, class_name in enumerate(card.class_names):
        name = PROB_PREFIX + (re.sub(r"[^0-9a-zA-Z]+", "_", class_name).strip("_").lower() or str(index))
        names.append(name if name not in names else f"{name}_{index}")
    return names


def layer_name(raster_name: str) -> str:
    """The tile layer of a run on the raster ``raster_name``, the one vector layer of its GeoPackage."""
    return f"{raster_name}_classes"


def layer_description(metadata: dict[str, str]) -> str:
    """The tile layer's description, from a run's metadata (the keys ``pipeline`` records)."""
    return (
        f"Scene classes of {metadata['raster']} by {metadata['architecture']} ({metadata['tile']} tiles). "
        f"Bands: {metadata['bands']}. Scaling: {metadata['scaling']}. Edges: {metadata['edge_policy']}."
    )


def check_output(
    path: str | os.PathLike,
    overwrite: bool,
    suffixes: tuple[str, ...],
    what: str,
    input_path: str = "",
    inputs: Inputs | None = None,
) -> Path:
    """Check early that ``path`` can be written: right type, no input, folder writable, not in the way.

    ``inputs`` names the run's other input files (core/outputs.py), e.g. {"the model ({model})":
    path}: none is ever replaced, whatever ``overwrite`` says. Also removes the temporaries that
    runs killed before their cleanup left in that folder.
    """
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise OutputError(f"The {what} must be a {' or '.join(suffixes)} file, not {path.name}.")
    limit = name_too_long(path)
    if limit is not None:
        raise OutputError(
            f"The {what} name {path.name[:40]}... is {len(path.name.encode())} bytes long; the file system of "
            f"{path.parent} allows at most {limit} bytes per file name. Choose a shorter name."
        )
    if path.is_dir():
        raise OutputError(f"The {what} {path} is a folder; give a file name.")
    if input_path and same_file(path, input_path):
        raise OutputError(
            f"The {what} {path} is the input raster; writing it would replace the input. Choose another file name."
        )
    check_not_input(path, f"the {what}", inputs or {})
    if os.path.lexists(path) and not overwrite:  # a link to nowhere is the user's too
        raise _exists(path)
    check_folder(path, f"the {what}")
    if path.parent.is_dir():
        remove_stale_parts(path.parent)
    return path


def _exists(path: Path) -> OutputError:
    """The one message for an output name that is taken."""
    return OutputError(
        OptionText("{path} already exists; use {overwrite} to replace it, or choose another file name.", path=path)
    )


def other_layers(path: str | os.PathLike, layer_name: str) -> list[str]:
    """What the existing GeoPackage ``path`` holds besides the vector layer ``layer_name`` ([] when nothing).

    Replacing the file would lose all of it: other vector layers (by name), raster tiles
    ("raster NAME"), attribute tables and tables GDAL does not register ("table NAME"), views,
    and the file's own metadata. Read with sqlite3: OGR lists no raster table and does
    not open a raster-only GeoPackage at all, which is how such files were once replaced. A file
    that is no SQLite database holds none of this: [] (``--overwrite`` replaces it like any file).
    OutputError when the file cannot be read: what cannot be seen cannot be kept.
    """
    path = Path(path)
    try:
        if not path.is_file() or not _is_sqlite(path):
            return []
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            return _gpkg_content(db, layer_name)
    except (OSError, sqlite3.Error) as error:
        raise OutputError(
            OptionText(
                "Cannot tell what {path} holds ({reason}), so replacing it could delete layers or tables in it; "
                "choose another file name for {out_vector}.",
                path=path,
                reason=getattr(error, "strerror", None) or error,
            )
        ) from None


def _is_sqlite(path: Path) -> bool:
    """Whether ``path`` is an SQLite database, as every GeoPackage is (by its 16-byte header)."""
    with path.open("rb") as file:
        return file.read(16) == b"SQLite format 3\x00"


def _gpkg_content(db: sqlite3.Connection, layer_name: str) -> list[str]:
    """The tables, views and metadata of an open GeoPackage that do not belong to the vector layer ``layer_name``."""
    tables = dict(db.execute("SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view')").fetchall())
    found: list[str] = []
    registered = {layer_name}
    if "gpkg_contents" in tables:
        for name, kind in db.execute("SELECT table_name, data_type FROM gpkg_contents ORDER BY table_name"):
            registered.add(name)
            if (name, kind) != (layer_name, "features"):
                found.append(_GPKG_KINDS.get(kind, f"{kind} ") + name)
    # Tables outside gpkg_contents (QGIS's layer_styles, other programs' own); GeoPackage's and
    # SQLite's system tables and each layer's spatial index belong to the file or to a layer.
    found += [
        f"{kind} {name}"
        for name, kind in sorted(tables.items())
        if name not in registered and not name.startswith(("gpkg_", "sqlite_", "rtree_"))
    ]
    if "gpkg_metadata" in tables and _file_metadata(db, "gpkg_metadata_reference" in tables):
        found.append("the file's metadata")
    return found


_GPKG_KINDS = {"features": "", "tiles": "raster ", "2d-gridded-coverage": "raster ", "attributes": "table "}


def _file_metadata(db: sqlite3.Connection, referenced: bool) -> bool:
    """Whether the GeoPackage holds metadata about the whole file, or about no table at all.

    Metadata about a table goes with it: the table is listed already, or is the layer this run writes.
    """
    if not referenced:
        return db.execute("SELECT EXISTS (SELECT 1 FROM gpkg_metadata)").fetchone()[0] == 1
    query = (
        "SELECT EXISTS (SELECT 1 FROM gpkg_metadata WHERE id NOT IN "
        "(SELECT md_file_id FROM gpkg_metadata_reference WHERE table_name IS NOT NULL)) "
        "OR EXISTS (SELECT 1 FROM gpkg_metadata_reference WHERE table_name IS NULL)"
    )
    return db.execute(query).fetchone()[0] == 1


def check_layers(path: str | os.PathLike, layer_name: str, overwrite: bool) -> None:
    """Refuse to overwrite a GeoPackage holding anything besides ``layer_name``: replacing the file would drop it.

    See other_layers for what counts: other vector layers, raster tables, attribute tables, metadata.
    """
    others = other_layers(path, layer_name) if overwrite else []
    if others:
        raise OutputError(
            OptionText(
                "{path} holds other layers ({others}) that {overwrite} would delete with the file; choose another "
                "file name for {out_vector}.",
                path=path,
                others=short_list(others),
            )
        )


def short_list(names: list[str], most: int = 6) -> str:
    """``names`` joined by commas, the first ``most`` of them and how many more."""
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def without_statement(reason: str) -> str:
    """GDAL's words without the SQL it echoes: "sqlite3_exec(CREATE TABLE ...) failed: why" is "why"."""
    return re.sub(r"sqlite3_exec\(.*\) failed: ", "", reason, flags=re.DOTALL)


def write_failed(what: str, path: Path, reason: object) -> OutputError:
    """The one message for an output that could not be written completely."""
    reason = without_statement(str(reason)).strip().rstrip(".") or "GDAL error"
    return OutputError(
        f"Cannot write the {what} {path}: {reason} (disk full or folder not writable?). "
        f"No output was written; an existing {path.name} was left as it was."
    )


def publish(tmp: Path, path: Path, overwrite: bool = True) -> None:
    """Move one finished temporary file onto its final name (see publish_all)."""
    publish_all([(tmp, path)], overwrite)


def publish_all(finished: list[tuple[Path, Path]], overwrite: bool) -> None:
    """Move finished temporaries onto their final names together: all of them, or on any failure none.

    The existence check of check_output ran at the start; another run may have written a file
    since, so without ``overwrite`` each name is claimed atomically here (a hard link fails if
    the name exists). With it, an earlier file is kept under a hidden name until every output
    is in place and put back if one fails. The temporaries are gone afterwards either way.
    """
    placed: list[tuple[Path, Path | None]] = []  # (final path, hidden copy of the earlier file or None)
    try:
        for tmp, path in finished:
            placed.append((path, _place(tmp, path, overwrite)))
    except BaseException as error:  # Ctrl-C too: never leave half a set of outputs
        for path, backup in reversed(placed):
            _undo(path, backup)
        for tmp, _ in finished:
            tmp.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise OutputError(
                f"Cannot move the finished output to {error.filename}: {error.strerror or error}; "
                "no output was written."
            ) from None
        raise
    for _, backup in placed:
        if backup is not None:
            backup.unlink(missing_ok=True)


def _place(tmp: Path, path: Path, overwrite: bool) -> Path | None:
    """Put ``tmp`` at ``path``; return the hidden copy of the file it replaced, if any."""
    if not overwrite:
        _claim(tmp, path)
        return None
    backup = None
    if path.exists():
        backup = temporary_path(path)  # a crash leaves it as a stale part, removed by a later run
        _link_or_rename(path, backup)
    try:
        os.replace(tmp, path)
    except BaseException:
        _undo(path, backup, ours=False)
        raise
    return backup


def _claim(tmp: Path, path: Path) -> None:
    """Give ``tmp`` the name ``path`` only if no file has it (atomically where hard links exist)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise OutputError(
            OptionText(
                "{path} was created by someone else while this run was writing; use {overwrite} to replace "
                "it, or choose another file name. No output was written.",
                path=path,
            )
        ) from None
    except OSError as error:
        if error.errno not in _NO_LINKS:
            raise
        if path.exists():  # no atomic claim possible here: the best check there is
            raise _exists(path) from None
        os.replace(tmp, path)
        return
    tmp.unlink()


def _link_or_rename(path: Path, backup: Path) -> None:
    """Keep the file at ``path`` under ``backup`` too (a hard link leaves ``path`` in place meanwhile)."""
    try:
        os.link(path, backup)
    except OSError as error:
        if error.errno not in _NO_LINKS:
            raise
        os.replace(path, backup)


def _undo(path: Path, backup: Path | None, ours: bool = True) -> None:
    """Put the earlier file back at ``path``, or remove what this run put there."""
    if backup is not None:
        os.replace(backup, path)
    elif ours:
        path.unlink(missing_ok=True)


def _gdal_check(code: object) -> None:
    """Raise RuntimeError when a GDAL/OGR call failed, whether it said so by return code or error state.

    Call gdal.ErrorReset() before the call; in GDAL's exception mode the call raises by itself.
    """
    if code not in (0, None) or gdal.GetLastErrorType() >= gdal.CE_Failure:
        raise RuntimeError(gdal.GetLastErrorMsg() or f"GDAL error {code}")


def _drop_frames(error: BaseException) -> str:
    """The error's words, with the frames of its traceback cleared.

    Those frames hold GDAL datasets and layers; once cleared, a writer's abort really closes its
    file (a full disk's last errors come at close, and Windows cannot delete an open file).
    """
    traceback.clear_frames(error.__traceback__)
    return str(error)


def _gdal_call(method, *args) -> None:
    """Call a GDAL/OGR method from a clean error state and raise RuntimeError if it failed (see _gdal_check)."""
    gdal.ErrorReset()
    _gdal_check(method(*args))


# The setters osgeo's Feature.SetField calls for these exact types (a bool, a numpy number: SetField).
_SETTERS = {int: ogr.Feature.SetFieldInteger64, str: ogr.Feature.SetFieldString}


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
        self._count = 0  # features written, checked when the file is re-opened

    def open(self, fields: list[FieldSpec], crs_wkt: str) -> None:
        """Create the temporary GeoPackage and its layer."""
        self._tmp = temporary_path(self.path)
        # osgeo's exception mode is process-wide and QGIS plugins share the process, so this
        # module never switches it: failures are checked both ways.
        try:
            with _quiet_gdal(), _journal_in_memory():  # GDAL's message goes into the error raised, not onto stderr
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
                    _gdal_call(self._layer.CreateField, ogr.FieldDefn(spec.name, self._KINDS[spec.kind]))
                _gdal_call(self._layer.StartTransaction)
        except RuntimeError as error:
            reason = without_statement(_drop_frames(error))
            self.abort()
            raise OutputError(f"Cannot create the GeoPackage {self.path}: {reason}.") from None

    def add(self, tiles: list[TileRecord]) -> None:
        """Append features; commits every COMMIT_EVERY features to keep the journal small."""
        definition = self._layer.GetLayerDefn()
        # The hot path's writer: one WKB conversion per batch, and the typed setters (what
        # SetField picks for an int or a str, without its dispatch); other values go through SetField.
        geometries = shapely.to_wkb([tile.geometry for tile in tiles], flavor="iso")
        try:
            with _quiet_gdal():  # GDAL's message goes into the error raised, not onto stderr
                for tile, wkb in zip(tiles, geometries):
                    feature = ogr.Feature(definition)
                    feature.SetGeometryDirectly(ogr.CreateGeometryFromWkb(wkb))
                    for index, value in enumerate(tile.attributes):
                        if value is None:
                            feature.SetFieldNull(index)
                        else:
                            _SETTERS.get(type(value), ogr.Feature.SetField)(feature, index, value)
                    _gdal_call(self._layer.CreateFeature, feature)
                self._count += len(tiles)
                self._pending += len(tiles)
                if self._pending >= COMMIT_EVERY:
                    self._commit_transaction()
                    _gdal_call(self._layer.StartTransaction)
                    self._pending = 0
        except RuntimeError as error:
            raise write_failed("GeoPackage", self.path, _drop_frames(error)) from None

    def commit(self) -> None:
        """Finish and move the file into place (publish_all with other outputs does both steps together)."""
        publish(*self.finish())
        self._tmp = None

    def finish(self) -> tuple[Path, Path]:
        """Complete the temporary GeoPackage and check it re-opens whole; return (temporary, final path)."""
        try:
            with _quiet_gdal():  # GDAL's message goes into the error raised, not onto stderr
                self._commit_transaction()
                _gdal_call(self._layer.SetMetadata, self.metadata)
                _gdal_call(self._layer.SyncToDisk)
                self._layer = None
                gdal.ErrorReset()
                self._ds = None  # closes the file; GDAL 3.6 reports a failed close only in its error state
                _gdal_check(0)
                self._verify()
        except RuntimeError as error:
            raise write_failed("GeoPackage", self.path, _drop_frames(error)) from None
        return self._tmp, self.path

    def _commit_transaction(self) -> None:
        _gdal_call(self._layer.CommitTransaction)

    def _verify(self) -> None:
        """Re-open the temporary file: our layer must be there with every feature written.

        SQLite counts the rows of the layer's table itself, reading every page of it (a file cut
        short fails here), where OGR would give the count GDAL keeps beside the table.
        """
        table = self.layer_name.replace('"', '""')
        try:
            with contextlib.closing(sqlite3.connect(f"{self._tmp.resolve().as_uri()}?mode=ro", uri=True)) as db:
                query = "SELECT data_type FROM gpkg_contents WHERE table_name = ?"
                if db.execute(query, (self.layer_name,)).fetchone() != ("features",):
                    raise RuntimeError(f"the written file has no layer {self.layer_name}")
                # A table name cannot be a parameter; this one is the run's own layer name, quoted.
                found = db.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0]  # nosec B608
        except sqlite3.Error as error:
            raise RuntimeError(f"the written file does not read back ({error})") from None
        if found != self._count:
            raise RuntimeError(f"the written file holds {found} of {self._count} tiles")

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
    Written through osgeo.gdal, which every QGIS ships (no rasterio inside QGIS).
    ``transform`` is the grid's affine transform (an ``affine.Affine``).
    """

    def __init__(
        self, path: str | os.PathLike, card: ModelCard, crs_wkt: str, transform, width: int, height: int, tags: dict
    ) -> None:
        self.path = Path(path)
        self._tmp = temporary_path(self.path)
        self._rows: list[np.ndarray] = []
        self._next_row = 0
        self._width, self._height = width, height
        self._crc = [0, 0]  # per band, of the rows in order: the read-back check compares them
        self._ds = None
        try:
            with _quiet_gdal():
                self._ds = _create_geotiff(self._tmp, width, height)
                _describe(self._ds, card, crs_wkt, transform, tags)
        except RuntimeError as error:
            reason = _drop_frames(error)
            self.abort()
            raise OutputError(f"Cannot create the GeoTIFF {self.path}: {reason}.") from None

    def write_row(self, classes: np.ndarray, confidence: np.ndarray) -> None:
        """Append the next row (uint8 class ids and confidence percent)."""
        row = np.stack([classes, confidence]).astype(np.uint8)
        self._crc = [zlib.crc32(band.tobytes(), crc) for band, crc in zip(row, self._crc)]
        self._rows.append(row)
        if len(self._rows) >= 256:
            self._flush()

    def commit(self) -> None:
        """Finish and move into place (publish_all with other outputs does both steps together)."""
        publish(*self.finish())

    def finish(self) -> tuple[Path, Path]:
        """Write what is buffered, close, and check the file reads back as written; return (temporary, final)."""
        self._flush()
        try:
            with _quiet_gdal():
                _gdal_call(self._ds.FlushCache)
                gdal.ErrorReset()
                self._ds = None  # closes the file; a failed block write at close shows only in the error state
                _gdal_check(0)
                self._verify()
        except (RuntimeError, OSError) as error:
            raise write_failed("GeoTIFF", self.path, _drop_frames(error)) from None
        return self._tmp, self.path

    def abort(self) -> None:
        """Close and delete the temporary file."""
        with _quiet_gdal():  # closing may report the failure that brought us here; the file goes anyway
            self._ds = None
        self._tmp.unlink(missing_ok=True)

    def _flush(self) -> None:
        if not self._rows:
            return
        block = np.ascontiguousarray(np.stack(self._rows, axis=1))  # (2, rows, width): band after band
        try:
            with _quiet_gdal():
                _gdal_call(self._ds.WriteRaster, 0, self._next_row, block.shape[2], block.shape[1], block.tobytes())
        except RuntimeError as error:
            raise write_failed("GeoTIFF", self.path, _drop_frames(error)) from None
        self._next_row += block.shape[1]
        self._rows = []

    def _verify(self) -> None:
        """Re-open the temporary file: every row must be there and read back to the same bytes.

        A failed block write at close may be reported only in GDAL's log; reading the whole map
        back (a small uint8 raster) is what proves it complete.
        """
        if self._next_row != self._height:
            raise RuntimeError(f"{self._next_row} of {self._height} rows were written")
        gdal.ErrorReset()
        ds = gdal.Open(str(self._tmp))
        if ds is None:
            raise RuntimeError(gdal.GetLastErrorMsg() or "the written file does not open")
        shape = (ds.RasterCount, ds.RasterYSize, ds.RasterXSize)
        if shape != (2, self._height, self._width):
            raise RuntimeError(f"the written file has shape {shape}")
        crc = [0, 0]
        for index in range(2):
            band = ds.GetRasterBand(index + 1)
            for top in range(0, self._height, VERIFY_ROWS):
                gdal.ErrorReset()
                rows = band.ReadRaster(0, top, self._width, min(VERIFY_ROWS, self._height - top))
                if rows is None or gdal.GetLastErrorType() >= gdal.CE_Failure:
                    raise RuntimeError(gdal.GetLastErrorMsg() or "the written file does not read back")
                crc[index] = zlib.crc32(rows, crc[index])
        if crc != self._crc:
            raise RuntimeError("the written file does not read back as written")


@contextlib.contextmanager
def _quiet_gdal() -> Iterator[None]:
    """Keep GDAL's messages off stderr (this thread only): the error raised carries them instead."""
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        yield
    finally:
        gdal.PopErrorHandler()


@contextlib.contextmanager
def _journal_in_memory() -> Iterator[None]:
    """SQLite's rollback journal in memory for a GeoPackage created meanwhile (this thread only).

    The file is a temporary, checked before it is renamed and deleted on any failure, so a
    journal on disk protects nothing; creating and deleting one per transaction costs time.
    """
    previous = gdal.GetThreadLocalConfigOption("OGR_SQLITE_JOURNAL", None)
    gdal.SetThreadLocalConfigOption("OGR_SQLITE_JOURNAL", "MEMORY")
    try:
        yield
    finally:
        gdal.SetThreadLocalConfigOption("OGR_SQLITE_JOURNAL", previous)


def _create_geotiff(path: Path, width: int, height: int) -> gdal.Dataset:
    """An empty two-band uint8 GeoTIFF, deflate-compressed, tiled when it is at least 256 px both ways."""
    options = ["COMPRESS=DEFLATE"] + (["TILED=YES"] if width >= 256 and height >= 256 else [])
    gdal.ErrorReset()
    ds = gdal.GetDriverByName("GTiff").Create(str(path), width, height, 2, gdal.GDT_Byte, options=options)
    if ds is None:
        raise RuntimeError(gdal.GetLastErrorMsg() or "GDAL could not create it")
    return ds


def _describe(ds: gdal.Dataset, card: ModelCard, crs_wkt: str, transform, tags: dict) -> None:
    """Georeference the class map and label it: CRS, transform, nodata, colours, band names, tags."""
    _gdal_call(ds.SetSpatialRef, srs_from_wkt(crs_wkt))
    _gdal_call(ds.SetGeoTransform, transform.to_gdal())
    _gdal_call(ds.SetMetadata, {key: str(value) for key, value in tags.items()})
    for index, name in ((1, "class"), (2, "confidence_percent")):
        band = ds.GetRasterBand(index)
        _gdal_call(band.SetNoDataValue, NODATA_CLASS)
        _gdal_call(band.SetDescription, name)
    classes = ds.GetRasterBand(1)
    _gdal_call(classes.SetColorTable, _colour_table(card))
    _gdal_call(classes.SetMetadata, {f"CLASS_{i}": name for i, name in enumerate(card.class_names)})


def _colour_table(card: ModelCard) -> gdal.ColorTable:
    """The card's class colours, opaque; every other value transparent black."""
    table = gdal.ColorTable()
    for value in range(256):
        table.SetColorEntry(value, (0, 0, 0, 0))
    for index, rgb in enumerate(card.class_rgb):
        table.SetColorEntry(index, (*rgb, 255))
    return table
