"""The Processing face: classify (incl. a batch over 2 rasters), assess, train, bad inputs."""

import sys
from pathlib import Path

import onnx
import pytest
from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsFeature,
    QgsGeometry,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)

from tests.qgis.rasters import CROP, FOREST, WATER, tile_bounds_3857, two_halves, write_geotiff, write_xyz_tiles


def _run(algorithm, parameters, context=None, feedback=None):
    import processing

    return processing.run(algorithm, parameters, context=context, feedback=feedback)


def _classify(raster, model, out_dir: Path, **extra):
    parameters = {
        "INPUT": str(raster),
        "MODEL": str(model),
        "OUTPUT_VECTOR": str(out_dir / "tiles.gpkg"),
        "OUTPUT_RASTER": str(out_dir / "classes.tif"),
    }
    parameters.update(extra)
    return _run("rsghost:classify", parameters)


def _classes(path) -> dict:
    layer = QgsVectorLayer(str(path), "t", "ogr")
    counts = {}
    for feature in layer.getFeatures():
        counts[feature["class_name"]] = counts.get(feature["class_name"], 0) + 1
    return counts


def test_classify_writes_both_outputs(qgis_app, provider, tmp_path, tiny_model):
    raster = write_geotiff(tmp_path / "halves.tif", two_halves())
    result = _classify(raster, tiny_model, tmp_path)
    assert result["TILES_CLASSIFIED"] == 8
    assert _classes(result["OUTPUT_VECTOR"]) == {"Forest": 4, "Water": 4}
    classes = QgsRasterLayer(result["OUTPUT_RASTER"], "c")
    assert classes.isValid() and classes.width() == 4 and classes.height() == 2
    assert "Forest" in result["SUMMARY"] and "hectares" in result["SUMMARY"]


def test_batch_over_two_rasters(qgis_app, provider, tmp_path, tiny_model):
    # What the batch panel does: one run per row, shared context and feedback.
    context, feedback = QgsProcessingContext(), QgsProcessingFeedback()
    expected = {"a": {"Forest": 4, "Water": 4}, "b": {"Crop": 4, "Forest": 4}}
    rasters = {
        "a": write_geotiff(tmp_path / "a.tif", two_halves()),
        "b": write_geotiff(tmp_path / "b.tif", two_halves(left=CROP, right=FOREST), origin=(600000.0, 5800000.0)),
    }
    for name, raster in rasters.items():
        out = tmp_path / f"out_{name}"
        out.mkdir()
        result = _run(
            "rsghost:classify",
            {"INPUT": str(raster), "MODEL": str(tiny_model), "OUTPUT_VECTOR": str(out / "t.gpkg")},
            context,
            feedback,
        )
        assert _classes(result["OUTPUT_VECTOR"]) == expected[name]


def test_extent_mask_stride_bands(qgis_app, provider, tmp_path, tiny_model):
    raster = write_geotiff(tmp_path / "halves.tif", two_halves())
    # Extent: the left half only (forest), given with its CRS.
    result = _classify(
        raster, tiny_model, tmp_path, EXTENT="500000,500600,5899400,5899990 [EPSG:32633]", OUTPUT_RASTER=None
    )
    assert _classes(result["OUTPUT_VECTOR"]) == {"Forest": 4}
    # Mask: a polygon over the right half (water); bands swapped 3,2,1 makes water look red -> Crop.
    mask = QgsVectorLayer("Polygon?crs=EPSG:32633", "mask", "memory")
    feature = QgsFeature()
    feature.setGeometry(QgsGeometry.fromRect(QgsRectangle(500700, 5899400, 501200, 5899990)))
    mask.dataProvider().addFeatures([feature])
    out = tmp_path / "masked"
    out.mkdir()
    result = _classify(raster, tiny_model, out, MASK=mask, BANDS="3,2,1", OUTPUT_RASTER=None)
    assert _classes(result["OUTPUT_VECTOR"]) == {"Crop": 4}
    out = tmp_path / "stride"
    out.mkdir()
    result = _classify(raster, tiny_model, out, STRIDE=16, SCALING=1, OUTPUT_RASTER=None)
    assert result["TILES_CLASSIFIED"] > 8


