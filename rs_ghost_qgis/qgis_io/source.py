"""A RasterSource over a QGIS raster data provider: files, VRTs, WMS and XYZ alike.

The source works on a *clone* of the layer's provider, made on the main thread, so the worker
thread never touches the layer. Reads are resampled by the provider (average when zooming
out, bilinear when zooming in, where the provider can) and reprojected with
QgsRasterProjector when the requested CRS differs from the raster's.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import numpy as np
from osgeo import gdal
from qgis.core import (
    Qgis,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransformContext,
    QgsMapLayer,
    QgsProject,
    QgsProviderRegistry,
    QgsRaster,
    QgsRasterDataProvider,
    QgsRasterLayer,
    QgsRasterProjector,
    QgsRectangle,
)

from ..core.errors import InputError
from ..core.source import Block, Bounds, RasterInfo, finite_pixels, unreadable_block

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
_COLOR_TYPES = (Qgis.ARGB32, Qgis.ARGB32_Premultiplied)
_BAND_PREFIX = re.compile(r"^Band \d+:?\s*")
# Colour interpretations that name what a band holds when it has no description.
_NAMED_COLOURS = {QgsRaster.RedBand: "red", QgsRaster.GreenBand: "green", QgsRaster.BlueBand: "blue"}
CRS_WKT_FLAVOUR = QgsCoordinateReferenceSystem.WKT_PREFERRED
# Providers whose pixels come from a server: "wms" also serves XYZ and WMTS layers.
WEB_PROVIDERS = frozenset({"wms", "wcs", "arcgismapserver"})


def crs_to_wkt(crs: QgsCoordinateReferenceSystem) -> str:
    """The WKT the engine receives for a QGIS CRS ("" when invalid)."""
    return crs.toWkt(CRS_WKT_FLAVOUR) if crs.isValid() else ""


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
        self._crs = provider.crs()
        self._is_color = provider.dataType(1) in _COLOR_TYPES
        self._alpha_band = self._find_alpha_band()
        self._configure_resampling()
        self._info = self._make_info(name)

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

    def _make_info(self, name: str) -> RasterInfo:
        provider = self._provider
        extent = provider.extent()
        width, height = provider.xSize(), provider.ySize()
        if self._is_color:
            dtype, count = "uint8", 3
            nodata: tuple[float | None, ...] = (None, None, None)
            descriptions: tuple[str, ...] = ("red", "green", "blue")
        else:
            source_type = provider.dataType(1)
            if source_type not in _NUMPY_TYPES:
                raise InputError(f"Raster data type {source_type} is not supported (complex or unknown).")
            dtype = np.dtype(_NUMPY_TYPES[source_type]).name
            count = provider.bandCount() - (1 if self._alpha_band else 0)
            nodata = tuple(
                provider.sourceNoDataValue(b) if provider.sourceHasNoDataValue(b) else None for b in range(1, count + 1)
            )
            # Like the rasterio source: a band without a description is named by its colour
            # interpretation, so both faces map an RGB GeoTIFF the same way.
            descriptions = tuple(
                _BAND_PREFIX.sub("", provider.generateBandName(b))
                or _NAMED_COLOURS.get(provider.colorInterpretation(b), "")
                for b in range(1, count + 1)
            )
        if width <= 0 or height <= 0:  # no native size (some WMS): use the extent at 1 unit per pixel
            width, height = max(1, round(extent.width())), max(1, round(extent.height()))
        return RasterInfo(
            name=name,
            width=width,
            height=height,
            band_count=count,
            dtype=dtype,
            crs_wkt=crs_to_wkt(self._crs),
            bounds=(extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum()),
            pixel_size=(extent.width() / width, extent.height() / height),
            nodata=nodata,
            band_descriptions=descriptions,
            path=_local_path(provider),
            metadata=_gdal_metadata(provider),
            web=provider.name() in WEB_PROVIDERS,
        )

    def read(self, bounds: Bounds, crs_wkt: str, width: int, height: int, bands: Sequence[int]) -> Block:
        """Read ``bands`` (1-based) over ``bounds`` in ``crs_wkt`` as width x height pixels."""
        rect = QgsRectangle(*bounds)
        target = crs_from_wkt(crs_wkt) if crs_wkt else self._crs
        interface = self._provider
        if target.isValid() and self._crs.isValid() and target != self._crs:
            projector = QgsRasterProjector()
            projector.setCrs(self._crs, target, self._context)
            projector.setInput(self._provider)
            interface = projector
        valid = np.ones((height, width), dtype=bool)

        def read_band(band: int, dtype):
            gdal.ErrorReset()  # so that a failure below is told with its own reason
            block = interface.block(band, rect, width, height)
            # When GDAL fails (a truncated GeoTIFF, a VRT's missing source) the provider returns
            # an invalid block, and the projector a valid one of nodata; GDAL's error state (this
            # thread's) tells both. Read as nodata, the run would succeed on garbage.
            failed = block is None or not block.isValid() or gdal.GetLastErrorType() >= gdal.CE_Failure
            if failed and not self._info.web:
                raise unreadable_block(self._info, bounds, crs_wkt, _last_gdal_error(band))
            return _decode_block(block, width, height, dtype)

        if self._is_color:
            argb, valid = read_band(1, np.uint32)
            valid &= ((argb >> 24) & 0xFF) > 0
            data = np.stack([((argb >> shift) & 0xFF).astype(np.uint8) for shift in (16, 8, 0)])
            return Block(data=data[[b - 1 for b in bands]], valid=valid)
        dtype = _NUMPY_TYPES[self._provider.dataType(1)]
        layers = []
        for band in bands:
            if band < 1 or band > self._info.band_count:
                raise InputError(f"Band {band} does not exist: the raster has {self._info.band_count} bands.")
            values, band_valid = read_band(band, dtype)
            valid &= band_valid
            layers.append(values)
        if self._alpha_band:
            alpha, _ = read_band(self._alpha_band, dtype)
            valid &= alpha > 0
        data = np.stack(layers) if layers else np.zeros((0, height, width), dtype=dtype)
        # The engine's rule, as in the rasterio source: NaN or inf in any band is nodata.
        return Block(data=data, valid=valid & finite_pixels(data))


def _local_path(provider: QgsRasterDataProvider) -> str:
    """The file behind ``provider``, "" for WMS, XYZ and other sources that are not a local file."""
    parts = QgsProviderRegistry.instance().decodeUri(provider.name(), provider.dataSourceUri())
    path = str(parts.get("path") or "")
    return path if path and os.path.isfile(path) else ""


def _gdal_metadata(provider: QgsRasterDataProvider) -> dict[str, str]:
    """The GDAL metadata items of the dataset and its bands, keyed as the rasterio source keys them.

    The engine looks there for the Sentinel-2 offset tags; QGIS does not expose them, so the
    dataset is opened once more with GDAL. Empty for WMS, XYZ and anything GDAL cannot open.
    """
    if provider.name() != "gdal":
        return {}
    uri = provider.dataSourceUri()
    path = str(QgsProviderRegistry.instance().decodeUri("gdal", uri).get("path") or uri)
    try:  # osgeo's exception mode is process-wide: it may raise or return None
        dataset = gdal.Open(path)
    except RuntimeError:
        dataset = None
    if dataset is None:
        return {}
    items = dict(dataset.GetMetadata() or {})
    for band in range(1, dataset.RasterCount + 1):
        band_items = dataset.GetRasterBand(band).GetMetadata() or {}
        items.update({f"band {band}:{key}": value for key, value in band_items.items()})
    return items


def _last_gdal_error(band: int) -> str:
    """Why the read of ``band`` failed, as GDAL said it in this thread (QGIS only logs it)."""
    message = gdal.GetLastErrorMsg().strip()
    return message or f"the QGIS data provider returned an invalid block for band {band}"


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
