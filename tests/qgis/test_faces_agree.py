"""The three faces (command line, dialog, Processing) build the same engine options from the same
inputs, and refuse the same wrong inputs with the same message, each in its own option names."""

from __future__ import annotations

import pytest
from osgeo import ogr, osr
from qgis.core import (
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsSettings,
    QgsVectorLayer,
)

from rs_ghost_qgis.cli.main import _parser, classify_options, main
from rs_ghost_qgis.core import options as vocabulary
from rs_ghost_qgis.core.model.runtime import load_model
from rs_ghost_qgis.core.options import SCALINGS, OptionError
from rs_ghost_qgis.qgis_io.source import QgisLayerSource
from rs_ghost_qgis.ui.dialog import SETTINGS_PREFIX, ClassifyDialog
from tests.qgis.rasters import FOREST, WATER, two_halves, write_geotiff, write_xyz_tiles

BOX = (500000.0, 5899400.0, 500600.0, 5899990.0)  # the left half of the raster, in its CRS (EPSG:32633)
FIELDS = ("model_path", "stride", "bands", "scaling", "offset", "threads")


@pytest.fixture()
def dialog(qgis_app, qgis_iface, project, qgis_processing, monkeypatch):
    QgsSettings().remove(SETTINGS_PREFIX.rstrip("/"))
    # 'Current map extent' is BOX: a real canvas would widen it to the shape of its window.
    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:32633"))
    monkeypatch.setattr(canvas, "extent", lambda: QgsRectangle(*BOX))
    widget = ClassifyDialog(qgis_iface)
    yield widget
    widget.shutdown()
    widget.deleteLater()


@pytest.fixture()
def raster(tmp_path):
    return write_geotiff(tmp_path / "halves.tif", two_halves(), descriptions=["B4", "B3", "B2"])


def _mask_file(tmp_path):
    """One polygon over the right half, in a GeoPackage (EPSG:32633)."""
    path = tmp_path / "mask.gpkg"
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = ds.CreateLayer("mask", srs, ogr.wkbPolygon)
    feature = ogr.Feature(layer.GetLayerDefn())
    feature.SetGeometry(
        ogr.CreateGeometryFromWkt("POLYGON ((500700 5899400, 501200 5899400, 501200 5899990, 500700 5899400))")
    )
    layer.CreateFeature(feature)
    ds = None
    return path


# Each case: the same inputs, as the three faces take them.
CASES = {
    "box, bands with spaces, stride, scaling, offset": {
        "cli": ["--bbox", ",".join(map(str, BOX)) + ",EPSG:32633", "--bands", "3 2 1", "--stride", "16"]
        + ["--scale", "percentile", "--offset", "1000", "--threads", "1"],
        "processing": {
            "EXTENT": f"{BOX[0]},{BOX[2]},{BOX[1]},{BOX[3]} [EPSG:32633]",
            "BANDS": "3 2 1",
            "STRIDE": 16,
            "SCALING": SCALINGS.index("percentile"),
            "OFFSET": 1000,
            "THREADS": 1,
        },
        "dialog": {
            "area": "canvas",
            "bands": "3 2 1",
            "stride": 16,
            "scaling": "percentile",
            "offset": "1000",
            "threads": 1,
        },
    },
    "mask, bands with semicolons, stride 0 is the tile size": {
        "cli": ["--mask", "{mask}", "--bands", "1;2;3", "--stride", "0"],
        "processing": {"MASK": "{mask}", "BANDS": "1;2;3", "STRIDE": 0},
        "dialog": {"area": "mask_all", "bands": "1;2;3", "stride": 0},
    },
    "whole raster, everything automatic": {"cli": [], "processing": {}, "dialog": {"area": "whole"}},
}


def _cli_options(raster, model, extra):
    args = _parser().parse_args(["classify", str(raster), "--model", str(model), "--out-vector", "t.gpkg", *extra])
    return classify_options(args, args.out_vector, None)


def _processing_parameters(raster, model, extra, mask_layer=None):
    raster = raster if isinstance(raster, QgsRasterLayer) else str(raster)
    parameters = {"INPUT": raster, "MODEL": str(model), "OUTPUT_VECTOR": "TEMPORARY_OUTPUT", **extra}
    if parameters.get("MASK") == "{mask}":
        parameters["MASK"] = mask_layer
    return parameters