def test_temporary_output_is_styled_on_load(qgis_app, provider, tmp_path, tiny_model, project):
    import processing

    raster = write_geotiff(tmp_path / "halves.tif", two_halves())
    context = QgsProcessingContext()
    context.setProject(project)
    result = processing.runAndLoadResults(
        "rsghost:classify",
        {"INPUT": str(raster), "MODEL": str(tiny_model), "OUTPUT_VECTOR": "TEMPORARY_OUTPUT"},
        context=context,
    )
    layer = project.mapLayer(result["OUTPUT_VECTOR"])
    assert layer is not None and layer.featureCount() == 8
    assert isinstance(layer.renderer(), QgsCategorizedSymbolRenderer)
    assert layer.name() == "#1 tiles · 32 px" and "Model: tiny" in layer.abstract()


def test_processing_outputs_are_grouped_like_the_dialogs(qgis_app, provider, tmp_path, tiny_model, project):
    import processing

    raster = write_geotiff(tmp_path / "halves.tif", two_halves())
    project.addMapLayer(QgsRasterLayer(str(raster), "halves"))
    runs = []
    for stride, out in ((0, tmp_path / "a"), (16, tmp_path / "b")):
        out.mkdir()
        context = QgsProcessingContext()
        context.setProject(project)
        parameters = {"INPUT": str(raster), "MODEL": str(tiny_model), "STRIDE": stride}
        parameters.update(OUTPUT_VECTOR=str(out / "t.gpkg"), OUTPUT_RASTER=str(out / "c.tif"))
        result = processing.runAndLoadResults("rsghost:classify", parameters, context=context)
        loaded = {lyr.source().split("|")[0]: lyr for lyr in project.mapLayers().values()}
        runs.append([loaded[result[key]] for key in ("OUTPUT_VECTOR", "OUTPUT_RASTER")])
    group = project.layerTreeRoot().children()[0]
    assert group.name() == "halves · tiny" and group.isExpanded()
    (tiles1, classes1), (tiles2, classes2) = runs
    assert [child.layerId() for child in group.children()] == [tiles2.id(), classes2.id(), tiles1.id(), classes1.id()]
    assert [tiles2.name(), classes1.name()] == [
        "#2 tiles · 16 px",
        "#1 class raster · 32 px",
    ]
    ticked = [group.findLayer(lyr.id()).itemVisibilityChecked() for lyr in (tiles2, classes2, tiles1, classes1)]
    assert ticked == [False, True, False, False], "stride 16 overlaps: the class raster alone; run 1 unticked"


def _no_card_model(tiny_model, tmp_path) -> Path:
    model = onnx.load(str(tiny_model))
    del model.metadata_props[:]
    path = tmp_path / "nocard.onnx"
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(
    "case, message",
    [
        ("vector", "INPUT"),
        ("one_band", "band"),
        ("missing_model", "does not exist"),
        ("no_card", "no complete model card"),
        ("outside", "does not overlap"),
    ],
)
def test_bad_inputs_give_messages(qgis_app, provider, tmp_path, tiny_model, case, message):
    raster = write_geotiff(tmp_path / "halves.tif", two_halves())
    parameters = {"INPUT": str(raster), "MODEL": str(tiny_model), "OUTPUT_VECTOR": str(tmp_path / "t.gpkg")}
    if case == "vector":
        parameters["INPUT"] = QgsVectorLayer("Polygon?crs=EPSG:4326", "fields", "memory")
    elif case == "one_band":
        parameters["INPUT"] = str(write_geotiff(tmp_path / "one.tif", two_halves()[:1]))
    elif case == "missing_model":
        parameters["MODEL"] = str(tmp_path / "nothing.onnx")
    elif case == "no_card":
        parameters["MODEL"] = str(_no_card_model(tiny_model, tmp_path))
    elif case == "outside":
        parameters["EXTENT"] = "0,10,0,10 [EPSG:32633]"
    with pytest.raises(QgsProcessingException) as caught:
        _run("rsghost:classify", parameters)
    text = str(caught.value)
    assert message in text and "Traceback" not in text
    assert not (tmp_path / "t.gpkg").exists()


