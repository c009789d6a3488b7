"""Issue 24: a GeoPackage's other content is never lost; complex rasters and local CRSs are refused.

(Bad training flags: tests/training/test_hardening_training.py.)

Each test writes its own inputs and runs the command line as a user would (``main``): one
``error:`` line and exit code 2 (classify-many: a ``failed:`` line and exit 3), and nothing
written or changed that the run did not own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from osgeo import gdal, ogr, osr

from rs_ghost_qgis.cli import many
from rs_ghost_qgis.cli.main import main
from rs_ghost_qgis.core.classify.sinks import other_layers
from rs_ghost_qgis.core.crs import transform_xy
from rs_ghost_qgis.core.errors import InputError
from tests.core.engine_data import class_pattern, write_hyperspectral, write_mask, write_raster

PATTERN = np.array([[0, 1, 2], [2, 1, 0], [1, 1, 1]])


@pytest.fixture
def scene(tmp_path) -> Path:
    return write_raster(tmp_path / "scene.tif", class_pattern(PATTERN, 32))


def _error_line(capfd) -> str:
    """The one error said on stderr (no traceback, no GDAL 'ERROR' lines)."""
    err = capfd.readouterr().err
    assert "Traceback" not in err and "ERROR " not in err, err
    lines = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


def _classify(raster: Path, model: Path, *extra: str) -> int:
    return main(["classify", str(raster), "--model", str(model), "--threads", "1", *extra])


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- (1) a GeoPackage's other content is never lost ------------------------------------------


def _raster_geopackage(path: Path, source: Path) -> np.ndarray:
    """A GeoPackage holding one raster tiles table (as `gdal_translate -of GPKG` makes); returns its pixels."""
    gdal.Translate(str(path), str(source), format="GPKG")
    return _pixels(path)


def _pixels(path: Path) -> np.ndarray:
    """The pixels of a raster file (fails if GDAL no longer recognises it)."""
    with rasterio.open(path) as ds:
        return ds.read()


def test_overwrite_keeps_a_geopackage_holding_a_raster(scene, tiny_model, tmp_path, capfd):
    # It replaced the file: the class layer alone was left, and GDAL no longer saw a raster.
    out = tmp_path / "out"
    out.mkdir()
    project = out / "project.gpkg"
    pixels = _raster_geopackage(project, scene)
    before = project.read_bytes()
    assert _classify(scene, tiny_model, "--out-vector", str(project), "--overwrite") == 2
    line = _error_line(capfd)
    assert "raster project" in line and "--overwrite" in line and "choose another file name for --out-vector" in line
    assert project.read_bytes() == before
    np.testing.assert_array_equal(_pixels(project), pixels)
    assert _files(out) == ["project.gpkg"]  # no temporary left


def _attribute_table(path: Path) -> None:
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    ds.CreateLayer("notes", geom_type=ogr.wkbNone)


def _plain_table(path: Path) -> None:
    # A table GDAL does not register (QGIS's layer_styles may be one, or another program's own).
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE site_visits (day TEXT)")
        db.commit()


def _file_metadata(path: Path) -> None:
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    ds.SetMetadata({"PROJECT": "wetlands 2024"})


@pytest.mark.parametrize(
    "make, named",
    [(_attribute_table, "table notes"), (_plain_table, "table site_visits"), (_file_metadata, "the file's metadata")],
)
def test_overwrite_refuses_other_tables_or_metadata(scene, tiny_model, tmp_path, capfd, make, named):
    out = tmp_path / "out"
    out.mkdir()
    project = out / "project.gpkg"
    make(project)
    before = project.read_bytes()
    assert _classify(scene, tiny_model, "--out-vector", str(project), "--overwrite") == 2
    assert f"holds other layers ({named})" in _error_line(capfd)
    assert project.read_bytes() == before
    assert _files(out) == ["project.gpkg"]


def test_overwrite_replaces_a_geopackage_holding_only_the_earlier_run(scene, tiny_model, tmp_path, capfd):
    # The refusal is about other content: the earlier run's own layer (and its metadata) is replaced.
    vector = tmp_path / "tiles.gpkg"
    assert _classify(scene, tiny_model, "--out-vector", str(vector)) == 0
    assert other_layers(vector, "scene_classes") == []
    assert _classify(scene, tiny_model, "--out-vector", str(vector), "--overwrite") == 0
    assert ogr.Open(str(vector)).GetLayerByName("scene_classes").GetFeatureCount() == PATTERN.size


def test_a_layer_of_our_name_that_is_a_raster_is_not_ours(scene, tmp_path):
    project = tmp_path / "project.gpkg"
    gdal.Translate(str(project), str(scene), format="GPKG", creationOptions=["RASTER_TABLE=scene_classes"])
    assert other_layers(project, "scene_classes") == ["raster scene_classes"]


def test_a_file_that_is_no_geopackage_holds_no_layers(tmp_path):
    path = tmp_path / "old.gpkg"
    path.write_bytes(b"not a database")
    assert other_layers(path, "scene_classes") == []


def test_classify_many_overwrite_keeps_a_geopackage_holding_a_raster(scene, tiny_model, tmp_path, capfd):
    out = tmp_path / "out"
    out.mkdir()
    taken = out / "scene.gpkg"  # the name classify-many gives the tiles of scene.tif
    pixels = _raster_geopackage(taken, scene)
    argv = ["classify-many", str(scene), "--model", str(tiny_model), "--out-dir", str(out)]
    assert main([*argv, "--workers", "1", "--overwrite"]) == 2
    assert "raster scene" in _error_line(capfd)
    np.testing.assert_array_equal(_pixels(taken), pixels)
    assert not (out / "scene.tif").exists()


# --- (2) tracebacks: complex rasters, local CRSs ------------------------------------------------


@pytest.mark.parametrize("kind, name", [(gdal.GDT_CInt16, "CInt16"), (gdal.GDT_CFloat32, "CFloat32")])
def test_complex_raster_is_refused(tiny_model, tmp_path, capfd, kind, name):
    # CInt16 was a TypeError traceback; CFloat32 lost its imaginary part and was classified as garbage.
    raster = tmp_path / "sar.tif"
    image = class_pattern(PATTERN, 32).astype(np.float32)
    ds = gdal.GetDriverByName("GTiff").Create(str(raster), image.shape[2], image.shape[1], 3, kind)
    ds.SetGeoTransform((500_000.0, 10.0, 0.0, 6_000_000.0, 0.0, -10.0))
    ds.SetProjection(_utm33())
    for band in range(3):
        ds.GetRasterBand(band + 1).WriteArray(image[band] + 1j * image[band])
    ds = None
    out = tmp_path / "out"
    assert _classify(raster, tiny_model, "--out-vector", str(out / "t.gpkg"), "--out-raster", str(out / "c.tif")) == 2
    line = _error_line(capfd)
    assert f"complex pixel values ({name})" in line and "Convert the raster to real bands" in line
    assert not out.exists() or _files(out) == []


def _utm33() -> str:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    return srs.ExportToWkt()


def _local(path: Path) -> Path:
    """A raster in a local (engineering) CRS: a site grid in metres, tied to no place on the Earth."""
    write_raster(path, class_pattern(PATTERN, 32), crs=None)
    srs = osr.SpatialReference()
    srs.SetLocalCS("quarry site grid")
    srs.SetLinearUnits("metre", 1.0)
    ds = gdal.Open(str(path), gdal.GA_Update)
    ds.SetProjection(srs.ExportToWkt())
    ds = None
    return path


def test_raster_in_a_local_crs_is_refused(tiny_model, tmp_path, capfd):
    raster = _local(tmp_path / "site.tif")
    out = tmp_path / "out"
    assert _classify(raster, tiny_model, "--out-vector", str(out / "t.gpkg")) == 2
    line = _error_line(capfd)
    assert "local (engineering) coordinate system" in line and "quarry site grid" in line and "gdal_edit" in line
    assert not out.exists() or _files(out) == []


def test_classify_many_with_a_local_crs_among_good_rasters(scene, tiny_model, tmp_path, capfd):
    _local(tmp_path / "site.tif")
    out = tmp_path / "out"
    argv = ["classify-many", str(scene), str(tmp_path / "site.tif"), "--model", str(tiny_model)]
    assert main([*argv, "--out-dir", str(out), "--workers", "1"]) == many.EXIT_SOME_FAILED
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err, captured.err
    failed = [line for line in captured.err.splitlines() if line.startswith("failed:")]
    assert len(failed) == 1 and "site.tif" in failed[0] and "local (engineering)" in failed[0], captured.err
    assert "done:" in captured.out + captured.err
    assert (out / "scene.gpkg").exists() and (out / "scene.tif").exists()
    assert not (out / "site.gpkg").exists()


def test_no_coordinate_operation_is_one_clear_error():
    # The engine's last line of defence (a face that let such a CRS through): no TypeError on a null transform.
    srs = osr.SpatialReference()
    srs.SetLocalCS("quarry site grid")
    with pytest.raises(InputError, match="No coordinate operation is known"):
        transform_xy([[0.0, 0.0]], srs.ExportToWkt(), _utm33())


# --- (5) unclear errors: the true reason and the fix ---------------------------------------------


def _opset_99(path: Path, model: Path) -> Path:
    """``model`` stamped with an opset onnxruntime does not support yet."""
    import onnx

    proto = onnx.load(str(model))
    proto.opset_import[0].version = 99
    onnx.save(proto, str(path))
    return path


def test_an_onnx_error_keeps_its_cause(scene, tiny_model, tmp_path, capfd):
    # The message was cut at 200 characters, inside onnxruntime's C++ signature: "Opset 99" was lost.
    model = _opset_99(tmp_path / "new.onnx", tiny_model)
    assert _classify(scene, model, "--out-vector", str(tmp_path / "out" / "t.gpkg")) == 2
    line = _error_line(capfd)
    assert "Opset 99 is under development" in line and "onnxruntime_src" not in line and "ValidateOpset" not in line
    assert not (tmp_path / "out").exists() or _files(tmp_path / "out") == []


def _netcdf(path: Path, names: tuple[str, ...]) -> Path:
    """A NetCDF file holding one 2-D variable per name: a container of subdatasets."""
    ds = gdal.GetDriverByName("netCDF").CreateMultiDimensional(str(path))
    root = ds.GetRootGroup()
    y, x = root.CreateDimension("y", None, None, 64), root.CreateDimension("x", None, None, 64)
    for name in names:
        root.CreateMDArray(name, [y, x], gdal.ExtendedDataType.Create(gdal.GDT_Float32)).Write(
            np.ones((64, 64), np.float32)
        )
    ds = None
    return path


def test_a_netcdf_container_lists_its_subdatasets(tiny_model, tmp_path, capfd):
    # It was told it had no CRS: the container has no bands of its own.
    path = _netcdf(tmp_path / "f.nc", ("temp", "rain"))
    assert _classify(path, tiny_model, "--out-vector", str(tmp_path / "out" / "t.gpkg")) == 2
    line = _error_line(capfd)
    assert "container of 2 subdatasets" in line and "pick a subdataset" in line
    assert f'NETCDF:"{path}":temp' in line and f'NETCDF:"{path}":rain' in line


def test_a_driver_prefixed_subdataset_is_opened(scene, tiny_model, tmp_path, capfd):
    # NETCDF:"f.nc":Band1 was refused as a file that does not exist.
    nc = tmp_path / "f.nc"
    gdal.Translate(str(nc), str(scene), format="netCDF")
    out = tmp_path / "out" / "t.gpkg"
    assert _classify(f'NETCDF:"{nc}":Band1', tiny_model, "--bands", "1,1,1", "--out-vector", str(out)) == 0
    assert "ERROR " not in capfd.readouterr().err
    ds = ogr.Open(str(out))
    assert [layer.GetName() for layer in ds] == ["f_Band1_classes"]


def test_a_missing_subdataset_says_gdals_reason(tiny_model, tmp_path, capfd):
    path = _netcdf(tmp_path / "f.nc", ("temp",))
    assert _classify(f'NETCDF:"{path}":nope', tiny_model, "--out-vector", str(tmp_path / "t.gpkg")) == 2
    line = _error_line(capfd)
    assert "cannot be opened" in line and "does not exist" not in line


def test_a_missing_zip_member_names_what_the_archive_holds(scene, tiny_model, tmp_path, capfd):
    # It was "not a raster GDAL can read".
    archive = tmp_path / "pack.zip"
    with zipfile.ZipFile(archive, "w") as pack:
        pack.write(scene, "scene.tif")
    assert _classify(f"/vsizip/{archive}/other.tif", tiny_model, "--out-vector", str(tmp_path / "t.gpkg")) == 2
    assert f"{archive} holds no 'other.tif'; it holds: scene.tif." in _error_line(capfd)
    assert _classify(f"/vsizip/{tmp_path}/none.zip/a.tif", tiny_model, "--out-vector", str(tmp_path / "t.gpkg")) == 2
    assert f"the archive {tmp_path}/none.zip does not exist" in _error_line(capfd)


def test_an_address_that_cannot_be_fetched_says_why(tiny_model, tmp_path, capfd):
    # Offline (or a host that does not exist): GDAL's reason, not "not a raster GDAL can read".
    url = "https://rs-ghost.invalid/scene.tif"
    assert _classify(url, tiny_model, "--out-vector", str(tmp_path / "t.gpkg")) == 2
    line = _error_line(capfd)
    assert "cannot be opened" in line and "not a raster GDAL can read" not in line and "network" in line, line


@pytest.mark.parametrize(
    "area",
    [
        ("--mask", "POLYGON((-180 -90,180 -90,180 90,-180 90,-180 -90))"),  # was "does not overlap"
        ("--mask", "POLYGON((-180 0,180 0,180 90,-180 90,-180 0))"),  # was "check its coordinates", ERROR lines
        ("--bbox", "-180,-90,180,90,EPSG:4326"),
    ],
)
def test_an_area_much_larger_than_the_raster_covers_all_of_it(scene, tiny_model, tmp_path, capfd, area):
    flag, value = area
    if flag == "--mask":
        value = str(write_mask(tmp_path / "mask.gpkg", value, epsg=4326))
    out = tmp_path / "t.gpkg"
    assert _classify(scene, tiny_model, flag, value, "--out-vector", str(out)) == 0
    err = capfd.readouterr().err
    assert "ERROR " not in err and "error:" not in err, err
    assert ogr.Open(str(out)).GetLayer(0).GetFeatureCount() == PATTERN.size


def test_an_area_on_the_other_side_of_the_world_still_does_not_overlap(scene, tiny_model, tmp_path, capfd):
    south = "-180,-90,180,-1,EPSG:4326"
    assert _classify(scene, tiny_model, "--bbox", south, "--out-vector", str(tmp_path / "t.gpkg")) == 2
    assert "does not overlap scene" in _error_line(capfd)


@pytest.mark.parametrize("length", [230, 250])
def test_a_legal_long_output_name_is_written(scene, tiny_model, tmp_path, capfd, length):
    # The temporary name was ~23 bytes longer than the output's: a legal name failed with "File name too long".
    out = tmp_path / ("n" * length + ".gpkg")
    assert _classify(scene, tiny_model, "--out-vector", str(out)) == 0
    assert "error:" not in capfd.readouterr().err
    assert _files(tmp_path) == sorted(["scene.tif", out.name])


def test_an_output_name_over_the_limit_says_the_limit(scene, tiny_model, tmp_path, capfd):
    out = tmp_path / ("n" * 251 + ".gpkg")
    assert _classify(scene, tiny_model, "--out-vector", str(out)) == 2
    line = _error_line(capfd)
    assert "is 256 bytes long" in line and "at most 255 bytes per file name" in line
    assert _files(tmp_path) == ["scene.tif"]


# --- (3) silent garbage: palettes, band orders, zero gaps -----------------------------------------


def _palette(path: Path) -> Path:
    """A one-band raster whose values index a colour table (the classes' colours)."""
    ds = gdal.GetDriverByName("GTiff").Create(str(path), 96, 96, 1, gdal.GDT_Byte)
    ds.SetGeoTransform((500_000.0, 10.0, 0.0, 6_000_000.0, 0.0, -10.0))
    ds.SetProjection(_utm33())
    table = gdal.ColorTable()
    for index, colour in enumerate([(40, 60, 200), (40, 190, 60), (210, 70, 50)]):
        table.SetColorEntry(index, (*colour, 255))
    band = ds.GetRasterBand(1)
    band.SetRasterColorTable(table)
    band.SetRasterColorInterpretation(gdal.GCI_PaletteIndex)
    band.WriteArray(np.kron(PATTERN, np.ones((32, 32), int)).astype(np.uint8))
    ds = None
    return path


@pytest.mark.parametrize("bands", [(), ("--bands", "1,1,1")])
def test_a_palette_raster_is_refused_with_the_way_to_expand_it(tiny_model, tmp_path, capfd, bands):
    # The advice was --bands 1,1,1, which feeds colour-table indices to the model as grey levels.
    raster = _palette(tmp_path / "pal.tif")
    assert _classify(raster, tiny_model, *bands, "--out-vector", str(tmp_path / "out" / "t.gpkg")) == 2
    line = _error_line(capfd)
    assert "palette raster" in line and "gdal_translate -expand rgb" in line and "1,1,1" not in line
    assert not (tmp_path / "out").exists() or _files(tmp_path / "out") == []


def test_an_expanded_palette_raster_classifies(tiny_model, tmp_path, capfd):
    rgb = tmp_path / "rgb.tif"
    gdal.Translate(str(rgb), str(_palette(tmp_path / "pal.tif")), rgbExpand="rgb")
    out = tmp_path / "t.gpkg"
    assert _classify(rgb, tiny_model, "--out-vector", str(out)) == 0
    classes = _tile_classes(out)
    assert [classes[divmod(k, 3)] for k in range(9)] == PATTERN.ravel().tolist()


def test_a_model_band_the_raster_lacks_is_named(scene, tmp_path, capfd):
    # A 4-band model (red, green, blue, nir) on an RGB raster was told "e.g. 1,1,1,1": NIR fed with red.
    from tests.tiny_model import pooled_model, tiny_card

    card = tiny_card()
    four = dataclasses.replace(
        card, bands=[*card.bands, "nir"], standardization_mean=[0.5] * 4, standardization_std=[0.25] * 4
    )
    model = _four_band_model(tmp_path / "four.onnx", pooled_model(tmp_path / "three.onnx", card), four)
    assert _classify(scene, model, "--out-vector", str(tmp_path / "out" / "t.gpkg")) == 2
    line = _error_line(capfd)
    assert "scene has no band for nir" in line and "band 1 is red, band 2 is green, band 3 is blue" in line
    assert "1,1,1,1" not in line


def _four_band_model(path: Path, three: Path, card) -> Path:
    """The pooled three-band model widened to four input bands, with ``card``."""
    import onnx
    from onnx import TensorProto, helper

    proto = onnx.load(str(three))
    proto.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 4
    weight = helper.make_tensor("w", TensorProto.FLOAT, [4, 3], np.eye(4, 3, dtype=np.float32).ravel())
    proto.graph.initializer[0].CopyFrom(weight)
    del proto.metadata_props[:]
    for key, value in card.to_metadata().items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))
    return path


