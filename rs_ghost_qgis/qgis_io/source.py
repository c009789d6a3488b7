"""A RasterSource over a QGIS raster data provider: files, VRTs, WMS and XYZ alike.

The source works on a *clone* of the layer's provider, made on the main thread, so the worker
thread never touches the layer. Reads are resampled by the provider (average when zooming
out, bilinear when zooming in, where the provider can) and reprojected with
QgsRasterProjector when the requested CRS differs from the raster's, read finer and averaged
down where the raster's pixels are finer than the ones asked for (as the rasterio face warps).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Sequence

import numpy as np
from osgeo import gdal
from qgis.core import (
    Qgis,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCoordinateTransformContext,
    QgsCsException,
    QgsMapLayer,
    QgsProject,
    QgsProviderRegistry,
    QgsRaster,
    QgsRasterDataProvider,
    QgsRasterLayer,
    QgsRasterProjector,
    QgsRectangle,
    QgsSettings,
)

from ..core.errors import InputError
from ..core.sources.source import (
    PALETTE,
    Block,
    Bounds,
    RasterInfo,
    check_one_type,
    check_scales,
    finite_pixels,
    is_scaled,
    physical_dtype,
    unreadable_block,
)

# QGIS data types -> numpy. ARGB32 (WMS, XYZ) is split into uint8 R, G, B plus alpha.
_NUMPY_TYPES = {
    Qgis.Byte: np.uint8,
    Qgis.UInt16: np.uint16,
    Qgis.Int16: np.int16,
    Qgis.UInt32: np.uint32,
    Qgis.Int32: np.int32,
    Qgis.Float32: np.float32,
    Qgis.Float64: np.float64,
}
if hasattr(Qgis, "Int8"):  # QGIS 3.30 and later (GDAL 3.7's Int8); earlier ones read int8 as Byte
    _NUMPY_TYPES[Qgis.Int8] = np.int8
_COLOR_TYPES = (Qgis.ARGB32, Qgis.ARGB32_Premultiplied)
_BAND_PREFIX = re.compile(r"^Band \d+:?\s*")
# A VRT's source files: <SourceFilename relativeToVRT="1">a.tif</SourceFilename>.
_VRT_SOURCE = re.compile(r'<SourceFilename[^>]*relativeToVRT="([01])"[^>]*>([^<]+)</SourceFilename>')
# Colour interpretations that name what a band holds when it has no description, as the
# rasterio source names them: a palette band is refused with the way to expand it (radiometry).
_NAMED_COLOURS = {
    QgsRaster.RedBand: "red",
    QgsRaster.GreenBand: "green",
    QgsRaster.BlueBand: "blue",
    QgsRaster.PaletteIndex: PALETTE,
}
CRS_WKT_FLAVOUR = QgsCoordinateReferenceSystem.WKT_PREFERRED
# Providers whose pixels come from a server: "wms" also serves XYZ and WMTS layers.
WEB_PROVIDERS = frozenset({"wms", "wcs", "arcgismapserver"})
# Reprojected reads oversample at most this much (memory grows with its square).
MAX_OVERSAMPLING = 4


# QGIS's settings for the contrast of a newly loaded raster (qgsrasterlayer.cpp): their limits
# decide whether loading computes band statistics, which GDAL then writes beside the file.
_CONTRAST_KINDS = ("singleBand", "multiBandSingleByte", "multiBandMultiByte")
_CONTRAST_LIMITS = tuple(f"/Raster/defaultContrastEnhancementLimits/{kind}" for kind in _CONTRAST_KINDS)


@contextlib.contextmanager
def loaded_without_statistics() -> Iterator[None]:
    """While the block runs, a raster layer QGIS loads from a path computes no statistics.

    qgis_process and batch runs load INPUT from its path, and QGIS's default contrast stretch
    then computes band statistics, which GDAL keeps: a ``.aux.xml`` beside a GeoTIFF, and a
    user's ``.vrt`` rewritten with them. The run needs none; the settings are restored after.
    """
    settings = QgsSettings()
    saved = {key: settings.value(key) for key in _CONTRAST_LIMITS if settings.contains(key)}
    for key in _CONTRAST_LIMITS:
        settings.setValue(key, "None")
    try:
        yield
    finally:
        for key in _CONTRAST_LIMITS:
            if key in saved:
                settings.setValue(key, saved[key])
            else:
                settings.remove(key)


def crs_to_wkt(crs: QgsCoordinateReferenceSystem) -> str:
    """The WKT the engine receives for a QGIS CRS ("" when invalid)."""
    return whole_crs(crs).toWkt(CRS_WKT_FLAVOUR) if crs.isValid() else ""


def whole_crs(crs: QgsCoordinateReferenceSystem) -> QgsCoordinateReferenceSystem:
    """``crs``, or a fresh copy of it when it has lost its definition.

    QGIS 3.22 caches CRS objects process-wide with a PROJ object per thread, and drops the
    objects of a worker thread when the thread ends. A layer's CRS first built in a finished task
    can then be valid with an empty WKT, and every reprojection through it is empty (issue 29:
    adapt, then classify). Clearing the cache and building the CRS again from its authority code
    gives a whole one.
    """
    if not crs.isValid() or crs.toWkt(CRS_WKT_FLAVOUR) or not crs.authid():
        return crs
    QgsCoordinateReferenceSystem.invalidateCache()
    return QgsCoordinateReferenceSystem(crs.authid())


def crs_from_wkt(wkt: str) -> QgsCoordinateReferenceSystem:
    """A QGIS CRS from engine WKT."""
    return QgsCoordinateReferenceSystem.fromWkt(wkt) if wkt else QgsCoordinateReferenceSystem()


def check_raster_layer(layer) -> QgsRasterLayer:
    """The layer if it is a readable raster layer, else an InputError that says what to pick."""
    if layer is None:
        raise InputError("No input layer: choose a raster layer to classify.")
    if not isinstance(layer, QgsMapLayer) or layer.type() != QgsMapLayer.RasterLayer:
        kind = "vector" if isinstance(layer, QgsMapLayer) and layer.type() == QgsMapLayer.VectorLayer else "non-raster"
        name = layer.name() if isinstance(layer, QgsMapLayer) else str(layer)
        raise InputError(f"'{name}' is a {kind} layer; choose a raster layer (GeoTIFF, VRT, WMS or XYZ) to classify.")
    if not layer.isValid() or layer.dataProvider() is None:
        raise InputError(f"The raster layer '{layer.name()}' cannot be read: {layer.error().summary() or 'invalid'}.")
    return layer


class QgisLayerSource:
    """RasterSource reading blocks from a cloned QGIS raster data provider (thread-safe per clone)."""

    def __init__(
        self,
        provider: QgsRasterDataProvider,
        name: str,
        transform_context: QgsCoordinateTransformContext | None = None,
    ) -> None:
        if not provider.crs().isValid():
            raise InputError(
                f"The raster '{name}' has no coordinate reference system, so its pixels cannot be placed on "
                "the ground; assign one (Layer Properties > Source > Assigned CRS) and run again."
            )
        from ..core.crs import check_on_earth  # osr and shapely only once a raster is read

        check_on_earth(crs_to_wkt(provider.crs()), f"The raster '{name}'")  # a LOCAL_CS: refused up front
        self._provider = provider
        self._context = transform_context or QgsCoordinateTransformContext()
        self._crs = whole_crs(provider.crs())
        self._is_color = provider.dataType(1) in _COLOR_TYPES
        self._alpha_band = self._find_alpha_band()
        self._configure_resampling()
        dataset = _gdal_dataset(provider)
        if dataset is not None:  # the rasterio source's rules, from GDAL itself as there
            _check_gdal_bands(dataset, _local_path(provider) or f"The raster '{name}'")
        self._signed_bytes = _signed_bytes(dataset)
        self._info = self._make_info(name, _gdal_metadata(dataset))

    @classmethod
    def from_layer(cls, layer: QgsRasterLayer, project: QgsProject | None = None) -> QgisLayerSource:
        """Clone ``layer``'s provider (call on the main thread); the clone is for one worker."""
        layer = check_raster_layer(layer)
        provider = layer.dataProvider().clone()
        if provider is None:
            raise InputError(f"The raster layer '{layer.name()}' cannot be read in the background (no clone).")
        context = (project or QgsProject.instance()).transformContext()
        return cls(provider, layer.name(), context)

    @property
    def info(self) -> RasterInfo:
        """Facts about the raster (the alpha band, if any, is not counted as a band)."""
        return self._info

    @property
    def crs(self) -> QgsCoordinateReferenceSystem:
        """The raster's CRS as QGIS sees it."""
        return self._crs

    def _find_alpha_band(self) -> int | None:
        if self._is_color:
            return None
        count = self._provider.bandCount()
        if count > 1 and self._provider.colorInterpretation(count) == QgsRaster.AlphaBand:
            return count
        return None

    def _configure_resampling(self) -> None:
        provider = self._provider
        if provider.providerCapabilities() & QgsRasterDataProvider.ProviderHintCanPerformProviderResampling:
            provider.setZoomedInResamplingMethod(QgsRasterDataProvider.ResamplingMethod.Bilinear)
            provider.setZoomedOutResamplingMethod(QgsRasterDataProvider.ResamplingMethod.Average)
            provider.enableProviderResampling(True)

    def _band_dtype(self, band: int) -> np.dtype:
        """How the bytes of ``band``'s blocks are read: the provider's type; int8 for GDAL's signed bytes,
        which QGIS before 3.30 reports as Byte (the rasterio source reads them as int8)."""
        dtype = np.dtype(_NUMPY_TYPES[self._provider.dataType(band)])
        return np.dtype(np.int8) if dtype == np.uint8 and self._signed_bytes else dtype

    def _band_facts(self, count: int) -> dict:
        """The RasterInfo fields of the ``count`` data bands of a provider that is not ARGB colour."""
        provider, bands = self._provider, range(1, count + 1)
        unsupported = sorted({provider.dataType(b) for b in bands} - set(_NUMPY_TYPES))
        if unsupported:
            raise InputError(f"Raster data type {unsupported[0]} is not supported (complex or unknown).")
        # The provider applies GDAL's scale and offset itself, as float: the values are physical.
        scales = tuple(float(provider.bandScale(b)) for b in bands)
        offsets = tuple(float(provider.bandOffset(b)) for b in bands)
        dtype = np.result_type(*(self._band_dtype(b) for b in bands)).name
        return {
            "dtype": physical_dtype(dtype) if is_scaled(scales, offsets) else dtype,
            "nodata": tuple(provider.sourceNoDataValue(b) if provider.sourceHasNoDataValue(b) else None for b in bands),
            # Like the rasterio source: a band without a description is named by its colour
            # interpretation, so both faces map an RGB GeoTIFF the same way.
            "band_descriptions": tuple(
                _BAND_PREFIX.sub("", provider.generateBandName(b))
                or _NAMED_COLOURS.get(provider.colorInterpretation(b), "")
                for b in bands
            ),
            "scales": scales,
            "offsets": offsets,
        }

    def _make_info(self, name: str, metadata: dict[str, str]) -> RasterInfo:
        provider = self._provider
        extent = provider.extent()
        width, height = provider.xSize(), provider.ySize()
        if self._is_color:
            count = 3
            bands = {"dtype": "uint8", "nodata": (None,) * 3, "band_descriptions": ("red", "green", "blue")}
        else:
            count = provider.bandCount() - (1 if self._alpha_band else 0)
            bands = self._band_facts(count)
        if width <= 0 or height <= 0:  # no native size (some WMS): use the extent at 1 unit per pixel
            width, height = max(1, round(extent.width())), max(1, round(extent.height()))
        return RasterInfo(
            name=name,
            width=width,
            height=height,
            band_count=count,
            crs_wkt=crs_to_wkt(self._crs),
            bounds=(extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum()),
            pixel_size=(extent.width() / width, extent.height() / height),
            path=_local_path(provider),
            metadata=metadata,
            web=provider.name() in WEB_PROVIDERS,
            **bands,
        )

    def read(self, bounds: Bounds, crs_wkt: str, width: int, height: int, bands: Sequence[int]) -> Block:
        """Read ``bands`` (1-based) over ``bounds`` in ``crs_wkt`` as width x height pixels."""
        rect = QgsRectangle(*bounds)
        target = crs_from_wkt(crs_wkt) if crs_wkt else self._crs
        if not (target.isValid() and self._crs.isValid() and target != self._crs):
            return self._read_block(self._provider, bounds, crs_wkt, width, height, bands)
        projector = QgsRasterProjector()
        projector.setCrs(self._crs, target, self._context)
        projector.setInput(self._provider)
        # The projector samples its input by nearest neighbour. Where the raster's pixels are finer
        # than the ones asked for, that aliases their texture, and the model reads the map
        # differently from the rasterio face's averaged warp: read k x k finer, then average.
        factor = self._oversampling(rect, target, width, height)
        block = self._read_block(projector, bounds, crs_wkt, width * factor, height * factor, bands)
        return _average_down(block, factor)

    def _oversampling(self, rect: QgsRectangle, target: QgsCoordinateReferenceSystem, width: int, height: int) -> int:
        """How many raster pixels fall along one requested pixel (1..MAX_OVERSAMPLING)."""
        if self._info.web:
            return 1  # a server's tiles come at the zoom asked for
        try:
            native = QgsCoordinateTransform(target, self._crs, self._context).transformBoundingBox(rect)
        except QgsCsException:
            return 1
        per_pixel = max(
            native.width() / self._provider.extent().width() * self._provider.xSize() / width,
            native.height() / self._provider.extent().height() * self._provider.ySize() / height,
        )
        return int(min(MAX_OVERSAMPLING, max(1, round(per_pixel))))

    def _read_block(self, interface, bounds: Bounds, crs_wkt: str, width: int, height: int, bands) -> Block:
        rect = QgsRectangle(*bounds)
        valid = np.ones((height, width), dtype=bool)

        def read_band(band: int, dtype=None):
            gdal.ErrorReset()  # so that a failure below is told with its own reason
            block = interface.block(band, rect, width, height)
            # When GDAL fails (a truncated GeoTIFF, a VRT's missing source) the provider returns
            # an invalid block, and the projector a valid one of nodata; GDAL's error state (this
            # thread's) tells both. Read as nodata, the run would succeed on garbage.
            failed = block is None or not block.isValid() or gdal.GetLastErrorType() >= gdal.CE_Failure
            if failed and not self._info.web:
                raise unreadable_block(self._info, bounds, crs_wkt, _last_gdal_error(band, self._info.path))
            if not failed and block.isEmpty() and not self._is_outside(bounds, crs_wkt):
                raise _empty_read(self._info)
            return _decode_block(block, width, height, dtype or self._band_dtype(band))

        if self._is_color:
            argb, valid = read_band(1, np.uint32)
            valid &= ((argb >> 24) & 0xFF) > 0
            data = np.stack([((argb >> shift) & 0xFF).astype(np.uint8) for shift in (16, 8, 0)])
            return Block(data=data[[b - 1 for b in bands]], valid=valid)
        dtype = self._info.dtype
        layers = []
        for band in bands:
            if band < 1 or band > self._info.band_count:
                raise InputError(f"Band {band} does not exist: the raster has {self._info.band_count} bands.")
            values, band_valid = read_band(band)
            valid &= band_valid
            layers.append(values.astype(dtype, copy=False))
        if self._alpha_band:
            alpha, _ = read_band(self._alpha_band)
            valid &= alpha > 0
        data = np.stack(layers) if layers else np.zeros((0, height, width), dtype=dtype)
        # The engine's rule, as in the rasterio source: NaN or inf in any band is nodata.
        return Block(data=data, valid=valid & finite_pixels(data))

    def _is_outside(self, bounds: Bounds, crs_wkt: str) -> bool:
        """Whether ``bounds`` (in ``crs_wkt``) lie wholly outside the raster, as osr transforms them.

        QgsRasterProjector returns a valid block without pixels when the area does not reach the
        raster, and also when QGIS's coordinate transform has gone wrong in this thread (seen once
        in a long session: it returned its input unchanged). osr, outside QGIS's transform cache,
        tells the two apart. An area that osr cannot carry over is not proven outside.
        """
        from ..core.crs import transform_xy

        try:
            native = transform_xy(_outline(bounds), crs_wkt or self._info.crs_wkt, self._info.crs_wkt)
        except InputError:
            return False
        (xmin, ymin), (xmax, ymax) = native.min(axis=0), native.max(axis=0)
        rxmin, rymin, rxmax, rymax = self._info.bounds
        return xmax < rxmin or xmin > rxmax or ymax < rymin or ymin > rymax


