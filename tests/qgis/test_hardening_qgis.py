"""Issue 12 in QGIS Processing: the same refusals and repairs as the command line (tests/core/test_hardening.py)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal, ogr, osr
from qgis.core import (
    QgsFeature,
    QgsGeometry,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsRasterLayer,
    QgsVectorLayer,
)

from rs_ghost_qgis.core.crs import to_wkt
from rs_ghost_qgis.core.errors import InputError
from rs_ghost_qgis.qgis_io.source import QgisLayerSource
from tests.qgis.rasters import CROP, FOREST, WATER

COLOURS = (WATER, FOREST, CROP)


class _Warnings(QgsProcessingFeedback):
    """Feedback that keeps the warnings Processing would show in its log."""

    def __init__(self) -> None:
        super().__init__()
        self.warnings: list[str] = []

    def pushWarning(self, warning: str) -> None:  # noqa: N802 (Qt's name)
        self.warnings.append(warning)


def _tiles(rows: int, cols: int, tile: int) -> np.ndarray:
    """(3, rows * tile, cols * tile) uint8: tiles of the tiny model's colours in turn."""
    image = np.zeros((3, rows * tile, cols * tile), dtype=np.uint8)
    for r in range(rows):
        for c in range(cols):
            colour = COLOURS[(r + c) % 3]
            image[:, r * tile : (r + 1) * tile, c * tile : (c + 1) * tile] = np.array(colour, np.uint8)[:, None, None]
    return image


def _write(path: Path, data: np.ndarray, epsg: int, origin, pixel, tiled: bool = False) -> Path:
    options = ["TILED=YES", "BLOCKXSIZE=64", "BLOCKYSIZE=64"] if tiled else []
    bands, height, width = data.shape
    ds = gdal.GetDriverByName("GTiff").Create(str(path), width, height, bands, gdal.GDT_Byte, options)
    ds.SetGeoTransform((origin[0], pixel[0], 0.0, origin[1], 0.0, -pixel[1]))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    ds.SetProjection(srs.ExportToWkt())
    for band in range(bands):
        ds.GetRasterBand(band + 1).WriteArray(data[band])
    ds = None
    return path


def _truncated(tmp_path: Path, epsg: int = 32633, origin=(500000.0, 5900000.0), pixel=(10.0, 10.0)) -> Path:
    whole = _write(tmp_path / "whole.tif", _tiles(8, 8, 32), epsg, origin, pixel, tiled=True)
    data = whole.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: len(data) * 2 // 3])
    return cut


def _orphan_vrt(tmp_path: Path) -> Path:
    source = _write(tmp_path / "source.tif", _tiles(3, 3, 32), 32633, (500000.0, 5900000.0), (10.0, 10.0))
    vrt = tmp_path / "mosaic.vrt"
    gdal.BuildVRT(str(vrt), [str(source)]).FlushCache()
    os.remove(source)
    return vrt


def _classify(raster: Path, model: Path, out: Path, feedback=None, **extra):
    import processing

    parameters = {
        "INPUT": str(raster),
        "MODEL": str(model),
        "OUTPUT_VECTOR": str(out / "tiles.gpkg"),
        "OUTPUT_RASTER": str(out / "classes.tif"),
        **extra,
    }
    return processing.run("rsghost:classify", parameters, feedback=feedback)


def _refused(raster: Path, model: Path, out: Path, **extra) -> str:
    out.mkdir()
    with pytest.raises(QgsProcessingException) as caught:
        _classify(raster, model, out, **extra)
    assert not any(out.iterdir()), list(out.iterdir())  # no output, no temporary
    text = str(caught.value)
    assert "Traceback" not in text
    return text


@pytest.mark.parametrize(
    "make, reason",
    [(_truncated, "TIFFReadEncodedTile"), (_orphan_vrt, "source.tif: No such file or directory")],
    ids=["truncated-geotiff", "vrt-source-gone"],
)
def test_unreadable_block_fails_the_run_naming_file_and_block(qgis_app, provider, tmp_path, tiny_model, make, reason):
    # It used to end with exit 0 and every tile of the broken blocks classified from zeros.
    raster = make(tmp_path)
    text = _refused(raster, tiny_model, tmp_path / "out")
    assert f"Cannot read the block of {raster}" in text and "pixel columns" in text and reason in text


def test_unreadable_block_in_a_reprojected_read(qgis_app, tmp_path):
    raster = _truncated(tmp_path, 4326, (13.0, 54.0), (1e-4, 1e-4))
    source = QgisLayerSource.from_layer(QgsRasterLayer(str(raster), "cut"))
    bounds = (368909.0, 5982478.0, 370507.0, 5985373.0)  # the raster's footprint in UTM 33N
    with pytest.raises(InputError, match=r"Cannot read the block of .*cut\.tif at x .* in EPSG:32633"):
        source.read(bounds, to_wkt("EPSG:32633"), 64, 64, [1, 2, 3])