def test_unnamed_bands_get_a_caution_without_a_made_up_order(tmp_path):
    # NAIP-like red, green, blue, NIR without colour interpretation: the hint said --bands 3,4,2 (NIR as green).
    from rs_ghost_qgis.core.radiometry.scaling import plan_radiometry
    from rs_ghost_qgis.core.sources.rasterio_source import RasterioSource
    from tests.core.test_radiometry import eurosat_card

    image = class_pattern(PATTERN, 32)
    nir = np.full((1, *image.shape[1:]), 120, np.uint8)
    path = write_raster(tmp_path / "naip.tif", np.concatenate([image, nir]), photometric="MINISBLACK")
    with RasterioSource(path) as source:
        plan = plan_radiometry(source, eurosat_card())
    assert plan.bands == [1, 2, 3]
    (caution,) = plan.warnings
    assert "colour balance is unlike" in caution and "3,4,2" not in caution and "try" not in caution


def test_bands_are_matched_by_their_wavelengths(tmp_path):
    # A 200-band hyperspectral raster: its band order is known from the wavelengths in its metadata.
    from rs_ghost_qgis.core.radiometry.bands import choose_bands
    from rs_ghost_qgis.core.sources.rasterio_source import RasterioSource
    from tests.tiny_model import tiny_card

    path, expected = write_hyperspectral(tmp_path / "hyper.tif")
    with RasterioSource(path) as source:
        bands, note = choose_bands(source, tiny_card(), None)
    assert bands == expected and "matched" in note