def _average_down(block: Block, factor: int) -> Block:
    """Average each ``factor`` x ``factor`` cell; a cell is valid where all its pixels are."""
    if factor == 1:
        return block
    bands, height, width = block.data.shape
    cells = block.data.reshape(bands, height // factor, factor, width // factor, factor).astype(np.float64)
    data = cells.mean(axis=(2, 4))
    if np.issubdtype(block.data.dtype, np.integer):
        data = np.rint(data)
    valid = block.valid.reshape(height // factor, factor, width // factor, factor).all(axis=(1, 3))
    return Block(data=data.astype(block.data.dtype), valid=valid)


def _outline(bounds: Bounds, points: int = 11) -> np.ndarray:
    """The edges of ``bounds`` as (N, 2) points, ``points`` per edge (a projected edge bends)."""
    xmin, ymin, xmax, ymax = bounds
    xs, ys = np.linspace(xmin, xmax, points), np.linspace(ymin, ymax, points)
    edges = [np.c_[xs, np.full(points, y)] for y in (ymin, ymax)] + [
        np.c_[np.full(points, x), ys] for x in (xmin, xmax)
    ]
    return np.concatenate(edges)


def _empty_read(info: RasterInfo) -> InputError:
    """The error for an empty block where the area overlaps the raster: a failed read, never nodata.

    Read as nodata, it made every later run of a QGIS session fail with 'N nodata or NaN'.
    """
    return InputError(
        f"Reading {info.name} gave an empty block for an area that overlaps it: QGIS's reprojection returned no "
        "pixels, so the read failed (these pixels are not nodata). Run again; if it fails again, restart QGIS "
        "(its coordinate transforms can go wrong in a long session)."
    )


def _local_path(provider: QgsRasterDataProvider) -> str:
    """The file behind ``provider``, "" for WMS, XYZ and other sources that are not a local file."""
    parts = QgsProviderRegistry.instance().decodeUri(provider.name(), provider.dataSourceUri())
    path = str(parts.get("path") or "")
    return path if path and os.path.isfile(path) else ""


def _gdal_dataset(provider: QgsRasterDataProvider):
    """The provider's dataset opened once more with GDAL, for what QGIS does not expose; None for WMS,
    XYZ and anything GDAL cannot open."""
    if provider.name() != "gdal":
        return None
    uri = provider.dataSourceUri()
    path = str(QgsProviderRegistry.instance().decodeUri("gdal", uri).get("path") or uri)
    try:  # osgeo's exception mode is process-wide: it may raise or return None
        return gdal.Open(path)
    except RuntimeError:
        return None


def _check_gdal_bands(dataset, where: str) -> None:
    """InputError for bands of mixed data types or a scale of 0, as the rasterio source refuses them.

    QGIS's provider reports a scale of 0 as 1 and would read such a band unscaled, where the
    rasterio source refuses it: both faces refuse it here.
    """
    bands = [dataset.GetRasterBand(b) for b in range(1, dataset.RasterCount + 1)]
    alpha = gdal.GCI_AlphaBand  # says where pixels are valid, whatever its type
    check_one_type(
        where, [None if b.GetColorInterpretation() == alpha else gdal.GetDataTypeName(b.DataType) for b in bands]
    )
    check_scales(where, [1.0 if band.GetScale() is None else float(band.GetScale()) for band in bands])


def _signed_bytes(dataset) -> bool:
    """Whether the bands are GDAL's signed bytes (PIXELTYPE=SIGNEDBYTE before GDAL 3.7's Int8)."""
    if dataset is None or dataset.RasterCount == 0:
        return False
    band = dataset.GetRasterBand(1)
    return band.DataType == gdal.GDT_Byte and band.GetMetadataItem("PIXELTYPE", "IMAGE_STRUCTURE") == "SIGNEDBYTE"


def _gdal_metadata(dataset) -> dict[str, str]:
    """The GDAL metadata items of the dataset and its bands, keyed as the rasterio source keys them.

    The engine looks there for the Sentinel-2 offset tags; QGIS does not expose them. Empty
    without a dataset (WMS, XYZ, anything GDAL cannot open).
    """
    if dataset is None:
        return {}
    items = dict(dataset.GetMetadata() or {})
    for band in range(1, dataset.RasterCount + 1):
        band_items = dataset.GetRasterBand(band).GetMetadata() or {}
        items.update({f"band {band}:{key}": value for key, value in band_items.items()})
    return items


def _last_gdal_error(band: int, path: str = "") -> str:
    """Why the read of ``band`` failed, as GDAL said it in this thread (QGIS only logs it).

    GDAL may have said it earlier, when it opened the file (a VRT whose source is gone, once
    another VRT has been read in this process): then the VRT's missing sources say it.
    """
    message = gdal.GetLastErrorMsg().strip()
    if message:
        return message
    missing = _missing_sources(path)
    if missing:
        return "; ".join(f"{name}: No such file or directory" for name in missing[:3])
    return f"the QGIS data provider returned an invalid block for band {band}"


def _missing_sources(path: str) -> list[str]:
    """The source files a VRT file refers to that do not exist ([] for any other raster)."""
    if not path.lower().endswith(".vrt") or not os.path.isfile(path):
        return []
    try:
        with open(path, encoding="utf-8", errors="replace") as stream:
            text = stream.read()
    except OSError:
        return []
    missing = []
    for relative, name in _VRT_SOURCE.findall(text):
        source = os.path.join(os.path.dirname(path), name) if relative == "1" else name
        if not source.startswith("/vsi") and not os.path.exists(source) and source not in missing:
            missing.append(source)
    return missing


def _decode_block(block, width: int, height: int, dtype):
    """A band's block as a (height, width) array and where it has data (all False if nothing came)."""
    raw = bytes(block.data()) if block is not None and block.isValid() else b""
    if len(raw) != width * height * np.dtype(dtype).itemsize:
        return np.zeros((height, width), dtype=dtype), np.zeros((height, width), dtype=bool)
    values = np.frombuffer(raw, dtype=dtype).reshape(height, width).copy()
    valid = np.ones((height, width), dtype=bool)
    if block.hasNoDataValue():
        valid &= values != np.array(block.noDataValue()).astype(values.dtype)
    elif block.hasNoData():
        # Without a nodata value, pixels outside the raster or masked are flagged in a bitmap only.
        flags = np.fromiter((block.isNoData(i) for i in range(width * height)), dtype=bool, count=width * height)
        valid &= ~flags.reshape(height, width)
    return values, valid
