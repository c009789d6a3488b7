"""RasterSource over rasterio: the reader used outside QGIS (command line, tests, benchmarks).

Reads in the raster's own CRS are plain windowed reads (GDAL resamples: nearest when the
window maps pixel for pixel, average when shrinking, bilinear when enlarging). Reads in
another CRS go through a WarpedVRT built for exactly the requested block. Validity comes
from GDAL's mask bands, which cover nodata values, alpha bands and internal masks alike, and
from the values themselves: NaN or inf in any band is nodata (``source.finite_pixels``).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import rasterio
from osgeo import gdal
from rasterio.dtypes import dtype_rev, typename_fwd
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.transform import from_bounds
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from ..crs import check_on_earth, same_crs, transform_xy
from ..errors import InputError
from .source import (
    PALETTE,
    Block,
    Bounds,
    RasterInfo,
    check_one_type,
    check_scales,
    complex_pixels,
    finite_pixels,
    is_scaled,
    physical_dtype,
    unreadable_block,
)
from .vector import vector_given_as_raster

# GDAL's driver-prefixed subdataset names (NETCDF:"f.nc":var, HDF5:..., GPKG:...).
_DRIVER_PREFIX = re.compile(r"^[A-Z][A-Z0-9_]+:")
# A member of an archive: /vsizip/archive.zip/member.tif (also /vsitar/ and /vsi7z/).
_ARCHIVE = re.compile(
    r"^/(?P<kind>vsizip|vsitar|vsi7z)/(?P<archive>.+?\.(?:zip|tar|tar\.gz|tgz|7z))(?P<member>/.*)?$", re.IGNORECASE
)
# Colour interpretations that name what a band holds when it has no description.
_NAMED_COLOURS = {
    ColorInterp.red: "red",
    ColorInterp.green: "green",
    ColorInterp.blue: "blue",
    ColorInterp.alpha: "alpha",
    ColorInterp.palette: PALETTE,  # refused with the way to expand it (radiometry)
}


class RasterioSource:
    """A RasterSource reading a GDAL raster file through rasterio; use as a context manager."""

    def __init__(self, path: str | os.PathLike) -> None:
        if is_gdal_path(path):
            path = str(path)  # /vsicurl/https://... : Path() would fold the URL's '//'
        else:
            path = Path(path)
            if not path.exists():
                raise InputError(f"Input raster {path} does not exist; check the path.")
        self._dataset = _open(path)
        try:
            _check_bands(path, self._dataset)
            _check_georeferenced(path, self._dataset)
            _check_real(path, self._dataset)
            check_one_type(str(path), _type_names(self._dataset))
        except InputError:
            self._dataset.close()
            raise
        self._info = _describe(path, self._dataset)
        try:
            check_scales(str(path), self._info.scales)
        except InputError:
            self._dataset.close()
            raise
        self._scaled = is_scaled(self._info.scales, self._info.offsets)
        self._has_alpha = ColorInterp.alpha in self._dataset.colorinterp
        # Every band without nodata, alpha or mask (GDAL's GMF_ALL_VALID): reads skip the masks.
        self._all_valid = all(flags == [MaskFlags.all_valid] for flags in self._dataset.mask_flag_enums)
        transform = self._dataset.transform
        self._rectilinear = transform.b == 0 and transform.d == 0 and transform.e < 0

    @property
    def info(self) -> RasterInfo:
        """Facts about the raster."""
        return self._info

    def close(self) -> None:
        """Close the file."""
        self._dataset.close()

    def __enter__(self) -> RasterioSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, bounds: Bounds, crs_wkt: str, width: int, height: int, bands: Sequence[int]) -> Block:
        """Read ``bands`` over ``bounds`` (in ``crs_wkt``) resampled to ``width`` x ``height``."""
        bands = [int(b) for b in bands]
        try:
            with _quiet_gdal():
                if self._rectilinear and same_crs(crs_wkt, self._info.crs_wkt):
                    block = self._read_direct(bounds, width, height, bands)
                else:
                    block = self._read_warped(bounds, crs_wkt, width, height, bands)
        except RasterioIOError as error:
            reason = str(error).removeprefix("Read or write failed.")
            raise unreadable_block(self._info, bounds, crs_wkt, reason) from None
        data = self._physical(block.data, bands) if self._scaled else block.data
        # GDAL's masks only know declared nodata; NaN and inf are nodata too, in either path.
        return Block(data, block.valid & finite_pixels(data))

    def _physical(self, data: np.ndarray, bands: list[int]) -> np.ndarray:
        """Raw values -> ``raw * scale + offset`` per band, in the info's float dtype, as QGIS's provider reads them."""
        values = np.empty(data.shape, dtype=self._info.dtype)
        for index, band in enumerate(bands):
            scale, offset = self._info.band_scaling(band)
            # In double, then rounded once: QGIS does the same, so both faces get the same float32 values.
            values[index] = data[index].astype(np.float64) * scale + offset
        return values

    def _read_direct(self, bounds: Bounds, width: int, height: int, bands: list[int]) -> Block:
        ds = self._dataset
        data = np.zeros((len(bands), height, width), dtype=self._info.dtype)
        valid = np.zeros((height, width), dtype=bool)
        # Source pixel coordinates of the requested rectangle, then of each output pixel edge.
        col0, row0 = ~ds.transform * (bounds[0], bounds[3])
        col1, row1 = ~ds.transform * (bounds[2], bounds[1])
        sx, sy = (col1 - col0) / width, (row1 - row0) / height
        # Only output pixels wholly on the raster are read (GDAL refuses windows that stick
        # out); a partial pixel at the edge stays invalid.
        x0, x1 = max(0, math.ceil(-col0 / sx - 1e-6)), min(width, math.floor((ds.width - col0) / sx + 1e-6))
        y0, y1 = max(0, math.ceil(-row0 / sy - 1e-6)), min(height, math.floor((ds.height - row0) / sy + 1e-6))
        if x1 <= x0 or y1 <= y0:
            return Block(data, valid)
        window = Window(col0 + x0 * sx, row0 + y0 * sy, (x1 - x0) * sx, (y1 - y0) * sy)
        resampling = _resampling(sx, sy, window)
        shape = (len(bands), y1 - y0, x1 - x0)
        data[:, y0:y1, x0:x1] = ds.read(bands, window=window, out_shape=shape, resampling=resampling)
        if self._all_valid:  # no nodata, alpha or mask: GDAL's masks would be 255 everywhere
            valid[y0:y1, x0:x1] = True
            return Block(data, valid)
        masks = ds.read_masks(bands, window=window, out_shape=shape, resampling=resampling)
        # Like GDAL's warper, a pixel is nodata only when every band says so.
        valid[y0:y1, x0:x1] = np.any(masks >= 128, axis=0)
        return Block(data, valid)

    def _native_pixel(self, bounds: Bounds, crs_wkt: str) -> float:
        """The raster's pixel size in ``crs_wkt`` units near the centre of ``bounds`` (inf if unknown)."""
        raster_wkt = self._info.crs_wkt
        px, py = self._info.pixel_size
        try:
            ((x, y),) = transform_xy([[(bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2]], crs_wkt, raster_wkt)
            centre, east, north = transform_xy([[x, y], [x + px, y], [x, y + py]], raster_wkt, crs_wkt)
        except InputError:
            return math.inf  # no local scale: enlarge (bilinear) rather than average
        return float(max(np.hypot(*(east - centre)), np.hypot(*(north - centre))))

    def _read_warped(self, bounds: Bounds, crs_wkt: str, width: int, height: int, bands: list[int]) -> Block:
        target = max((bounds[2] - bounds[0]) / width, (bounds[3] - bounds[1]) / height)
        resampling = Resampling.average if target > self._native_pixel(bounds, crs_wkt) else Resampling.bilinear
        with WarpedVRT(
            self._dataset,
            crs=crs_wkt,
            transform=from_bounds(*bounds, width, height),
            width=width,
            height=height,
            resampling=resampling,
            add_alpha=not self._has_alpha,
        ) as vrt:
            alpha = vrt.colorinterp.index(ColorInterp.alpha) + 1
            out = vrt.read(bands + [alpha])
        return Block(out[:-1], out[-1] >= 128)


def is_gdal_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a GDAL name rather than a plain file.

    Virtual paths and URLs (/vsicurl/, /vsis3/, /vsizip/, https://...) and driver-prefixed names
    of a subdataset (``NETCDF:"f.nc":var``, ``HDF5:f.h5://grp/var``, ``GPKG:f.gpkg:table``) are
    opened by GDAL as they are: no file of that name exists.
    """
    text = str(path)
    if text.startswith("/vsi") or "://" in text:
        return True
    # An upper-case prefix of two or more letters (a drive letter is one) naming no existing file.
    return bool(_DRIVER_PREFIX.match(text)) and not os.path.exists(text)


def raster_name(path: str | os.PathLike) -> str:
    """A short name for the raster at ``path``: the file's stem, with the subdataset for a driver-prefixed name."""
    text = str(path)
    match = _DRIVER_PREFIX.match(text) if is_gdal_path(text) else None
    if not match:
        return Path(text).stem
    rest = text[match.end() :]
    file, _, member = rest.partition('":') if rest.startswith('"') else rest.rpartition(":")
    stem = Path(file.strip('"')).stem
    member = re.sub(r"[^A-Za-z0-9_.-]+", "_", member).strip("_")
    return f"{stem}_{member}" if stem and member else stem or member or match.group(0).rstrip(":")


@contextlib.contextmanager
def _quiet_gdal() -> Iterator[None]:
    """GDAL's own 'ERROR 1: ...' lines off while reading: a failed read raises, and is told once, by us."""
    gdal.PushErrorHandler("CPLQuietErrorHandler")  # this thread only
    try:
        yield
    finally:
        gdal.PopErrorHandler()


def _open(path: Path | str) -> rasterio.DatasetReader:
    """Open ``path`` read-only; InputError when GDAL cannot read it, with GDAL's reason for a GDAL name."""
    try:
        # A missing geotransform is reported by _check_georeferenced as one clear error, not as
        # a NotGeoreferencedWarning on stderr first.
        with warnings.catch_warnings(), _quiet_gdal():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioIOError as error:
        if isinstance(path, Path):
            raise (
                vector_given_as_raster(path)
                or _archive_given(path)
                or InputError(f"{path} is not a raster GDAL can read (GeoTIFF, JP2, VRT, ...).")
            ) from None
        # A URL offline, a missing archive member, a wrong subdataset: the file test cannot say which.
        raise InputError(f"{path} cannot be opened: {_gdal_reason(path, error)}") from None


def _archive_given(path: Path) -> InputError | None:
    """The error for a .zip/.tar/.7z archive given as the raster: name a member through GDAL's /vsi path."""
    kinds = {".zip": "vsizip", ".tar": "vsitar", ".tgz": "vsitar", ".gz": "vsitar", ".7z": "vsi7z"}
    kind = kinds.get(path.suffix.lower())
    if kind is None or not path.is_file():
        return None
    with _quiet_gdal():
        members = [m for m in gdal.ReadDirRecursive(f"/{kind}/{path}") or [] if not m.endswith("/")]
    rasters = [m for m in members if Path(m).suffix.lower() in (".tif", ".tiff", ".jp2", ".vrt", ".img")] or members
    example = f"/{kind}/{path}/{rasters[0]}" if rasters else f"/{kind}/{path}/MEMBER.tif"
    return InputError(
        f"{path} is an archive, not a raster: give the raster inside it as a GDAL path, e.g. '{example}' (quoted "
        f"for the shell), or unpack it; it holds: {', '.join(members[:10]) or 'nothing'}"
        + (f" and {len(members) - 10} more." if len(members) > 10 else ".")
    )


def _gdal_reason(path: str, error: Exception) -> str:
    """Why GDAL could not open ``path``: a missing archive, or member with what the archive holds; else GDAL's words."""
    match = _ARCHIVE.match(path)
    if match:
        archive, member = match.group("archive"), (match.group("member") or "").strip("/")
        if not os.path.exists(archive):
            return f"the archive {archive} does not exist; check the path."
        members = gdal.ReadDirRecursive(f"/{match.group('kind')}/{archive}") or []
        if member and member not in members:
            files = [m for m in members if not m.endswith("/")]
            listed = ", ".join(files[:10]) + (f" and {len(files) - 10} more" if len(files) > 10 else "")
            return f"{archive} holds no '{member}'; it holds: {listed or 'nothing'}."
    reason = " ".join(str(error).split()).removeprefix("Read or write failed.").strip() or "GDAL gave no reason."
    if reason.startswith(("CURL error", "HTTP")):  # fetched, not read: the network or the address is at fault
        reason += "; check the address and the network connection (or download the file and give its path)."
    return reason


def _check_bands(path: Path | str, ds: rasterio.DatasetReader) -> None:
    """InputError for a file without raster bands: a container (NetCDF, HDF) lists its subdatasets to pick from."""
    if ds.count:
        return
    names = [v for k, v in ds.tags(ns="SUBDATASETS").items() if k.endswith("_NAME")]
    if not names:
        raise InputError(f"{path} holds no raster bands; give a raster file (GeoTIFF, JP2, VRT, ...).")
    raise InputError(
        f"{path} is a container of {len(names)} subdatasets, not one raster: pick a subdataset and give its "
        f"name as the input (quoted for the shell), e.g. '{names[0]}'; `gdalinfo {path}` lists them all: "
        + "; ".join(names[:10])
        + (f"; ... and {len(names) - 10} more" if len(names) > 10 else "")
        + "."
    )


def _check_georeferenced(path: Path | str, ds: rasterio.DatasetReader) -> None:
    """InputError unless the raster has a CRS and a geotransform that place its pixels on the ground."""
    if ds.crs is None:
        raise InputError(
            f"{path} has no coordinate reference system, so its pixels cannot be placed on the ground; "
            "assign one (e.g. `gdal_edit.py -a_srs EPSG:32633 FILE` or QGIS > Layer > Set CRS)."
        )
    # GDAL reports a missing geotransform as the identity: pixel (0, 0) at the origin, 1 unit
    # per pixel, with y growing downwards. No real raster is georeferenced like that.
    if ds.transform.is_identity:
        raise InputError(
            f"{path} has a coordinate reference system but no geotransform, so its pixels cannot be placed "
            "on the ground; georeference it (e.g. `gdal_edit.py -a_ullr XMIN YMAX XMAX YMIN FILE` or the "
            "QGIS Georeferencer)."
        )
    check_on_earth(ds.crs.to_wkt(), str(path))


def _check_real(path: Path | str, ds: rasterio.DatasetReader) -> None:
    """InputError for complex pixel values (CInt16, CFloat32, ...): numpy would drop their imaginary part."""
    complex_types = sorted({dtype for dtype in ds.dtypes if dtype.startswith("complex")})
    if complex_types:  # named as GDAL names them (CInt16), which is what gdalinfo shows the user
        raise complex_pixels(str(path), ", ".join(typename_fwd.get(dtype_rev.get(t), t) for t in complex_types))


def _type_names(ds: rasterio.DatasetReader) -> list[str | None]:
    """GDAL's name of each band's data type (UInt16, Float32, ...); None for an alpha band (not checked)."""
    return [
        None if interp == ColorInterp.alpha else typename_fwd.get(dtype_rev.get(dtype), dtype)
        for dtype, interp in zip(ds.dtypes, ds.colorinterp)
    ]


def _describe(path: Path | str, ds: rasterio.DatasetReader) -> RasterInfo:
    descriptions = tuple(
        (desc or _NAMED_COLOURS.get(interp, "")) for desc, interp in zip(ds.descriptions, ds.colorinterp)
    )
    scales, offsets = tuple(float(s) for s in ds.scales), tuple(float(o) for o in ds.offsets)
    dtype = str(np.result_type(*ds.dtypes))
    return RasterInfo(
        name=raster_name(path),
        width=ds.width,
        height=ds.height,
        band_count=ds.count,
        dtype=physical_dtype(dtype) if is_scaled(scales, offsets) else dtype,
        crs_wkt=ds.crs.to_wkt(),
        bounds=tuple(ds.bounds),
        pixel_size=(abs(ds.res[0]), abs(ds.res[1])),
        nodata=tuple(ds.nodatavals),
        band_descriptions=descriptions,
        path=str(path),
        metadata=_metadata(ds),
        scales=scales,
        offsets=offsets,
    )


def _metadata(ds: rasterio.DatasetReader) -> dict[str, str]:
    """The dataset's and each band's metadata items (default domain), band keys as 'band N:KEY'."""
    items = dict(ds.tags())
    for band in range(1, ds.count + 1):
        items.update({f"band {band}:{key}": value for key, value in ds.tags(band).items()})
    return items


def _resampling(sx: float, sy: float, window: Window) -> Resampling:
    aligned = all(abs(v - round(v)) < 1e-6 for v in (window.col_off, window.row_off, sx, sy))
    if aligned and round(sx) == 1 and round(sy) == 1:
        return Resampling.nearest
    return Resampling.average if max(sx, sy) > 1 + 1e-6 else Resampling.bilinear
