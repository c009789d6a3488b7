"""The command line on the two real GeoTIFFs in ../shared/data/geotiff (the real-data tier)."""

import hashlib
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from osgeo import ogr

from rs_ghost_qgis.cli.main import main
from rs_ghost_qgis.core.crs import to_wkt, transform_geometry
from rs_ghost_qgis.core.errors import ModelError
from rs_ghost_qgis.core.model.runtime import default_model_path, load_model
from tests.tiny_model import export_tiny_model

pytestmark = pytest.mark.realdata
REPO = Path(__file__).resolve().parents[2]
DEMMIN = "sentinel2_demmin_germany_20230603.tif"
LANDSAT = "rasterio_RGB.byte.tif"


def _demmin_model(tmp_path):
    """The bundled model when it exists, else the tiny model with the bundled footprint (64 px, 10 m)."""
    try:
        return default_model_path()
    except ModelError:
        return export_tiny_model(tmp_path / "tiny64.onnx", input_size=64, tile_size=64)


def _features(path):
    ds = ogr.Open(str(path))
    layer = ds.GetLayer(0)
    features = [(f.items(), shapely.from_wkb(bytes(f.GetGeometryRef().ExportToIsoWkb()))) for f in layer]
    return features, layer.GetSpatialRef().GetAuthorityCode(None), layer.GetMetadata()


def test_demmin_scene_in_degrees_gives_metric_tiles(shared_data, tmp_path, capsys):
    model = _demmin_model(tmp_path)
    tile_m = load_model(model).card.tile_size_m
    vector, classes = tmp_path / "demmin.gpkg", tmp_path / "demmin.tif"
    args = ["classify", str(shared_data / "geotiff" / DEMMIN), "--model", str(model)]
    assert main(args + ["--out-vector", str(vector), "--out-raster", str(classes)]) == 0
    assert "hectares" in capsys.readouterr().out

    features, epsg, metadata = _features(vector)
    assert epsg == "4326"  # the raster's own CRS
    assert "UTM zone 33N" in metadata["grid_crs"] and "geographic" in metadata["grid_crs"]
    assert "matched by description" in metadata["bands"] and "reflectance x 10,000 detected" in metadata["scaling"]
    # 620 x 242 px of about 5.9 x 10 m: about 3.65 x 2.42 km, so a few dozen 640 m tiles.
    assert 15 <= len(features) <= 40
    classified = [f for f in features if f[0]["class_id"] is not None]
    assert len(classified) >= 0.8 * len(features)
    for _, polygon in features:
        utm = transform_geometry(polygon, to_wkt("EPSG:4326"), to_wkt("EPSG:32633"))
        xmin, ymin, xmax, ymax = utm.bounds
        assert math.isclose(xmax - xmin, tile_m, abs_tol=0.05) and math.isclose(ymax - ymin, tile_m, abs_tol=0.05)
    with rasterio.open(classes) as ds:
        assert ds.crs.to_epsg() == 32633 and ds.res == (tile_m, tile_m)
        assert (ds.read(1) != 255).sum() >= len(classified)


def test_landsat_scene_with_nodata_corners(shared_data, tmp_path, capsys):
    # A tiny model at the scene's own 300 m (32 px = 9.6 km tiles): a few hundred tiles.
    model = export_tiny_model(tmp_path / "tiny300.onnx", gsd_m=300.0)
    vector, classes = tmp_path / "landsat.gpkg", tmp_path / "landsat.tif"
    args = ["classify", str(shared_data / "geotiff" / LANDSAT), "--model", str(model)]
    assert main(args + ["--out-vector", str(vector), "--out-raster", str(classes)]) == 0
    out = capsys.readouterr().out

    features, epsg, metadata = _features(vector)
    assert epsg == "32618" and "the raster's CRS" in metadata["grid_crs"]
    with rasterio.open(shared_data / "geotiff" / LANDSAT) as src:
        left, top = src.bounds.left, src.bounds.top
        cols, rows = (src.bounds.right - left) / 9600, (top - src.bounds.bottom) / 9600
    assert len(features) == math.ceil(cols) * math.ceil(rows)
    nodata = [a for a, _ in features if a["class_id"] is None]
    assert nodata and all(a["class_name"] == "nodata" and a["valid_fraction"] < 0.5 for a in nodata)
    assert f"not classified: {len(nodata)} of {len(features)} tiles" in out
    for attrs, polygon in features:
        xmin, _, _, ymax = polygon.bounds
        assert math.isclose(xmin, left + attrs["tile_col"] * 9600) and math.isclose(
            ymax, top - attrs["tile_row"] * 9600
        )
    with rasterio.open(classes) as ds:
        band = ds.read(1)
        assert ds.crs.to_epsg() == 32618 and (band == 255).sum() == len(nodata)
        assert set(np.unique(band)) <= {0, 1, 2, 255}


def _demo():
    spec = importlib.util.spec_from_file_location("demo", REPO / "scripts" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    return demo


def test_pinned_checksum_matches_the_shared_scene(shared_data):
    demo = _demo()
    scene = shared_data / "geotiff" / demo.SCENE
    assert hashlib.sha256(scene.read_bytes()).hexdigest() == demo.SCENE_SHA256


def test_demo_on_the_demmin_scene(shared_data, tmp_path, capsys):
    demo = _demo()
    model = _demmin_model(tmp_path)
    assert demo.main(["--model", str(model), "--out", str(tmp_path / "demo")]) == 0
    printed = capsys.readouterr().out
    preview = tmp_path / "demo" / f"{Path(DEMMIN).stem}_preview.png"
    assert preview.is_file() and str(preview) in printed
