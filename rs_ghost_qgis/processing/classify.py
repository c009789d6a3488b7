"""``rsghost:classify``: the engine behind a Processing face (toolbox, batch, modeler, qgis_process)."""

from __future__ import annotations

import os
from pathlib import Path

from qgis.core import (
    QgsApplication,
    QgsDataSourceUri,
    QgsFeature,
    QgsFeatureRequest,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsGeometry,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingFeatureSource,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProviderRegistry,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from .. import deps
from ..core.classify.evidence import RULE_SUMMARY
from ..core.errors import Cancelled, OutputError, RsGhostError
from ..core.options import (
    PRODUCTS,
    SCALINGS,
    check_area,
    check_threads,
    face_message,
    one_area,
    parse_bands,
    parse_stride,
)
from ..qgis_io import options as qopts
from ..qgis_io.source import QgisLayerSource, check_raster_layer, crs_from_wkt, loaded_without_statistics
from ..qgis_io.style import add_output, next_run, shown_output, start_run, style_class_raster, style_tiles


def _check_vector_destination(destination: str) -> None:
    """Refuse a GeoPackage file holding anything besides our layer: Processing replaces the whole file.

    Other vector layers, raster tables, attribute tables and the file's metadata would all be
    lost (core.classify.sinks.other_layers says what counts). A destination inside a GeoPackage
    (``ogr:dbname=... table=...``, "Save to GeoPackage...") adds a layer and keeps the rest.
    """
    path = Path(destination or "")
    if path.suffix.lower() != ".gpkg":
        return  # a layer URI (ogr:dbname=...), memory or a temporary output
    from ..core.classify.sinks import other_layers, short_list

    others = other_layers(path, path.stem)  # Processing names the layer of a plain file after the file
    if others:
        raise OutputError(
            f"OUTPUT_VECTOR {path} holds other layers ({short_list(others)}) that Processing would delete when it "
            "replaces the file; choose another file name, or 'Save to GeoPackage...' to add the tiles to it as "
            "a new layer."
        )


class ClassifyAlgorithm(QgsProcessingAlgorithm):
    """Classify a raster layer tile by tile into the model's land-cover classes."""

    INPUT = "INPUT"
    MODEL = "MODEL"
    EXTENT = "EXTENT"
    MASK = "MASK"
    STRIDE = "STRIDE"
    BANDS = "BANDS"
    SCALING = "SCALING"
    OFFSET = "OFFSET"
    PRODUCT = "PRODUCT"
    THREADS = "THREADS"
    WATER_RULE = "WATER_RULE"
    NIR_BAND = "NIR_BAND"
    MIN_CONFIDENCE = "MIN_CONFIDENCE"
    OUTPUT_VECTOR = "OUTPUT_VECTOR"
    OUTPUT_RASTER = "OUTPUT_RASTER"

    def __init__(self) -> None:
        super().__init__()
        self._source: QgisLayerSource | None = None  # made on the main thread in prepareAlgorithm

    def name(self) -> str:
        """Algorithm id within the provider."""
        return "classify"

    def displayName(self) -> str:  # noqa: N802 (QGIS API)
        """Name in the toolbox."""
        return "Classify raster tiles"

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API)
        """Help shown next to the parameters."""
        return (
            "Cuts the raster into square tiles at the model's ground sampling distance (in a metric CRS, "
            "also for rasters in degrees) and classifies each tile with the ONNX scene classifier. "
            "Outputs: one polygon per tile with class_id, class_name and confidence, and a class raster. "
            "MODEL: an ONNX file with an RS Ghost model card (empty = the bundled model). EXTENT or MASK "
            "limits the area (one of them, not both; a mask can use selected features only; a web layer "
            "needs one). STRIDE: the step between tiles in model pixels (empty or 0 = the tile size, no "
            "overlap). BANDS: raster bands for the model's channels, numbered from 1, e.g. '1,2,3' or "
            "'1 2 3' (empty = from the band descriptions, else the first bands, said in the log). "
            "SCALING: how pixel values reach the model's 0-255 domain: auto (8-bit as it is; reflectance "
            "x 10,000 or 0..1 with the model card's linear mapping, one scale for all bands; other data one "
            "2-98 % range for all bands), none, card, percentile (one range for all bands) or "
            "percentile-per-band. OFFSET: raw value removed before the card mapping, e.g. 1000 for "
            "Sentinel-2 products of processing baseline 04.00 and later (empty = from BOA_ADD_OFFSET / "
            "RADIO_ADD_OFFSET in the raster's metadata, else 0). WATER_RULE: " + RULE_SUMMARY + " (NIR_BAND, "
            "0 = found by band description or wavelength; fields water_pixels, vegetated_pixels, network_class, "
            "water_rule). MIN_CONFIDENCE: tiles below it are marked doubtful and hatched (empty = the model "
            "card's, else 0.5). The log says what was chosen and why."
        )

    def createInstance(self):  # noqa: N802 (QGIS API)
        """A fresh copy for each run."""
        return ClassifyAlgorithm()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 (QGIS API)
        """Declare the parameters and outputs."""
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Input raster"))
        default_model = qopts.bundled_model_or_none()
        self.addParameter(
            QgsProcessingParameterFile(
                self.MODEL,
                "ONNX model with a model card (empty = bundled model)",
                QgsProcessingParameterFile.File,
                "onnx",
                str(default_model) if default_model else None,
                True,
            )
        )
        self.addParameter(QgsProcessingParameterExtent(self.EXTENT, "Extent (empty = whole raster)", optional=True))
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                self.MASK, "Mask polygons (tiles inside them)", [QgsProcessing.TypeVectorPolygon], optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.STRIDE, "Stride in model pixels (0 = tile size)", QgsProcessingParameterNumber.Integer, 0, True, 0
            )
        )
        self.addParameter(QgsProcessingParameterString(self.BANDS, "Bands, e.g. 1,2,3 (empty = auto)", "", False, True))
        self.addParameter(QgsProcessingParameterEnum(self.SCALING, "Input scaling", list(SCALINGS), False, 0))
        self.addParameter(
            QgsProcessingParameterEnum(
                self.PRODUCT, "Sentinel-2 product level (auto: metadata, else values)", list(PRODUCTS), False, 0
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.OFFSET,
                "Offset removed before the card mapping (empty = from the metadata)",
                QgsProcessingParameterNumber.Double,
                None,
                True,
                0,
            )
        )
        threads = QgsProcessingParameterNumber(
            self.THREADS, "CPU threads (0 = all)", QgsProcessingParameterNumber.Integer, 0, True, 0
        )
        threads.setFlags(threads.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(threads)
        self.addParameter(
            QgsProcessingParameterBoolean(
                self.WATER_RULE, "Water needs water pixels (near-infrared rule on top of the network)", True
            )
        )
        nir_band = QgsProcessingParameterNumber(
            self.NIR_BAND,
            "Near-infrared band (0 = by band description or wavelength)",
            QgsProcessingParameterNumber.Integer,
            0,
            True,
            0,
        )
        nir_band.setFlags(nir_band.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(nir_band)
        min_confidence = QgsProcessingParameterNumber(
            self.MIN_CONFIDENCE,
            "Doubtful below this confidence (empty = the model card's, else 0.5)",
            QgsProcessingParameterNumber.Double,
            None,
            True,
            0,
            1,
        )
        min_confidence.setFlags(min_confidence.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(min_confidence)
        self.addParameter(
            QgsProcessingParameterFeatureSink(self.OUTPUT_VECTOR, "Classified tiles", QgsProcessing.TypeVectorPolygon)
        )
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT_RASTER, "Class raster", optional=True))
        self.addOutput(QgsProcessingOutputNumber("TILES_CLASSIFIED", "Tiles classified"))
        self.addOutput(QgsProcessingOutputString("SUMMARY", "Area per class"))
        self.addOutput(QgsProcessingOutputNumber("TILES_WATER_RULE", "Tiles the water rule changed"))
        self.addOutput(QgsProcessingOutputNumber("TILES_DOUBTFUL", "Tiles below the confidence threshold"))

    def checkParameterValues(self, parameters, context):  # noqa: N802 (QGIS API)
        """Refuse what can be told before the run (packages, model, bands) with one clear message.

        An exception raised while the algorithm runs is printed three times by qgis_process: QGIS
        logs it as critical, reports it to the feedback ("ERROR:"), and the feedback logs it again.
        A failed check is reported once, here and in the Processing dialog alike.
        """
        try:  # before QGIS's own checks, whose words for these are "not found" or "Incorrect parameter value"
            qopts.check_raster_input(parameters, self.INPUT)
            qopts.check_vector_input(parameters, self.MASK)
            self._check_numbers(parameters, context)
        except RsGhostError as error:
            return False, face_message(error, "processing")
        with loaded_without_statistics():  # QGIS loads INPUT here when it is given as a path
            ok, message = super().checkParameterValues(parameters, context)
        if not ok:
            return ok, message
        status = deps.check(deps.deps_folder(QgsApplication.qgisSettingsDirPath()))
        if not status.ok:
            return False, status.message()
        try:
            with loaded_without_statistics():
                self._check_inputs(parameters, context)
        except RsGhostError as error:
            return False, face_message(error, "processing")
        return True, ""

    def _check_numbers(self, parameters, context) -> None:
        """InputError naming a number parameter whose value does not parse or is out of range."""
        parse_stride(qopts.number_value(self, parameters, self.STRIDE, context, integer=True))
        check_threads(qopts.number_value(self, parameters, self.THREADS, context, integer=True))
        qopts.number_value(self, parameters, self.NIR_BAND, context, integer=True)
        for name in (self.OFFSET, self.MIN_CONFIDENCE):
            qopts.number_value(self, parameters, name, context)

    def _check_inputs(self, parameters, context) -> None:
        """Raise RsGhostError for a layer, model, area, stride or band mapping the run would refuse."""
        from ..core.classify import workload
        from ..core.classify.evidence import find_evidence_bands
        from ..core.model.runtime import load_model
        from ..core.radiometry.bands import choose_bands

        layer = check_raster_layer(self.parameterAsRasterLayer(parameters, self.INPUT, context))
        source = QgisLayerSource.from_layer(layer, context.project())
        options = self.build_options(parameters, context)
        _check_vector_destination(self.parameterAsOutputLayer(parameters, self.OUTPUT_VECTOR, context))
        self._check_not_inputs(parameters, context)
        check_area(options.area, source.info)
        card = load_model(options.model_path, threads=1).card
        bands, _ = choose_bands(source, card, options.bands)
        find_evidence_bands(source.info, bands, card.bands, options.nir_band)  # NIR_BAND beyond the raster
        workload.plan(source.info, card, options.area, options.stride)  # area outside, bad stride, web too big

    def prepareAlgorithm(self, parameters, context, feedback) -> bool:  # noqa: N802 (QGIS API)
        """Main thread: check the dependencies and clone the raster's provider for the worker."""
        status = deps.check(deps.deps_folder(QgsApplication.qgisSettingsDirPath()))
        if not status.ok:  # a message with the exact fix, not an ImportError traceback
            raise QgsProcessingException(status.message())
        try:
            with loaded_without_statistics():
                layer = check_raster_layer(self.parameterAsRasterLayer(parameters, self.INPUT, context))
            self._source = QgisLayerSource.from_layer(layer, context.project())
        except RsGhostError as error:
            raise QgsProcessingException(face_message(error, "processing")) from None
        return True

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        """Build the engine options from the parameters, run, style the outputs on load."""
        try:
            return self._classify(self._source, parameters, context, feedback)
        except Cancelled as cancelled:
            # Not raised: QGIS 3.22 never frees an exception a Python algorithm raises, and its
            # traceback's frames reach the batch dialog's feedback, whose progress task then runs
            # on after a cancel and keeps QGIS from quitting. A cancelled run ends as QGIS's own
            # algorithms end, with no outputs (none were written) and the reason in the log.
            feedback.reportError(str(cancelled), fatalError=False)
            context.setLayersToLoadOnCompletion({})
            return {}
        except RsGhostError as error:
            raise QgsProcessingException(face_message(error, "processing")) from None

    def _check_not_inputs(self, parameters, context) -> None:
        """No output may be a file the run reads (core/outputs.py), though Processing may replace an output."""
        from ..core.outputs import check_not_input, source_path

        def file_of(layer) -> str | None:
            return source_path(layer.source()) if layer is not None else None

        inputs = {
            "the raster (INPUT)": file_of(self.parameterAsRasterLayer(parameters, self.INPUT, context)),
            "the mask (MASK)": file_of(self.parameterAsVectorLayer(parameters, self.MASK, context)),
            "the model (MODEL)": self.parameterAsFile(parameters, self.MODEL, context) or None,
        }
        for name in (self.OUTPUT_VECTOR, self.OUTPUT_RASTER):
            destination = self.parameterAsOutputLayer(parameters, name, context)
            if destination:
                check_not_input(source_path(destination), f"the output ({name})", inputs)

    def build_options(self, parameters, context, out_raster: str | None = None):
        """The engine options (ClassifyOptions) for these parameters; the tiles go to the sink."""
        from ..core.classify.pipeline import ClassifyOptions

        mask, box = None, None
        qopts.check_vector_input(parameters, self.MASK)
        source = self.parameterAsSource(parameters, self.MASK, context)
        if source is not None:
            # The engine repairs invalid polygons and says so; Processing's own check would abort
            # QGIS on a self-intersecting ring raised inside this generator.
            skip_check = QgsProcessingFeatureSource.FlagSkipGeometryValidityChecks
            features = source.getFeatures(QgsFeatureRequest(), skip_check)
            geometries = (f.geometry() for f in features)
            mask = qopts.area_from_geometries(geometries, source.sourceCrs(), "The mask")
        if parameters.get(self.EXTENT):
            extent_crs = self.parameterAsExtentCrs(parameters, self.EXTENT, context)
            box = qopts.area_from_extent(self.parameterAsExtent(parameters, self.EXTENT, context), extent_crs)
        return ClassifyOptions(
            model_path=self.parameterAsFile(parameters, self.MODEL, context) or None,
            area=one_area(mask, box),
            stride=parse_stride(qopts.number_value(self, parameters, self.STRIDE, context, integer=True)),
            bands=parse_bands(self.parameterAsString(parameters, self.BANDS, context)),
            scaling=SCALINGS[self.parameterAsEnum(parameters, self.SCALING, context)],
            offset=qopts.number_value(self, parameters, self.OFFSET, context),
            product=PRODUCTS[self.parameterAsEnum(parameters, self.PRODUCT, context)],
            threads=qopts.number_value(self, parameters, self.THREADS, context, integer=True) or None,
            water_rule=self.parameterAsBoolean(parameters, self.WATER_RULE, context),
            nir_band=qopts.number_value(self, parameters, self.NIR_BAND, context, integer=True) or None,
            min_confidence=qopts.number_value(self, parameters, self.MIN_CONFIDENCE, context),
            out_raster=out_raster,
            overwrite=True,  # Processing asked for this destination (and confirmed overwriting)
        )

    def _classify(self, source: QgisLayerSource, parameters, context, feedback) -> dict:
        from ..core.classify.pipeline import classify
        from ..core.model.runtime import load_model

        raster_path = self.parameterAsOutputLayer(parameters, self.OUTPUT_RASTER, context) or None
        options = self.build_options(parameters, context, raster_path)
        # Again here: a caller may skip checkParameterValues, and the file may have changed since.
        _check_vector_destination(self.parameterAsOutputLayer(parameters, self.OUTPUT_VECTOR, context))
        self._check_not_inputs(parameters, context)
        check_area(options.area, source.info)
        model = load_model(options.model_path, options.threads)  # once: for the size, then the run
        self._log_workload(source, model.card, options, feedback)
        sink = FeatureSinkAdapter(self, parameters, context)
        result = classify(
            source,
            options,
            progress=feedback.setProgress,
            is_canceled=feedback.isCanceled,
            vector_sink=sink,
            warn=lambda text: feedback.pushWarning(face_message(text, "processing")),
            model=model,
        )
        feedback.pushInfo(f"Bands: {face_message(result.bands_note, 'processing')}\nScaling: {result.scaling_used}")
        feedback.pushCommandInfo(fixed_width(result.summary_table()))
        name = qopts.model_name(options.model_path)
        loader = _RunLoader(source.info.name, name, options.stride, result, tiles=bool(sink.dest_id))
        outputs = {
            "TILES_CLASSIFIED": result.tiles_classified,
            "SUMMARY": result.summary_table(),
            "TILES_WATER_RULE": result.evidence.tiles_changed,
            "TILES_DOUBTFUL": result.evidence.tiles_doubtful,
        }
        if sink.dest_id:
            outputs[self.OUTPUT_VECTOR] = sink.dest_id
            _style_on_load(context, sink.dest_id, "tiles", loader)
        if result.out_raster:
            outputs[self.OUTPUT_RASTER] = str(result.out_raster)
            _style_on_load(context, str(result.out_raster), "raster", loader)
        return outputs

    def _log_workload(self, source: QgisLayerSource, card, options, feedback) -> None:
        """Say how big the run is before it starts; an area too big for a web layer is refused here."""
        from ..core.classify import workload

        feedback.pushInfo(f"Size: {workload.plan(source.info, card, options.area, options.stride).describe()}")


def fixed_width(text: str) -> str:
    """Aligned text for the Processing log: its command lines use a monospace font, but HTML
    collapses runs of spaces (QGIS 3.22 has no pushFormattedMessage); no-break spaces keep them.
    """
    return text.replace(" ", "\u00a0")


class FeatureSinkAdapter:
    """The engine's VectorSink protocol over a Processing feature sink (created when the engine opens it)."""

    _TYPES = {"int": QVariant.Int, "float": QVariant.Double, "str": QVariant.String}

    def __init__(self, algorithm: ClassifyAlgorithm, parameters, context) -> None:
        self._algorithm = algorithm
        self._parameters = parameters
        self._context = context
        self.sink = None
        self.dest_id = ""
        self._fields = QgsFields()
        self._into_existing_file = False  # a layer added to a file that was there before: abort keeps the file

    def open(self, fields, crs_wkt: str) -> None:
        """Create the Processing sink with the engine's fields and CRS."""
        for spec in fields:
            self._fields.append(QgsField(spec.name, self._TYPES[spec.kind]))
        destination = self._algorithm.parameterAsOutputLayer(
            self._parameters, ClassifyAlgorithm.OUTPUT_VECTOR, self._context
        )
        self._into_existing_file = _adds_to_existing_file(destination or "")
        self.sink, self.dest_id = self._algorithm.parameterAsSink(
            self._parameters,
            ClassifyAlgorithm.OUTPUT_VECTOR,
            self._context,
            self._fields,
            QgsWkbTypes.Polygon,
            crs_from_wkt(crs_wkt),
        )
        if self.sink is None:
            raise OutputError("The polygon output cannot be created; check its path or format.")

    def add(self, tiles) -> None:
        """Write a batch of tiles."""
        features = []
        for tile in tiles:
            feature = QgsFeature(self._fields)
            geometry = QgsGeometry()
            geometry.fromWkb(tile.wkb)
            feature.setGeometry(geometry)
            feature.setAttributes(list(tile.attributes))
            features.append(feature)
        if not self.sink.addFeatures(features, QgsFeatureSink.FastInsert):
            raise OutputError(f"Writing tiles to the polygon output failed: {self.sink.lastError()}")

    def commit(self) -> None:
        """Processing finalises the sink when the algorithm returns."""
        self.sink.flushBuffer()

    def abort(self) -> None:
        """Close the sink and delete what it wrote so a cancelled run leaves nothing.

        That is the file it created, or only our layer of a file that was there before: never
        the other layers and tables of a GeoPackage the tiles were added to.
        """
        self.sink = None  # closes the file
        parts = QgsProviderRegistry.instance().decodeUri("ogr", self.dest_id) if self.dest_id else {}
        path = parts.get("path", "")
        if path and os.path.isfile(path):
            if self._into_existing_file:
                _drop_layer(path, parts.get("layerName") or "")
            else:
                os.remove(path)
        self.dest_id = ""


def _adds_to_existing_file(destination: str) -> bool:
    """Whether a Processing destination adds a layer to an existing file (``ogr:dbname='...' table=...``).

    Processing then writes into that file and keeps its other layers; a plain file name
    replaces the file (which _check_vector_destination checked holds nothing else).
    """
    if not destination.startswith("ogr:"):
        return False
    return os.path.isfile(QgsDataSourceUri(destination[len("ogr:") :]).database())


def _drop_layer(path: str, layer_name: str) -> None:
    """Delete the vector layer ``layer_name`` from the file ``path``, leaving everything else in it."""
    from osgeo import gdal, ogr

    # A failure leaves the layer behind, never more: the error that aborted the run is the one told.
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        ds = ogr.Open(path, 1)  # osgeo's exception mode is QGIS's to choose: None or RuntimeError
        names = [ds.GetLayer(i).GetName() for i in range(ds.GetLayerCount())] if ds is not None else []
        if layer_name in names:
            ds.DeleteLayer(names.index(layer_name))
        ds = None
    except RuntimeError:
        pass
    finally:
        gdal.PopErrorHandler()


class _RunLoader:
    """Styles and groups one run's outputs as they are loaded, like the dialog does (main thread).

    The first output loaded numbers the run and unticks the previous run of the same raster and
    model; both outputs then join that run's group.
    """

    def __init__(self, raster_name: str, model_name: str, stride: int | None, result, tiles: bool) -> None:
        self.raster_name, self.model_name, self.result = raster_name, model_name, result
        self.stride_px = stride or result.card.tile_size
        self.shown = shown_output(tiles, bool(result.out_raster), result.overlapping)
        self.run, self.group = None, None

    def load(self, layer, kind: str, project) -> None:
        """Style ``layer`` (the ``kind`` output) with the model card and put it in the run's group."""
        card, areas = self.result.card, self.result.areas
        if kind == "tiles":
            style_tiles(layer, card, areas, self.result.evidence)
        else:
            style_class_raster(layer, card, areas)
        if self.run is None:
            self.run = next_run(project, self.raster_name, self.model_name, self.stride_px, card.gsd_m)
            self.group = start_run(project, self.run)
        add_output(project, self.group, layer, self.run, kind, shown=kind == self.shown)


class _StylePostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Hands a loaded output to its run's loader, on the main thread."""

    def __init__(self, kind: str, loader: _RunLoader) -> None:
        super().__init__()
        self.kind, self.loader = kind, loader

    def postProcessLayer(self, layer, context, feedback) -> None:  # noqa: N802 (QGIS API)
        """Apply the land-cover style; group the layer with its run."""
        self.loader.load(layer, self.kind, layer.project() or context.project())


_POST_PROCESSORS: list = []  # Processing does not own Python post-processors: keep them alive


def _style_on_load(context, dest: str, kind: str, loader: _RunLoader) -> None:
    if context.willLoadLayerOnCompletion(dest):
        details = context.layerToLoadOnCompletionDetails(dest)
        details.name = kind  # named by the loader once the run has its number
        processor = _StylePostProcessor(kind, loader)
        _POST_PROCESSORS.append(processor)
        details.setPostProcessor(processor)