def _polygons(path, rows, field="class"):
    layer = QgsVectorLayer(f"Polygon?crs=EPSG:32633&field={field}:string", "ref", "memory")
    features = []
    for rect, value in rows:
        feature = QgsFeature(layer.fields())
        feature.setGeometry(QgsGeometry.fromRect(QgsRectangle(*rect)))
        feature.setAttributes([value])
        features.append(feature)
    layer.dataProvider().addFeatures(features)
    return layer


def test_assess_reports_matrix_and_metrics(qgis_app, provider, tmp_path, tiny_model):
    raster = write_geotiff(tmp_path / "halves.tif", two_halves())
    tiles = _classify(raster, tiny_model, tmp_path, OUTPUT_RASTER=None)["OUTPUT_VECTOR"]
    # Reference: the left half is forest (right), the right half is called "crop" (wrong).
    reference = _polygons(
        tmp_path, [((500000, 5899360, 500640, 5900000), "forest"), ((500640, 5899360, 501280, 5900000), "Crop")]
    )
    report = tmp_path / "report.html"
    result = _run(
        "rsghost:assess",
        {"INPUT": tiles, "REFERENCE": reference, "REFERENCE_FIELD": "class", "OUTPUT": str(report)},
    )
    assert result["SAMPLES"] == 8
    assert result["OVERALL_ACCURACY"] == pytest.approx(0.5)
    assert result["KAPPA"] == pytest.approx(1 / 3)  # chance agreement 16/64: (0.5 - 0.25) / 0.75
    page = report.read_text()
    assert "Confusion matrix" in page and "Forest" in page
    csv_path = tmp_path / "report.csv"
    parameters = {"INPUT": tiles, "REFERENCE": reference, "REFERENCE_FIELD": "class", "OUTPUT": str(csv_path)}
    _run("rsghost:assess", parameters)
    assert "overall_accuracy,0.5000" in csv_path.read_text()


def test_train_says_what_is_missing(qgis_app, provider, tmp_path):
    # Debian's own Python has no torch: the algorithm must say so, not fail obscurely.
    no_torch = "/usr/bin/python3"
    with pytest.raises(QgsProcessingException, match="No Python with torch"):
        _run("rsghost:train", {"DATA": str(tmp_path), "PYTHON": no_torch, "OUTPUT": str(tmp_path / "run")})
    with pytest.raises(QgsProcessingException, match="training code is not here"):
        _run(
            "rsghost:train",
            {"DATA": str(tmp_path), "PROJECT": str(tmp_path), "PYTHON": sys.executable, "OUTPUT": str(tmp_path / "r")},
        )


def _fake_torch_python(tmp_path) -> Path:
    """An 'interpreter' that passes the torch probe, prints what it was asked and exports a model file."""
    script = tmp_path / "python"
    script.write_text(
        "#!/bin/sh\n"
        '[ "$1" = "-c" ] && { echo 2.5.1; exit 0; }\n'
        'echo "argv: $*"\n'
        'while [ $# -gt 0 ]; do [ "$1" = "--out" ] && out="$2"; shift; done\n'
        'echo "student epoch 1/1: train loss 0.5"\n'
        'mkdir -p "$out" && echo onnx > "$out/g_ghost_regnetx_040_none.onnx"\n'
    )
    script.chmod(0o755)
    return script


