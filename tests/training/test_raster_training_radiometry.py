"""A model trained on a raster's chips maps that raster at inference exactly as training did."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from rs_ghost_qgis.core.model.runtime import load_model
from rs_ghost_qgis.core.radiometry.scaling import plan_radiometry
from rs_ghost_qgis.core.sources.rasterio_source import RasterioSource
from tests.training.test_data_raster import LEFT, PIXEL, TOP, write_polygons
from training.cli import main
from training.data import load_dataset
from training.data.images import stretch_to_uint8

SIDE = 128  # px of 10 m: two 640 m halves, each holding eight 32 px chips


def textured_uint16(path):
    """Three uint16 bands in very different units, so a common range would squash two of them."""
    rng = np.random.default_rng(0)
    bands = np.stack(
        [
            rng.integers(300, 900, (SIDE, SIDE)),
            rng.integers(10_000, 40_000, (SIDE, SIDE)),
            rng.integers(0, 120, (SIDE, SIDE)),
        ]
    ).astype(np.uint16)
    bands[0, :, SIDE // 2 :] += 2000  # the right half is the other class
    profile = {"driver": "GTiff", "width": SIDE, "height": SIDE, "count": 3, "dtype": "uint16"}
    transform = rasterio.transform.from_origin(LEFT, TOP, PIXEL, PIXEL)
    with rasterio.open(path, "w", crs="EPSG:32633", transform=transform, **profile) as raster:
        raster.write(bands)
    return path, bands


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_card_of_a_raster_trained_model_reproduces_the_training_stretch(tmp_path, capsys):
    raster, bands = textured_uint16(tmp_path / "scene.tif")
    half = SIDE * PIXEL / 2
    polygons = write_polygons(
        tmp_path / "fields.gpkg",
        [
            ("bare", (LEFT, TOP - 2 * half, LEFT + half, TOP)),
            ("crop", (LEFT + half, TOP - 2 * half, LEFT + 2 * half, TOP)),
        ],
    )
    out = tmp_path / "run"
    args = ["run", "--data", str(raster), "--polygons", str(polygons), "--class-field", "landuse", "--gsd", "10"]
    args += ["--image-size", "32", "--student", "g_ghost_regnetx_002", "--distill", "none", "--epochs", "1"]
    args += ["--batch-size", "4", "--bn-batches", "1", "--out", str(out)]

    assert main(args) == 0, capsys.readouterr().err

    card = load_model(out / "g_ghost_regnetx_002_none.onnx").card
    with RasterioSource(raster) as source:
        plan = plan_radiometry(source, card)  # auto, as every face calls it
    trained = load_dataset(raster, polygons=str(polygons), class_field="landuse", image_size=32, gsd_m=10)
    stretch = trained.summary["stretch"]
    as_trained = stretch_to_uint8(np.moveaxis(bands, 0, -1), np.array(stretch["low"]), np.array(stretch["high"]))
    at_inference = np.moveaxis(plan.to_values(bands), 0, -1)
    assert card.band_raw_ranges == [[lo, hi] for lo, hi in zip(stretch["low"], stretch["high"], strict=True)]
    # Training rounds to uint8; inference keeps the float: they differ by the rounding only.
    assert np.abs(at_inference - as_trained).max() <= 0.5 + 1e-3
    assert "the model's own per-band ranges" in plan.scaling_note
    # Every training chip is one of the raster's windows as inference sees it.
    chip = trained.train.images[0].astype(np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(at_inference, (32, 32, 3))[::32, ::32, 0]
    assert min(np.abs(window - chip).max() for window in windows.reshape(-1, 32, 32, 3)) <= 0.5 + 1e-3


def test_chips_of_a_raster_with_band_scales_are_stretched_in_physical_units(tmp_path):
    raster, bands = textured_uint16(tmp_path / "scene.tif")
    with rasterio.open(raster, "r+") as ds:
        ds.scales, ds.offsets = (0.5, 2.0, 1.0), (10.0, 0.0, -5.0)
    half = SIDE * PIXEL / 2
    polygons = write_polygons(
        tmp_path / "fields.gpkg",
        [
            ("bare", (LEFT, TOP - 2 * half, LEFT + half, TOP)),
            ("crop", (LEFT + half, TOP - 2 * half, LEFT + 2 * half, TOP)),
        ],
    )
    trained = load_dataset(raster, polygons=str(polygons), class_field="landuse", image_size=32, gsd_m=10)
    stretch = trained.summary["stretch"]
    physical = bands * np.array([0.5, 2.0, 1.0])[:, None, None] + np.array([10.0, 0.0, -5.0])[:, None, None]
    expected = stretch_to_uint8(np.moveaxis(physical, 0, -1), np.array(stretch["low"]), np.array(stretch["high"]))
    chip = trained.train.images[0].astype(np.int16)
    windows = np.lib.stride_tricks.sliding_window_view(expected, (32, 32, 3))[::32, ::32, 0].reshape(-1, 32, 32, 3)
    assert min(np.abs(window.astype(np.int16) - chip).max() for window in windows) <= 1
