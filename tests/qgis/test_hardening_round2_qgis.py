"""Issue 24 in QGIS Processing: writing the tiles never destroys what a GeoPackage held before.

Processing replaces the whole file of a plain .gpkg destination, so a GeoPackage holding
anything besides our layer (a raster table here) is refused before the run; a destination
inside an existing GeoPackage (``ogr:dbname=... table=...``) adds our layer, and a failed
run there removes that layer only, never the file.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import rasterio
from osgeo import gdal, ogr
from qgis.core import QgsCoordinateReferenceSystem, QgsProcessingException

from tests.qgis.rasters import two_halves, write_geotiff
from tests.qgis.test_experience import dialog  # noqa: F401 (the dialog fixture, settings cleared)


def _raster_geopackage(path: Path, source: Path) -> np.ndarray:
    """A GeoPackage holding one raster tiles table, copied from ``source``; returns its pixels."""
    gdal.Translate(str(path), str(source), format="GPKG")
    with rasterio.open(path) as ds:
        return ds.read()


def _pixels(path: Path) -> np.ndarray:
    """The raster of a GeoPackage, read back by GDAL (fails if the table is gone)."""
    with rasterio.open(path) as ds:
        return ds.read()


def _tables(path: Path) -> list[str]:
    """The tables a GeoPackage registers (vector, raster and attribute alike)."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return sorted(name for (name,) in db.execute("SELECT table_name FROM gpkg_contents"))


def _classify(raster: Path, model: Path, vector: str, feedback=None):
    import processing

    parameters = {"INPUT": str(raster), "MODEL": str(model), "OUTPUT_VECTOR": vector}
    return processing.run("rsghost:classify", parameters, feedback=feedback)