def test_antimeridian_raster_is_refused_like_on_the_command_line(qgis_app, provider, tmp_path, tiny_model):
    raster = _write(tmp_path / "fiji.tif", _tiles(2, 6, 100), 4326, (179.98, -16.0), (1e-4, 1e-4))
    text = _refused(raster, tiny_model, tmp_path / "out")
    assert "crosses the antimeridian" in text and "gdalwarp -t_srs EPSG:32760" in text


def test_polar_raster_says_utm_is_undefined(qgis_app, provider, tmp_path, tiny_model):
    raster = _write(tmp_path / "svalbard.tif", _tiles(2, 6, 100), 4326, (10.0, 85.5), (5e-4, 1e-4))
    text = _refused(raster, tiny_model, tmp_path / "out")
    assert "UTM is not defined beyond 84 N" in text and "EPSG:32661" in text


def test_self_intersecting_mask_is_repaired_with_a_warning(qgis_app, provider, tmp_path, tiny_model):
    raster = _write(tmp_path / "scene.tif", _tiles(3, 3, 32), 32633, (500000.0, 5900000.0), (10.0, 10.0))
    x0, y0, x1, y1 = 500000, 5900000, 500960, 5899040
    mask = QgsVectorLayer("Polygon?crs=EPSG:32633", "bowtie", "memory")
    feature = QgsFeature(mask.fields())
    feature.setGeometry(QgsGeometry.fromWkt(f"POLYGON(({x0} {y0}, {x1} {y1}, {x1} {y0}, {x0} {y1}, {x0} {y0}))"))
    mask.dataProvider().addFeatures([feature])
    feedback = _Warnings()
    out = tmp_path / "out"
    out.mkdir()
    result = _classify(raster, tiny_model, out, feedback=feedback, MASK=mask)
    assert result["TILES_CLASSIFIED"] >= 5
    assert any("1 invalid polygon" in warning and "make_valid" in warning for warning in feedback.warnings)


def test_output_geopackage_holding_other_layers_is_refused(qgis_app, provider, tmp_path, tiny_model):
    # Processing replaces the whole file: the other layers were dropped (the CLI refuses too).
    raster = _write(tmp_path / "scene.tif", _tiles(3, 3, 32), 32633, (500000.0, 5900000.0), (10.0, 10.0))
    out = tmp_path / "out"
    out.mkdir()
    gpkg = out / "tiles.gpkg"
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(gpkg))
    ds.CreateLayer("roads", None, ogr.wkbLineString)
    ds = None
    with pytest.raises(QgsProcessingException) as caught:
        _classify(raster, tiny_model, out)
    assert "holds other layers (roads)" in str(caught.value)
    assert ogr.Open(str(gpkg)).GetLayerByName("roads") is not None
    assert sorted(p.name for p in out.iterdir()) == ["tiles.gpkg"]


def test_both_faces_name_an_rgb_geotiffs_bands_alike(qgis_app, tmp_path):
    # An 8-bit GeoTIFF without band descriptions says red, green, blue by colour interpretation:
    # the rasterio source read it so, the QGIS source guessed (and sampled the raster to check).
    from rs_ghost_qgis.core.sources.rasterio_source import RasterioSource

    raster = _write(tmp_path / "rgb.tif", _tiles(3, 3, 32), 32633, (500000.0, 5900000.0), (10.0, 10.0))
    qgis = QgisLayerSource.from_layer(QgsRasterLayer(str(raster), "rgb")).info.band_descriptions
    with RasterioSource(raster) as source:
        assert qgis == source.info.band_descriptions == ("red", "green", "blue")


def test_geopackage_mask_without_crs_is_in_the_rasters_crs(qgis_app, provider, tmp_path, tiny_model):
    # QGIS reads srs_id 0 as a valid 'Undefined geographic SRS' CRS; the engine takes it as none.
    raster = _write(tmp_path / "scene.tif", _tiles(3, 3, 32), 32633, (500000.0, 5900000.0), (10.0, 10.0))
    path = tmp_path / "nocrs.gpkg"
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = ds.CreateLayer("mask", None, ogr.wkbPolygon)
    feature = ogr.Feature(layer.GetLayerDefn())
    feature.SetGeometry(
        ogr.CreateGeometryFromWkt("POLYGON((500000 5900000, 500300 5900000, 500300 5899700, 500000 5900000))")
    )
    layer.CreateFeature(feature)
    ds = None
    out = tmp_path / "out"
    out.mkdir()
    assert _classify(raster, tiny_model, out, MASK=str(path))["TILES_CLASSIFIED"] == 1