def _tile_classes(path: Path) -> dict[tuple[int, int], int | None]:
    """(tile_row, tile_col) -> class_id of a run's tile layer (None: not classified)."""
    ds = ogr.Open(str(path))  # held while its layer is read: OGR frees the layer with it
    return {(f.GetField("tile_row"), f.GetField("tile_col")): f.GetField("class_id") for f in ds.GetLayer(0)}


def _gap_mosaic(folder: Path) -> Path:
    """A VRT of two scenes with an undeclared all-zero gap of one tile column between them."""
    image = class_pattern(np.array([[1], [2], [1]]), 32)
    left = write_raster(folder / "left.tif", image)
    right = write_raster(folder / "right.tif", image, origin=(500_000.0 + 640.0, 6_000_000.0))
    gdal.BuildVRT(str(folder / "mosaic.vrt"), [str(left), str(right)])
    return folder / "mosaic.vrt"


def test_an_undeclared_zero_gap_is_nodata_and_said(tiny_model, tmp_path, capfd):
    # The gap was classified as water at confidence 1.00.
    out = tmp_path / "t.gpkg"
    assert _classify(_gap_mosaic(tmp_path), tiny_model, "--out-vector", str(out)) == 0
    err = capfd.readouterr().err
    assert "are 0 in every band" in err and "taken as nodata" in err and "ERROR " not in err, err
    tiles = _tile_classes(out)
    assert [tiles[(r, 1)] for r in range(3)] == [None, None, None]  # the gap's column: not classified
    assert [tiles[(r, 0)] for r in range(3)] == [1, 2, 1] and [tiles[(r, 2)] for r in range(3)] == [1, 2, 1]


