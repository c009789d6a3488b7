"""``rsghost:adapt``: a new model for the user's classes from labelled polygons (core/adapt/adapt.py)."""

from __future__ import annotations

from qgis.core import (
    QgsApplication,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from .. import deps
from ..core.errors import RsGhostError
from ..core.options import PRODUCTS, SCALINGS, face_message, parse_bands, parse_stride
from ..qgis_io import options as qopts
from ..qgis_io.source import QgisLayerSource, check_raster_layer, loaded_without_statistics
from .classify import fixed_width


class AdaptAlgorithm(QgsProcessingAlgorithm):
    """Fit a new classifier on chips of the raster inside labelled polygons; write it as an ONNX model."""

    INPUT = "INPUT"
    POLYGONS = "POLYGONS"
    CLASS_FIELD = "CLASS_FIELD"
    MODEL = "MODEL"
    STRIDE = "STRIDE"
    BANDS = "BANDS"
    SCALING = "SCALING"
    PRODUCT = "PRODUCT"
    OFFSET = "OFFSET"
    THREADS = "THREADS"
    OUTPUT = "OUTPUT"

    def __init__(self) -> None:
        super().__init__()
        self._source: QgisLayerSource | None = None
        self._labels = None

    def name(self) -> str:
        """Algorithm id within the provider."""
        return "adapt"

    def displayName(self) -> str:  # noqa: N802 (QGIS API)
        """Name in the toolbox."""
        return "Adapt the model to labelled polygons"

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API)
        """Help shown next to the parameters."""
        return (
            "Makes a model of your own classes in seconds, without torch: chips (tiles of the base model's "
            "footprint, cut every STRIDE model pixels, a quarter tile by default) whose centre lies inside a "
            "polygon get that polygon's CLASS_FIELD value. A new softmax classifier is fitted on the base "
            "model's features plus the mean and standard deviation of every band of the raster (near infrared "
            "helps), and written with the base network as a new ONNX model (OUTPUT) whose card names the base "
            "model, the raster, the polygons, the classes (colours from a categorized style on CLASS_FIELD) and "
            "the accuracy cross-validated with whole polygons held out. Classify with it like any model; it "
            "needs rasters with the same bands. BANDS, SCALING, PRODUCT and OFFSET as in Classify raster tiles."
        )

    def createInstance(self):  # noqa: N802 (QGIS API)
        """A fresh copy for each run."""
        return AdaptAlgorithm()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 (QGIS API)
        """Declare the parameters and outputs."""
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Input raster"))
        # Any geometry: points or lines get the engine's message with the fix, not an empty list.
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                self.POLYGONS, "Labelled polygons", [QgsProcessing.TypeVectorAnyGeometry]
            )
        )
        self.addParameter(QgsProcessingParameterField(self.CLASS_FIELD, "Class field", None, self.POLYGONS))
        default_model = qopts.bundled_model_or_none()
        self.addParameter(
            QgsProcessingParameterFile(
                self.MODEL,
                "Base ONNX model (empty = bundled model)",
                QgsProcessingParameterFile.File,
                "onnx",
                str(default_model) if default_model else None,
                True,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.STRIDE,
                "Chip step in model pixels (0 = a quarter tile)",
                QgsProcessingParameterNumber.Integer,
                0,
                True,
                0,
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
        self.addParameter(QgsProcessingParameterFileDestination(self.OUTPUT, "Adapted model", "ONNX models (*.onnx)"))
        self.addOutput(QgsProcessingOutputNumber("CV_ACCURACY", "Cross-validated accuracy (whole polygons held out)"))
        self.addOutput(QgsProcessingOutputString("SUMMARY", "Classes, chips and held-out recall"))

    def checkParameterValues(self, parameters, context):  # noqa: N802 (QGIS API)
        """INPUT's and POLYGONS' files and the numbers in the plugin's words, then QGIS's checks (no statistics)."""
        try:  # before QGIS's own checks, whose words for these are "not found" or "Incorrect parameter value"
            qopts.check_raster_input(parameters, self.INPUT)
            qopts.check_vector_input(parameters, self.POLYGONS)
            self.build_options(parameters, context)  # a STRIDE or OFFSET that is no number
        except RsGhostError as error:
            return False, face_message(error, "processing")
        with loaded_without_statistics():
            return super().checkParameterValues(parameters, context)

    def prepareAlgorithm(self, parameters, context, feedback) -> bool:  # noqa: N802 (QGIS API)
        """Main thread: check the dependencies, clone the raster's provider and read the polygons."""
        status = deps.check(deps.deps_folder(QgsApplication.qgisSettingsDirPath()))
        if not status.ok:
            raise QgsProcessingException(status.message())
        try:
            with loaded_without_statistics():
                layer = check_raster_layer(self.parameterAsRasterLayer(parameters, self.INPUT, context))
            self._source = QgisLayerSource.from_layer(layer, context.project())
            self._labels = self._read_labels(parameters, context)
        except RsGhostError as error:
            raise QgsProcessingException(face_message(error, "processing")) from None
        return True

    def _read_labels(self, parameters, context):
        """The polygons and their classes; a layer (not a file path) also lends its style's colours."""
        from ..qgis_io.labels import labels_from_layer

        field = self.parameterAsString(parameters, self.CLASS_FIELD, context)
        qopts.check_vector_input(parameters, self.POLYGONS)
        layer = self.parameterAsVectorLayer(parameters, self.POLYGONS, context)
        return labels_from_layer(layer, field)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        """Adapt, log the classes and the held-out accuracy, return the model's path."""
        from ..core.adapt.adapt import adapt

        try:
            options = self.build_options(parameters, context)
            result = adapt(self._source, self._labels, options, feedback.setProgress, feedback.isCanceled)
        except RsGhostError as error:
            raise QgsProcessingException(face_message(error, "processing")) from None
        for warning in [*result.warnings, result.unmeasured_note()]:
            if warning:
                feedback.pushWarning(face_message(warning, "processing"))
        feedback.pushInfo(f"Features: {result.card.training['method']}\nScaling: {result.card.training['scaling']}")
        feedback.pushCommandInfo(fixed_width(result.summary()))  # the log's HTML would collapse the columns
        return {self.OUTPUT: result.out_path, "CV_ACCURACY": result.cv_accuracy, "SUMMARY": result.summary()}

    def build_options(self, parameters, context):
        """The engine options (AdaptOptions) for these parameters."""
        from ..core.adapt.adapt import AdaptOptions

        return AdaptOptions(
            out_path=self.parameterAsFileOutput(parameters, self.OUTPUT, context),
            model_path=self.parameterAsFile(parameters, self.MODEL, context) or None,
            stride=parse_stride(qopts.number_value(self, parameters, self.STRIDE, context, integer=True)),
            bands=parse_bands(self.parameterAsString(parameters, self.BANDS, context)),
            scaling=SCALINGS[self.parameterAsEnum(parameters, self.SCALING, context)],
            offset=qopts.number_value(self, parameters, self.OFFSET, context),
            product=PRODUCTS[self.parameterAsEnum(parameters, self.PRODUCT, context)],
            threads=qopts.number_value(self, parameters, self.THREADS, context, integer=True) or None,
            overwrite=True,  # Processing asked for this destination (and confirmed overwriting)
        )