def _processing_options(raster, model, extra, mask_layer):
    algorithm = QgsApplication.processingRegistry().createAlgorithmById("rsghost:classify")
    parameters = _processing_parameters(raster, model, extra, mask_layer)
    return algorithm.build_options(parameters, QgsProcessingContext())


def _set_dialog(dialog, layer, model, values, mask_layer=None):
    dialog.select_layer(layer)
    dialog.file_radio.setChecked(True)
    dialog.model_file.setFilePath(str(model))
    dialog.area_combo.setCurrentIndex(dialog.area_combo.findData(values.get("area", "whole")))
    if mask_layer is not None:
        dialog.mask_combo.setLayer(mask_layer)
    dialog.bands_edit.setText(values.get("bands", ""))
    dialog.stride_spin.setValue(values.get("stride", 0))
    dialog.scaling_combo.setCurrentIndex(dialog.scaling_combo.findData(values.get("scaling", "auto")))
    dialog.offset_edit.setText(values.get("offset", ""))
    dialog.threads_spin.setValue(values.get("threads", 0))


def _comparable(options):
    """The options every face sets the same way (outputs and overwriting are each face's own)."""
    area = options.area
    crs = QgsCoordinateReferenceSystem.fromWkt(area.crs_wkt).authid() if area.crs_wkt else None
    bounds = tuple(round(v, 6) for v in area.bounds) if area.bounds else None
    shapes = tuple(geometry.normalize().wkt for geometry in area.geometries) if area.geometries else None
    return {name: getattr(options, name) for name in FIELDS} | {"area": (bounds, shapes, crs)}


@pytest.mark.parametrize("case", list(CASES))
def test_the_faces_build_the_same_options(dialog, provider, project, raster, tiny_model, tmp_path, case):
    inputs = CASES[case]
    mask = _mask_file(tmp_path)
    mask_layer = QgsVectorLayer(str(mask), "mask", "ogr")
    layer = QgsRasterLayer(str(raster), "halves")
    project.addMapLayers([layer, mask_layer])
    cli = _cli_options(raster, tiny_model, [str(mask) if a == "{mask}" else a for a in inputs["cli"]])
    processing = _processing_options(raster, tiny_model, inputs["processing"], mask_layer)
    _set_dialog(dialog, layer, tiny_model, inputs["dialog"], mask_layer)
    shown = _comparable(dialog.collect().options)
    assert _comparable(cli) == _comparable(processing) == shown
    assert shown["area"] != (None, None, None) or case.startswith("whole")


def _cli_error(raster, model, extra, capsys, tmp_path):
    capsys.readouterr()
    assert main(["classify", str(raster), "--model", str(model), "--out-vector", str(tmp_path / "t.gpkg"), *extra]) == 2
    return capsys.readouterr().err.strip().removeprefix("error: ")


def _processing_error(raster, model, extra, mask_layer=None):
    """What Processing says: its parameter check, else the run's exception."""
    import processing

    algorithm = QgsApplication.processingRegistry().createAlgorithmById("rsghost:classify")
    parameters = _processing_parameters(raster, model, extra, mask_layer)
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())  # where the tests' layers are
    ok, message = algorithm.checkParameterValues(parameters, context)
    if not ok:
        return message
    with pytest.raises(QgsProcessingException) as caught:
        processing.run("rsghost:classify", parameters, context=context)
    return str(caught.value)


def _dialog_error(dialog, layer, model, values):
    _set_dialog(dialog, layer, model, values)
    dialog.start()
    assert dialog.task is None
    return dialog.message.text()


@pytest.mark.parametrize("bands", ["0", "3,2,x", "-1 2 3"])
def test_wrong_bands_are_the_same_error_in_each_faces_words(
    dialog, provider, project, raster, tiny_model, tmp_path, capsys, bands
):
    with pytest.raises(OptionError) as caught:
        vocabulary.parse_bands(bands)
    error = caught.value
    assert error.option == "bands"
    layer = QgsRasterLayer(str(raster), "halves")
    project.addMapLayer(layer)
    said = {
        "cli": _cli_error(raster, tiny_model, ["--bands", bands], capsys, tmp_path),
        "processing": _processing_error(raster, tiny_model, {"BANDS": bands}),
        "dialog": _dialog_error(dialog, layer, tiny_model, {"bands": bands}),
    }
    assert said["cli"] == error.in_face("cli") and said["dialog"] == error.in_face("dialog")
    assert error.in_face("processing") in said["processing"]
    assert said["cli"].startswith("--bands takes") and said["processing"].startswith("BANDS takes")
    assert said["dialog"].startswith("Bands takes")