def test_an_empty_block_is_a_failed_read_not_nodata(scene, tiny_model):
    # Seen in QGIS: a reprojection that returned nothing gave 0-byte blocks, counted as nodata.
    from rs_ghost_qgis.core.classify.pipeline import ClassifyOptions, classify
    from rs_ghost_qgis.core.sources.rasterio_source import RasterioSource
    from rs_ghost_qgis.core.sources.source import Block

    class Empty(RasterioSource):
        def read(self, bounds, crs_wkt, width, height, bands):
            return Block(np.zeros((len(bands), 0, 0), np.uint8), np.zeros((0, 0), bool))

    with Empty(scene) as source, pytest.raises(InputError, match="the read failed, so its pixels are not nodata"):
        classify(source, ClassifyOptions(model_path=str(tiny_model), bands=[1, 2, 3], threads=1))


# --- (7) leftovers and stray lines found by the round-2 sweep ------------------------------------


@pytest.mark.parametrize("why", ["model", "nothing classified"])
def test_a_refused_run_leaves_no_output_folder_it_made(scene, tiny_model, tmp_path, capfd, why):
    # check_output made the output's folders before the model or the data were checked: left empty.
    out = tmp_path / "new" / "deeper"
    model = str(tmp_path / "text.onnx") if why == "model" else str(tiny_model)
    (tmp_path / "text.onnx").write_text("not a model")
    image = class_pattern(PATTERN, 32)
    image[:, :, 8:] = 0  # nodata (declared) in most of every tile: none has half its pixels valid
    raster = write_raster(tmp_path / "sparse.tif", image, nodata=0) if why != "model" else scene
    assert _classify(raster, model, "--out-vector", str(out / "t.gpkg"), "--out-raster", str(out / "c.tif")) == 2
    _error_line(capfd)
    assert not (tmp_path / "new").exists()