def test_train_exports_an_onnx_model_by_default(qgis_app, provider, tmp_path):
    from rs_ghost_qgis.paths import PACKAGE_DIR

    feedback = QgsProcessingFeedback()
    logged = []
    feedback.pushConsoleInfo = logged.append
    feedback.pushInfo = logged.append
    parameters = {"DATA": str(tmp_path), "PYTHON": str(_fake_torch_python(tmp_path)), "OUTPUT": str(tmp_path / "run")}
    parameters["PROJECT"] = str(PACKAGE_DIR.parent)
    result = _run("rsghost:train", parameters, QgsProcessingContext(), feedback)
    argv = next(line for line in logged if line.startswith("argv: "))
    assert argv.startswith("argv: -m training run --distill none --data") and "--student " in argv
    assert result["MODEL"] == str(tmp_path / "run" / "g_ghost_regnetx_040_none.onnx")
    assert any(line.startswith("Exported model: ") for line in logged), logged
    assert not any("teacher" in line for line in logged), logged


def test_local_xyz_tile_folder_is_classified(qgis_app, provider, tmp_path, tiny_model, project):
    zoom, x0, y0 = 14, 8192, 8191  # two tiles just north-east of (0, 0): Web Mercator is true to scale there
    folder = write_xyz_tiles(tmp_path / "xyz", zoom, x0, y0, [[FOREST, WATER]])
    url = f"type=xyz&url=file://{folder.as_posix()}/{{z}}/{{x}}/{{y}}.png&zmin={zoom}&zmax={zoom}"
    layer = QgsRasterLayer(url, "local xyz", "wms")
    assert layer.isValid()
    project.addMapLayer(layer)
    xmin, ymin, _, _ = tile_bounds_3857(zoom, x0, y0)
    _, _, xmax, ymax = tile_bounds_3857(zoom, x0 + 1, y0)
    result = _run(
        "rsghost:classify",
        {
            "INPUT": layer,
            "MODEL": str(tiny_model),
            "EXTENT": f"{xmin},{xmax},{ymin},{ymax} [EPSG:3857]",
            "OUTPUT_VECTOR": str(tmp_path / "xyz_tiles.gpkg"),
        },
    )
    counts = _classes(result["OUTPUT_VECTOR"])
    # Edge tiles reach past the two PNGs, where the provider gives transparent pixels: nodata.
    assert set(counts) - {"nodata"} == {"Forest", "Water"}
    assert counts["Forest"] >= 6 and counts["Water"] >= 6


def test_classify_runs_inside_a_model(qgis_app, provider, tmp_path, tiny_model):
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildParameterSource,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterRasterLayer,
    )

    model = QgsProcessingModelAlgorithm("land cover", "tests")
    parameter = QgsProcessingParameterRasterLayer("raster", "Raster")
    model.addModelParameter(parameter, QgsProcessingModelParameter("raster"))
    child = QgsProcessingModelChildAlgorithm("rsghost:classify")
    child.setChildId("classify")
    child.addParameterSources("INPUT", [QgsProcessingModelChildParameterSource.fromModelParameter("raster")])
    child.addParameterSources("MODEL", [QgsProcessingModelChildParameterSource.fromStaticValue(str(tiny_model))])
    output = QgsProcessingModelOutput("tiles")
    output.setChildId("classify")
    output.setChildOutputName("OUTPUT_VECTOR")
    child.setModelOutputs({"tiles": output})
    model.addChildAlgorithm(child)
    raster = write_geotiff(tmp_path / "halves.tif", two_halves())
    result = _run(model, {"raster": str(raster), "classify:tiles": str(tmp_path / "model_tiles.gpkg")})
    assert _classes(result["classify:tiles"]) == {"Forest": 4, "Water": 4}