def test_geopackage_holding_a_raster_is_refused_and_kept(qgis_app, provider, tmp_path, tiny_model):
    raster = write_geotiff(tmp_path / "halves.tif", two_halves())
    project = tmp_path / "project.gpkg"
    before = _raster_geopackage(project, raster)
    with pytest.raises(QgsProcessingException) as caught:
        _classify(raster, tiny_model, str(project))
    text = str(caught.value)
    assert "raster project" in text and "choose another file name" in text and "Traceback" not in text
    np.testing.assert_array_equal(_pixels(project), before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["halves.tif", "project.gpkg"]


def test_rerun_into_its_own_geopackage_replaces_it(qgis_app, provider, tmp_path, tiny_model):
    # The refusal is about other content: a GeoPackage holding only the previous run's layer is replaced.
    raster = write_geotiff(tmp_path / "halves.tif", two_halves())
    tiles = tmp_path / "tiles.gpkg"
    assert _classify(raster, tiny_model, str(tiles))["TILES_CLASSIFIED"] == 8
    assert _classify(raster, tiny_model, str(tiles))["TILES_CLASSIFIED"] == 8
    assert ogr.Open(str(tiles)).GetLayer(0).GetFeatureCount() == 8


def _blank(path: Path) -> Path:
    """A raster that is nodata throughout: the run opens the sink, then fails with 'nothing classified'."""
    return write_geotiff(path, np.zeros_like(two_halves()), nodata=0)


def test_failed_run_into_a_layer_of_an_existing_geopackage_keeps_the_file(qgis_app, provider, tmp_path, tiny_model):
    # A destination inside a GeoPackage adds a layer; a failure removed the whole file with the raster.
    source = write_geotiff(tmp_path / "halves.tif", two_halves())
    project = tmp_path / "project.gpkg"
    before = _raster_geopackage(project, source)
    blank = _blank(tmp_path / "blank.tif")
    with pytest.raises(QgsProcessingException) as caught:
        _classify(blank, tiny_model, f"ogr:dbname='{project}' table=\"tiles\" (geom)")
    assert "nothing was classified" in str(caught.value)
    np.testing.assert_array_equal(_pixels(project), before)
    assert _tables(project) == ["project"]  # our half-written layer is gone, the raster kept


def test_run_into_a_layer_of_an_existing_geopackage_keeps_the_raster(qgis_app, provider, tmp_path, tiny_model):
    source = write_geotiff(tmp_path / "halves.tif", two_halves())
    project = tmp_path / "project.gpkg"
    before = _raster_geopackage(project, source)
    result = _classify(source, tiny_model, f"ogr:dbname='{project}' table=\"tiles\" (geom)")
    assert result["TILES_CLASSIFIED"] == 8
    np.testing.assert_array_equal(_pixels(project), before)
    assert ogr.Open(str(project)).GetLayerByName("tiles").GetFeatureCount() == 8
    assert _tables(project) == ["project", "tiles"]


def test_a_layer_in_a_local_crs_is_refused_before_the_run(qgis_app, tmp_path):
    from qgis.core import QgsRasterLayer

    from rs_ghost_qgis.core.errors import InputError
    from rs_ghost_qgis.qgis_io.source import QgisLayerSource
    from tests.core.test_hardening_round2 import _local

    layer = QgsRasterLayer(str(_local(tmp_path / "site.tif")), "site")
    with pytest.raises(InputError, match="local \\(engineering\\) coordinate system"):
        QgisLayerSource.from_layer(layer)


# --- palettes and wavelengths: the QGIS source tells the engine what the rasterio source does ---


def _bands_of(path: Path, card):
    """(bands, note) that the engine chooses for ``path`` read through QGIS and through rasterio."""
    from qgis.core import QgsRasterLayer

    from rs_ghost_qgis.core.radiometry.bands import choose_bands
    from rs_ghost_qgis.core.sources.rasterio_source import RasterioSource
    from rs_ghost_qgis.qgis_io.source import QgisLayerSource

    layer = QgsRasterLayer(str(path), path.stem)
    qgis_choice = choose_bands(QgisLayerSource.from_layer(layer), card, None)
    with RasterioSource(path) as source:
        return qgis_choice, choose_bands(source, card, None)


def test_a_palette_layer_is_refused_with_the_way_to_expand_it(qgis_app, tmp_path):
    # QGIS named the palette band by nothing, so the engine proposed --bands 1,1,1 (indices as grey).
    from qgis.core import QgsRasterLayer

    from rs_ghost_qgis.core.errors import InputError
    from rs_ghost_qgis.core.radiometry.bands import choose_bands
    from rs_ghost_qgis.core.sources.source import PALETTE
    from rs_ghost_qgis.qgis_io.source import QgisLayerSource
    from tests.core.test_hardening_round2 import _palette
    from tests.tiny_model import tiny_card

    source = QgisLayerSource.from_layer(QgsRasterLayer(str(_palette(tmp_path / "pal.tif")), "pal"))
    assert source.info.band_descriptions == (PALETTE,)
    for bands in (None, [1, 1, 1]):
        with pytest.raises(InputError, match="palette raster.*gdal_translate -expand rgb") as caught:
            choose_bands(source, tiny_card(), bands)
        assert "1,1,1" not in str(caught.value)


def test_a_palette_layer_is_refused_by_processing(qgis_app, provider, tmp_path, tiny_model):
    from tests.core.test_hardening_round2 import _palette

    out = tmp_path / "out.gpkg"
    with pytest.raises(QgsProcessingException, match="gdal_translate -expand rgb"):
        _classify(_palette(tmp_path / "pal.tif"), tiny_model, str(out))
    assert not out.exists()


def test_bands_are_matched_by_their_wavelengths_in_qgis_too(qgis_app, tmp_path):
    from tests.core.engine_data import write_hyperspectral
    from tests.tiny_model import tiny_card

    path, expected = write_hyperspectral(tmp_path / "hyper.tif")
    (bands, note), rasterio_choice = _bands_of(path, tiny_card())
    assert bands == expected and "matched" in note
    assert (bands, note) == rasterio_choice


# --- an empty block from QGIS's reprojection is a failed read, not nodata --------------------


class _LostTransformProjector:
    """QgsRasterProjector as it behaved once a long session's transform returned its input unchanged:
    every block came back valid but without a pixel (QGIS's 'Zero srcRows')."""

    def setCrs(self, *args) -> None:
        pass

    def setInput(self, *args) -> None:
        pass

    def block(self, *args):
        from qgis.core import QgsRasterBlock

        return QgsRasterBlock()


def _geographic_layer(tmp_path: Path):
    """A raster in EPSG:4326 (lon 15, lat 53.25, 1e-4 degree pixels): the engine reads it reprojected to UTM."""
    from qgis.core import QgsRasterLayer

    path = write_geotiff(tmp_path / "geo.tif", two_halves(), epsg=4326, origin=(15.0, 53.25), pixel=1e-4)
    return QgsRasterLayer(str(path), "geo")


def test_an_empty_reprojected_block_over_the_raster_is_a_failed_read(qgis_app, tmp_path, monkeypatch):
    from rs_ghost_qgis.core.errors import InputError
    from rs_ghost_qgis.qgis_io import source as source_module
    from rs_ghost_qgis.qgis_io.source import QgisLayerSource, crs_to_wkt

    source = QgisLayerSource.from_layer(_geographic_layer(tmp_path))
    utm = crs_to_wkt(QgsCoordinateReferenceSystem("EPSG:32633"))
    inside = (500_100.0, 5_899_500.0, 500_400.0, 5_899_800.0)
    assert source.read(inside, utm, 8, 8, [1, 2, 3]).valid.all()  # the real projector
    monkeypatch.setattr(source_module, "QgsRasterProjector", _LostTransformProjector)
    with pytest.raises(InputError, match="empty block for an area that overlaps it.*not nodata.*restart QGIS"):
        source.read(inside, utm, 8, 8, [1, 2, 3])


def test_an_empty_reprojected_block_outside_the_raster_is_nodata(qgis_app, tmp_path):
    from rs_ghost_qgis.qgis_io.source import QgisLayerSource, crs_to_wkt

    source = QgisLayerSource.from_layer(_geographic_layer(tmp_path))
    utm = crs_to_wkt(QgsCoordinateReferenceSystem("EPSG:32633"))
    block = source.read((600_000.0, 6_000_000.0, 600_300.0, 6_000_300.0), utm, 8, 8, [1, 2, 3])
    assert block.data.shape == (3, 8, 8) and not block.valid.any()


def test_a_task_whose_transform_is_lost_fails_with_the_reason(qgis_app, project, tmp_path, tiny_model, monkeypatch):
    # Every later run of that session failed with '24 nodata or NaN'.
    from rs_ghost_qgis.core.classify.pipeline import ClassifyOptions
    from rs_ghost_qgis.qgis_io import source as source_module
    from rs_ghost_qgis.qgis_io.source import QgisLayerSource
    from rs_ghost_qgis.qgis_io.task import ClassifyTask
    from tests.qgis.conftest import run_task

    layer = _geographic_layer(tmp_path)
    project.addMapLayer(layer)
    monkeypatch.setattr(source_module, "QgsRasterProjector", _LostTransformProjector)
    options = ClassifyOptions(model_path=str(tiny_model), out_vector=str(tmp_path / "out" / "tiles.gpkg"))
    task = run_task(ClassifyTask(QgisLayerSource.from_layer(layer, project), options, "tiny", project))
    assert task.result is None and "QGIS's reprojection returned no pixels" in task.error, task.error
    assert "nodata or NaN" not in task.error and not (tmp_path / "out" / "tiles.gpkg").exists()


# --- an offline web layer: its tiles could not be fetched -----------------------------------------


@pytest.mark.parametrize("crs", ["EPSG:3857", "EPSG:4326", "EPSG:32631"])
def test_an_offline_xyz_layer_says_its_tiles_could_not_be_fetched(qgis_app, project, tmp_path, tiny_model, crs):
    # It was reported as 'mostly outside the raster'.
    from qgis.core import QgsCoordinateTransform, QgsProject, QgsRasterLayer, QgsRectangle

    from rs_ghost_qgis.core.classify.pipeline import ClassifyOptions
    from rs_ghost_qgis.core.options import Area
    from rs_ghost_qgis.qgis_io.source import QgisLayerSource
    from rs_ghost_qgis.qgis_io.task import ClassifyTask
    from tests.qgis.conftest import run_task
    from tests.qgis.rasters import tile_bounds_3857

    url = "http://127.0.0.1:9/{z}/{x}/{y}.png"  # the discard port: nothing answers
    layer = QgsRasterLayer(f"type=xyz&url={url}&zmin=14&zmax=14", "offline tiles", "wms")
    project.addMapLayer(layer)
    mercator, target = QgsCoordinateReferenceSystem("EPSG:3857"), QgsCoordinateReferenceSystem(crs)
    to_target = QgsCoordinateTransform(mercator, target, QgsProject.instance())
    box = to_target.transformBoundingBox(QgsRectangle(*tile_bounds_3857(14, 8192 + 300, 8191 - 300)))
    area = Area(bounds=box.toRectF().getCoords(), crs_wkt=target.toWkt())
    options = ClassifyOptions(model_path=str(tiny_model), area=area, out_vector=str(tmp_path / "t.gpkg"))
    task = run_task(ClassifyTask(QgisLayerSource.from_layer(layer, project), options, "tiny", project))
    assert "could not be fetched" in task.error and "'offline tiles'" in task.error, task.error
    assert "outside" not in task.error and not (tmp_path / "t.gpkg").exists()


# --- 'Current map extent' at the world view in EPSG:4326 ------------------------------------------


def test_a_web_layer_at_the_world_view_in_4326_gets_the_size_and_estimate(
    dialog,  # noqa: F811 (the fixture imported above)
    qgis_iface,
    project,
    tmp_path,
    tiny_model,
):
    # Reported as blaming 'coordinates and CRS' the user never typed; already fixed (areas cut to the
    # raster before projecting): this keeps it so.
    from qgis.core import QgsRectangle

    from tests.qgis.test_dialog import _use_model
    from tests.qgis.test_experience import _xyz

    layer, _ = _xyz(tmp_path, project)
    dialog.select_layer(layer)
    _use_model(dialog, tiny_model)
    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:4326"))
    canvas.setExtent(QgsRectangle(-180, -90, 180, 90))  # the canvas widens it to its shape: -315..315
    dialog.area_combo.setCurrentIndex(dialog.area_combo.findData("canvas"))
    dialog.confirm_workload = lambda size: pytest.fail(f"asked to confirm a planet-sized web job: {size}")
    dialog.start()
    assert dialog.task is None
    text = dialog.message.text()
    assert "web layer" in text and "km²" in text and "tiles" in text, text
    assert "coordinates and CRS" not in text, text