def test_an_output_folder_that_is_a_file_is_said(scene, tiny_model, tmp_path, capfd):
    (tmp_path / "notes.txt").write_text("x")
    assert _classify(scene, tiny_model, "--out-vector", str(tmp_path / "notes.txt" / "t.gpkg")) == 2
    assert f"{tmp_path / 'notes.txt'} is a file, not a folder" in _error_line(capfd)


def test_a_model_path_that_is_a_folder_is_said(scene, tmp_path, capfd):
    (tmp_path / "models").mkdir()
    assert _classify(scene, tmp_path / "models", "--out-vector", str(tmp_path / "t.gpkg")) == 2
    assert "is a folder; give the .onnx file in it" in _error_line(capfd)


def test_an_unknown_epsg_code_is_one_line(scene, tiny_model, tmp_path, capfd):
    # PROJ's own 'ERROR 1: ... crs not found' came first.
    assert (
        _classify(scene, tiny_model, "--bbox", "13,53,14,54,EPSG:999999", "--out-vector", str(tmp_path / "t.gpkg")) == 2
    )
    assert "Cannot read the coordinate reference system 'EPSG:999999'" in _error_line(capfd)


@pytest.mark.parametrize("under", [False, True])
def test_a_classify_many_out_dir_that_is_a_file_is_said(scene, tiny_model, tmp_path, capfd, under):
    # mkdir's own words came through: 'File exists' (or 'Not a directory' for a folder under the file).
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    out = notes / "out" if under else notes
    argv = ["classify-many", str(scene), "--model", str(tiny_model), "--out-dir", str(out), "--workers", "1"]
    assert main(argv) == 2
    line = _error_line(capfd)
    assert f"--out-dir {out}" in line and f"{notes} is a file, not a folder" in line, line
    assert notes.read_text() == "x" and _files(tmp_path) == ["notes.txt", "scene.tif"]


@pytest.mark.parametrize("command", ["info", "classify"])
def test_a_negative_thread_count_is_refused_by_every_command(scene, tiny_model, tmp_path, capfd, command):
    # info ignored it (onnxruntime was given 0, every core) while classify refused it.
    argv = [command, "--model", str(tiny_model), "--threads", "-2"]
    if command == "classify":
        argv[1:1] = [str(scene)]
        argv += ["--out-vector", str(tmp_path / "t.gpkg")]
    assert main(argv) == 2
    assert _error_line(capfd) == "error: --threads must be positive (or 0 for all cores), not -2."