def test_missing_dependencies_are_a_message(qgis_app, provider, tmp_path, tiny_model, monkeypatch):
    from rs_ghost_qgis import deps

    missing = deps.DependencyStatus(
        ok=False, problem="RS Ghost cannot run in this QGIS yet: onnxruntime is not installed.", install_command=["py"]
    )
    monkeypatch.setattr(deps, "check", lambda folder: missing)
    raster = write_geotiff(tmp_path / "halves.tif", two_halves())
    feedback = QgsProcessingFeedback()
    with pytest.raises(QgsProcessingException):
        _run("rsghost:classify", {"INPUT": str(raster), "OUTPUT_VECTOR": str(tmp_path / "t.gpkg")}, None, feedback)
    # Processing shows what prepareAlgorithm raised in its log (dialog, qgis_process "ERROR:").
    assert "onnxruntime is not installed" in feedback.textLog()
    assert "Traceback" not in feedback.textLog()


def test_cancel_through_feedback_leaves_no_output(qgis_app, provider, tmp_path, tiny_model):
    import numpy as np

    class CancelOnProgress(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.progressChanged.connect(lambda value: value > 0 and self.cancel())

    big = np.zeros((3, 1536, 1536), dtype=np.uint8)
    big[1] = 150
    raster = write_geotiff(tmp_path / "big.tif", big)
    parameters = {
        "INPUT": str(raster),
        "MODEL": str(tiny_model),
        "STRIDE": 8,
        "OUTPUT_VECTOR": str(tmp_path / "out" / "t.gpkg"),
        "OUTPUT_RASTER": str(tmp_path / "out" / "c.tif"),
    }
    (tmp_path / "out").mkdir()
    feedback = CancelOnProgress()
    errors = []
    feedback.reportError = lambda text, fatalError=False: errors.append(text)
    result = _run("rsghost:classify", parameters, QgsProcessingContext(), feedback)
    assert "OUTPUT_VECTOR" not in result and "TILES_CLASSIFIED" not in result  # no output, no count
    assert any("Cancelled" in text for text in errors), errors
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("cancel", [False, True])
def test_train_subprocess_leaves_no_open_pipe(qgis_app, tmp_path, cancel):
    import gc
    import warnings

    from rs_ghost_qgis.processing.train import _run_streaming

    feedback = QgsProcessingFeedback()
    lines = []
    feedback.pushConsoleInfo = lambda line: (lines.append(line), cancel and feedback.cancel())
    pause = 30 if cancel else 0.2  # a cancelled run is stopped long before its pause ends
    script = f"import time\nprint('epoch 1', flush=True)\ntime.sleep({pause})\nprint('done')"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = _run_streaming([sys.executable, "-c", script], tmp_path, feedback)
        gc.collect()
    assert lines[0] == "epoch 1"
    assert (code != 0) if cancel else (code == 0 and lines == ["epoch 1", "done"])
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == []


def test_offset_parameter_and_the_log_say_what_reached_the_model(qgis_app, provider, tmp_path, tiny_model):
    from tests.core.test_radiometry import write_kind

    raster, _, _ = write_kind(tmp_path / "offset.tif", "offset, no tag")
    base = {"INPUT": str(raster), "MODEL": str(tiny_model), "OUTPUT_VECTOR": str(tmp_path / "t.gpkg")}
    feedback = QgsProcessingFeedback()
    _run("rsghost:classify", base, None, feedback)
    log = feedback.textLog()
    assert "Bands: bands 1,2,3 assumed to hold red, green, blue" in log and "set BANDS to choose" in log
    assert "Scaling: reflectance x 10,000 detected: linear 0..3000 -> 0..255 for all bands (card)" in log
    assert "set OFFSET to 1000" in log and "--offset" not in log
    feedback = QgsProcessingFeedback()
    _run("rsghost:classify", {**base, "OFFSET": 1000, "OUTPUT_VECTOR": str(tmp_path / "t2.gpkg")}, None, feedback)
    assert "offset 1000 removed (as given)" in feedback.textLog() and "probably" not in feedback.textLog()
