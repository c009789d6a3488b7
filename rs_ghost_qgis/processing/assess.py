"""``rsghost:assess``: compare classified tiles with reference polygons."""

from __future__ import annotations

from collections import defaultdict

from qgis.core import (
    QgsCoordinateTransform,
    QgsFeatureRequest,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsSpatialIndex,
)

from ..core.assess import assess, check_classes, harmonise
from ..core.errors import RsGhostError
from ..core.options import face_message
from ..core.outputs import check_not_input, source_path, written

REPORT = "the report (OUTPUT)"


class AssessAlgorithm(QgsProcessingAlgorithm):
    """Confusion matrix, overall accuracy, kappa and per-class F1 as an HTML or CSV report."""

    INPUT = "INPUT"
    PREDICTED_FIELD = "PREDICTED_FIELD"
    REFERENCE = "REFERENCE"
    REFERENCE_FIELD = "REFERENCE_FIELD"
    MIN_COVERAGE = "MIN_COVERAGE"
    OUTPUT = "OUTPUT"

    def name(self) -> str:
        """Algorithm id within the provider."""
        return "assess"

    def displayName(self) -> str:  # noqa: N802 (QGIS API)
        """Name in the toolbox."""
        return "Assess accuracy"

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API)
        """Help shown next to the parameters."""
        return (
            "Compares classified tiles (the polygon output of Classify) with reference polygons that carry "
            "a class field. A tile counts when reference polygons cover at least the minimum share of it; "
            "its reference class is the one covering most of it. Class names are matched ignoring case, "
            "spaces and underscores. The report (HTML or CSV, by the file extension) holds the confusion "
            "matrix, overall accuracy, Cohen's kappa, and per-class precision, recall and F1."
        )

    def createInstance(self):  # noqa: N802 (QGIS API)
        """A fresh copy for each run."""
        return AssessAlgorithm()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 (QGIS API)
        """Declare the parameters and outputs."""
        self.addParameter(
            QgsProcessingParameterFeatureSource(self.INPUT, "Classified tiles", [QgsProcessing.TypeVectorPolygon])
        )
        self.addParameter(
            QgsProcessingParameterField(
                self.PREDICTED_FIELD,
                "Predicted class field (empty = class_name)",
                "class_name",
                self.INPUT,
                QgsProcessingParameterField.Any,
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterFeatureSource(self.REFERENCE, "Reference polygons", [QgsProcessing.TypeVectorPolygon])
        )
        self.addParameter(
            QgsProcessingParameterField(
                self.REFERENCE_FIELD, "Reference class field", None, self.REFERENCE, QgsProcessingParameterField.Any
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.MIN_COVERAGE,
                "Minimum share of a tile covered by reference",
                QgsProcessingParameterNumber.Double,
                0.5,
                False,
                0.01,
                1.0,
            )
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(self.OUTPUT, "Report", "HTML files (*.html);;CSV files (*.csv)")
        )
        self.addOutput(QgsProcessingOutputNumber("OVERALL_ACCURACY", "Overall accuracy"))
        self.addOutput(QgsProcessingOutputNumber("KAPPA", "Kappa"))
        self.addOutput(QgsProcessingOutputNumber("SAMPLES", "Tiles compared"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        """Pair tiles with reference classes, then compute and write the report."""
        tiles = self.parameterAsSource(parameters, self.INPUT, context)
        reference = self.parameterAsSource(parameters, self.REFERENCE, context)
        if tiles is None or reference is None:
            raise QgsProcessingException("Both the classified tiles and the reference polygons are needed.")
        predicted_field = self.parameterAsString(parameters, self.PREDICTED_FIELD, context) or "class_name"
        reference_field = self.parameterAsString(parameters, self.REFERENCE_FIELD, context)
        for source, field in ((tiles, predicted_field), (reference, reference_field)):
            if source.fields().lookupField(field) < 0:
                raise QgsProcessingException(
                    f"The layer has no field '{field}'; choose the field that holds the class names."
                )
        min_coverage = self.parameterAsDouble(parameters, self.MIN_COVERAGE, context)
        path = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        inputs = {
            "the classified tiles (INPUT)": self._source_file(parameters, self.INPUT, context),
            "the reference polygons (REFERENCE)": self._source_file(parameters, self.REFERENCE, context),
        }
        try:
            check_not_input(path, REPORT, inputs)  # QGIS asked before handing over an existing file
        except RsGhostError as error:
            raise QgsProcessingException(face_message(error, "processing")) from None

        pairs, used, polygons = _pair(
            tiles, predicted_field, reference, reference_field, min_coverage, context, feedback
        )
        if feedback.isCanceled():
            raise QgsProcessingException("Cancelled by the user; no report was written.")
        predicted = [p for p, _ in pairs]
        try:
            styled = _styled_classes(self.parameterAsVectorLayer(parameters, self.INPUT, context), predicted_field)
            check_classes([r for _, r in pairs], _model_classes(tiles, predicted, styled))
            result = assess(harmonise([r for _, r in pairs], predicted), predicted)
        except RsGhostError as error:
            raise QgsProcessingException(str(error)) from None
        notes = [
            f"{len(pairs)} tiles with at least {min_coverage:.0%} reference cover were compared.",
            f"Predicted: '{predicted_field}'; reference: '{reference_field}'.",
        ]
        text = result.to_csv() if path.lower().endswith(".csv") else result.to_html(notes=notes)
        try:
            with written(path, REPORT) as tmp:  # a full disk or a crash never leaves half a report
                tmp.write_text(text, encoding="utf-8")
        except RsGhostError as error:
            raise QgsProcessingException(face_message(error, "processing")) from None
        feedback.pushInfo(
            f"Overall accuracy {result.overall_accuracy:.4f}, kappa {result.kappa:.4f} over {len(pairs)} tiles."
        )
        feedback.pushInfo(samples_note(len(pairs), used, polygons, min_coverage))
        return {
            self.OUTPUT: path,
            "OVERALL_ACCURACY": result.overall_accuracy,
            "KAPPA": result.kappa,
            "SAMPLES": len(pairs),
        }

    def _source_file(self, parameters, name: str, context) -> str | None:
        """The file behind a layer parameter, which the report may never replace (None: no file)."""
        layer = self.parameterAsVectorLayer(parameters, name, context)
        return source_path(layer.source()) if layer is not None else None


def samples_note(samples: int, used: int, polygons: int, min_coverage: float) -> str:
    """Why the polygons gave as many samples as they did: a sample is a tile, not a polygon."""
    return (
        f"{polygons} reference polygon(s) gave {samples} sample(s): a sample is a classified tile with at least "
        f"{min_coverage:.0%} of its area inside reference polygons (MIN_COVERAGE); {used} polygon(s) covered such "
        "a tile, and a polygon smaller than a tile, or over tile edges, gives none. For more samples draw larger "
        "polygons (a tile across or more) or lower MIN_COVERAGE."
    )


def _styled_classes(layer, field: str) -> list[str]:
    """The class names as the tile layer's categorized style spells them (the model card's), else []."""
    renderer = layer.renderer() if layer is not None else None
    if renderer is None or renderer.type() != "categorizedSymbol" or renderer.classAttribute() != field:
        return []
    values = [str(category.value()) for category in renderer.categories()]
    return [value for value in values if value and not value.startswith("<")]  # "<doubtful>" is no class


def _model_classes(tiles, predicted: list[str], styled: list[str] = ()) -> list[str]:
    """The model's classes: as the style or the tiles spell them, plus those only prob_<class> fields name
    (lower case: listed only when no other spelling is known)."""
    from ..core.classify.sinks import PROB_PREFIX  # here: the sinks need shapely, which QGIS may lack at start

    names = list(dict.fromkeys([*styled, *predicted]))
    spelled = {"".join(n.split()).replace("_", "").casefold() for n in names}
    for field in tiles.fields().names():
        suffix = field[len(PROB_PREFIX) :] if field.startswith(PROB_PREFIX) else ""
        if suffix and suffix.replace("_", "").casefold() not in spelled:
            names.append(suffix)
    return names


def _pair(tiles, predicted_field, reference, reference_field, min_coverage, context, feedback):
    """(predicted, reference) class per tile covered well enough by reference polygons; how many polygons
    covered such a tile, and how many polygons there were."""
    transform = QgsCoordinateTransform(reference.sourceCrs(), tiles.sourceCrs(), context.transformContext())
    geometries, classes = {}, {}
    request = QgsFeatureRequest().setSubsetOfAttributes([reference_field], reference.fields())
    for feature in reference.getFeatures(request):
        geometry = feature.geometry()
        value = feature[reference_field]
        if geometry.isEmpty() or value is None or str(value) in ("", "NULL"):
            continue
        geometry.transform(transform)
        geometries[feature.id()] = geometry
        classes[feature.id()] = str(value)
    index = QgsSpatialIndex()
    for fid, geometry in geometries.items():
        index.addFeature(fid, geometry.boundingBox())
    pairs, used = [], set()
    total = max(tiles.featureCount(), 1)
    for n, tile in enumerate(tiles.getFeatures()):
        if feedback.isCanceled():
            break
        predicted = tile[predicted_field]
        geometry = tile.geometry()
        area = geometry.area()
        if predicted is None or area <= 0:
            continue
        cover, owners = defaultdict(float), defaultdict(set)
        for fid in index.intersects(geometry.boundingBox()):
            overlap = geometry.intersection(geometries[fid]).area()
            if overlap > 0:
                cover[classes[fid]] += overlap
                owners[classes[fid]].add(fid)
        if cover:
            label, covered = max(cover.items(), key=lambda item: item[1])
            if covered / area >= min_coverage:
                pairs.append((str(predicted), label))
                used |= owners[label]
        feedback.setProgress(100.0 * (n + 1) / total)
    return pairs, len(used), len(geometries)