def test_a_stride_that_does_not_divide_the_tile_is_the_same_error(
    dialog, provider, project, raster, tiny_model, tmp_path, capsys
):
    with pytest.raises(OptionError) as caught:
        vocabulary.check_stride(5, load_model(tiny_model, threads=1).card)
    error = caught.value
    layer = QgsRasterLayer(str(raster), "halves")
    project.addMapLayer(layer)
    said = {
        "cli": _cli_error(raster, tiny_model, ["--stride", "5"], capsys, tmp_path),
        "processing": _processing_error(raster, tiny_model, {"STRIDE": 5}),
        "dialog": _dialog_error(dialog, layer, tiny_model, {"stride": 5}),
    }
    assert said["cli"] == error.in_face("cli") and said["dialog"] == error.in_face("dialog")
    assert error.in_face("processing") in said["processing"]
    assert "--stride 5" in said["cli"] and "STRIDE 5" in said["processing"] and said["dialog"].startswith("Stride 5")
    assert not (tmp_path / "t.gpkg").exists()


def test_mask_and_box_together_are_refused_by_every_face_that_takes_both(
    provider, project, raster, tiny_model, tmp_path, capsys
):
    mask = _mask_file(tmp_path)
    mask_layer = QgsVectorLayer(str(mask), "mask", "ogr")
    project.addMapLayer(mask_layer)
    with pytest.raises(OptionError) as caught:
        vocabulary.one_area(object(), object())
    error = caught.value
    box = f"{BOX[0]},{BOX[2]},{BOX[1]},{BOX[3]} [EPSG:32633]"
    said = {
        "cli": _cli_error(
            raster, tiny_model, ["--mask", str(mask), "--bbox", "500000,5899400,500600,5899990"], capsys, tmp_path
        ),
        "processing": _processing_error(raster, tiny_model, {"MASK": "{mask}", "EXTENT": box}, mask_layer),
    }
    assert said["cli"] == error.in_face("cli") == "Give either --mask or --bbox, not both."
    assert error.in_face("processing") == "Give either MASK or EXTENT, not both." in said["processing"]


def test_a_web_layer_needs_an_area_in_the_dialog_and_in_processing(dialog, provider, project, tiny_model, tmp_path):
    zoom, x0, y0 = 14, 8192, 8191
    folder = write_xyz_tiles(tmp_path / "xyz", zoom, x0, y0, [[FOREST, WATER]])
    url = f"type=xyz&url=file://{folder.as_posix()}/{{z}}/{{x}}/{{y}}.png&zmin={zoom}&zmax={zoom}"
    layer = QgsRasterLayer(url, "tiles", "wms")
    project.addMapLayer(layer)
    said = {
        "processing": _processing_error(layer, tiny_model, {}),
        "dialog": _dialog_error(dialog, layer, tiny_model, {"area": "whole"}),
    }
    with pytest.raises(OptionError) as caught:
        vocabulary.check_area(vocabulary.one_area(), QgisLayerSource.from_layer(layer).info)
    assert caught.value.option == "area"
    assert said["dialog"] == caught.value.in_face("dialog") and caught.value.in_face("processing") in said["processing"]
    assert "Current map extent" in said["dialog"] and "EXTENT or MASK" in said["processing"]


def test_no_output_is_the_same_error_on_the_command_line_and_in_the_dialog(dialog, project, raster, tiny_model, capsys):
    layer = QgsRasterLayer(str(raster), "halves")
    project.addMapLayer(layer)
    assert main(["classify", str(raster), "--model", str(tiny_model)]) == 2
    cli = capsys.readouterr().err.strip().removeprefix("error: ")
    _set_dialog(dialog, layer, tiny_model, {})
    dialog.polygons_check.setChecked(False)
    dialog.raster_check.setChecked(False)
    dialog.start()
    with pytest.raises(OptionError) as caught:
        vocabulary.check_outputs(None, None)
    assert {"cli": cli, "dialog": dialog.message.text()} == {
        face: caught.value.in_face(face) for face in ("cli", "dialog")
    }
