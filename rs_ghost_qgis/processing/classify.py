"""``rsghost:classify``: the engine behind a Processing face (toolbox, batch, modeler, qgis_process)."""

from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
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
)

from ..core.errors import RsGhostError
from ..qgis_io import run as qrun

SCALINGS = ["auto", "none", "card", "percentile"]


class ClassifyAlgorithm(QgsProcessingAlgorithm):
    """Classify a raster layer tile by tile into the model's land-cover classes."""

    INPUT = "INPUT"
    MODEL = "MODEL"
    EXTENT = "EXTENT"
    MASK = "MASK"
    STRIDE = "STRIDE"
    BANDS = "BANDS"
    SCALING = "SCALING"
    THREADS = "THREADS"
    OUTPUT_VECTOR = "OUTPUT_VECTOR"
    OUTPUT_RASTER = "OUTPUT_RASTER"

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
            "MODEL: an ONNX file with an RS Ghost model card (empty = the bundled model). EXTENT and MASK "
            "limit the area (a mask can use selected features only). STRIDE: the step between tiles in "
            "model pixels (empty or 0 = the tile size, no overlap). BANDS: raster bands for the model's "
            "channels, e.g. '1,2,3' (empty = from the band descriptions, else the first bands). SCALING: how "
            "pixel values reach the model's 0-255 domain: auto (by data type), none, card (the model "
            "card's raw range, e.g. 0-3000 for Sentinel-2 reflectance) or percentile (2-98 % stretch)."
        )

    def createInstance(self):  # noqa: N802 (QGIS API)
        """A fresh copy for each run."""
        return ClassifyAlgorithm()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 (QGIS API)
        """Declare the parameters and outputs."""
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Input raster"))
        default_model = qrun.bundled_model_or_none()
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
        self.addParameter(QgsProcessingParameterEnum(self.SCALING, "Input scaling", SCALINGS, False, 0))
        threads = QgsProcessingParameterNumber(
            self.THREADS, "CPU threads (0 = all)", QgsProcessingParameterNumber.Integer, 0, True, 0
        )
        threads.setFlags(threads.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(threads)
        self.addParameter(
            QgsProcessingParameterFeatureSink(self.OUTPUT_VECTOR, "Classified tiles", QgsProcessing.TypeVectorPolygon)
        )
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT_RASTER, "Class raster", optional=True))
        self.addOutput(QgsProcessingOutputNumber("TILES_CLASSIFIED", "Tiles classified"))
        self.addOutput(QgsProcessingOutputString("SUMMARY", "Area per class"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        """Build the engine options from the parameters, run, style the outputs on load."""
        try:
            return qrun.run_algorithm(self, parameters, context, feedback)
        except RsGhostError as error:
            raise QgsProcessingException(str(error)) from None
