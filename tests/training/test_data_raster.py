"""training.data in raster + polygons mode: chips inside labelled polygons, CRS handling, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from osgeo import ogr, osr
from rasterio.transform import from_bounds, from_origin
from rasterio.warp import transform_bounds

from training.data import DataError, load_dataset

# A 64 x 64 px raster at 10 m in UTM 33N: the left half is "water" (red 10), the right half
# "forest" (red 200). The polygons below cover each half with a 5 m margin, so an 8 px chip
# grid holds 4 x 8 chips in each.
LEFT, TOP, PIXEL, SIZE = 500_000.0, 5_800_000.0, 10.0, 64
WATER_BOX = (LEFT - 5, TOP - 645, LEFT + 325, TOP + 5)
FOREST_BOX = (LEFT + 315, TOP - 645, LEFT + 645, TOP + 5)
RED = {"forest": 200, "water": 10}


def halves(dtype: str = "uint8", water: int = 10, forest: int = 200) -> np.ndarray:
    bands = np.full((3, SIZE, SIZE), 50, dtype=dtype)
    bands[0, :, : SIZE // 2], bands[0, :, SIZE // 2 :] = water, forest
    return bands


def write_raster(path: Path, bands: np.ndarray, crs: str = "EPSG:32633", nodata: float | None = None) -> Path:
    if crs == "EPSG:32633":
        transform = from_origin(LEFT, TOP, PIXEL, PIXEL)
    else:  # the same ground in degrees
        transform = from_bounds(*transform_bounds("EPSG:32633", crs, LEFT, TOP - 640, LEFT + 640, TOP), SIZE, SIZE)
    profile = {"driver": "GTiff", "width": SIZE, "height": SIZE, "count": len(bands), "dtype": bands.dtype.name}
    with rasterio.open(path, "w", crs=crs, transform=transform, nodata=nodata, **profile) as raster:
        raster.write(bands)
    return path


def write_polygons(path: Path, features: list[tuple[str, tuple]], epsg: int = 4326, field: str = "landuse") -> Path:
    """Rectangles given in UTM 33N, written in EPSG ``epsg`` (GeoPackage or Shapefile by suffix)."""
    utm, target = osr.SpatialReference(), osr.SpatialReference()
    utm.ImportFromEPSG(32633)
    target.ImportFromEPSG(epsg)
    for srs in (utm, target):
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    to_target = osr.CoordinateTransformation(utm, target)
    driver = ogr.GetDriverByName("GPKG" if path.suffix == ".gpkg" else "ESRI Shapefile")
    dataset = driver.CreateDataSource(str(path))
    layer = dataset.CreateLayer("polygons", target, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn(field, ogr.OFTString))
    for value, (xmin, ymin, xmax, ymax) in features:
        ring = ogr.Geometry(ogr.wkbLinearRing)
        for x, y in [(xmin, ymin), (xmax, ymin), (xmax, ymax), (xmin, ymax), (xmin, ymin)]:
            ring.AddPoint_2D(*to_target.TransformPoint(x, y)[:2])
        polygon = ogr.Geometry(ogr.wkbPolygon)
        polygon.AddGeometry(ring)
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField(field, value)
        feature.SetGeometry(polygon)
        layer.CreateFeature(feature)
    dataset = None  # closing writes the file
    return path


def halves_polygons(path: Path, epsg: int = 4326) -> Path:
    return write_polygons(path, [("water", WATER_BOX), ("forest", FOREST_BOX)], epsg)


def chips(raster: Path, polygons: Path, **options):
    options.setdefault("image_size", 8)
    return load_dataset(raster, polygons=str(polygons), class_field="landuse", **options)


def all_chips(splits) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.concatenate([splits.train.images, splits.val.images]),
        np.concatenate([splits.train.labels, splits.val.labels]),
    )


def assert_labels_match_pixels(splits) -> None:
    images, labels = all_chips(splits)
    expected_red = np.array([RED[splits.class_names[label]] for label in labels])
    assert np.array_equal(images[:, :, :, 0].min(axis=(1, 2)), expected_red)
    assert np.array_equal(images[:, :, :, 0].max(axis=(1, 2)), expected_red)


def test_chips_are_cut_inside_polygons_given_in_another_crs(tmp_path):
    raster = write_raster(tmp_path / "scene.tif", halves())
    polygons = halves_polygons(tmp_path / "fields.gpkg", epsg=4326)

    splits = chips(raster, polygons, val_fraction=0.25)

    assert splits.class_names == ["forest", "water"]
    assert splits.summary["counts"] == {"train": {"forest": 24, "water": 24}, "val": {"forest": 8, "water": 8}}
    assert splits.train.images.shape == (48, 8, 8, 3) and splits.train.images.dtype == np.uint8
    assert_labels_match_pixels(splits)
    summary = splits.summary
    assert summary["kind"] == "raster_polygons"
    assert summary["polygon_crs"] == "EPSG:4326" and summary["polygons_reprojected"]
    assert summary["raster_crs"] == "EPSG:32633" and not summary["resampled"]
    assert summary["gsd_m"] == pytest.approx(10.0) and summary["stretch"] is None
    assert summary["chips_skipped"] == {"nodata": 0, "ambiguous": 0}


def test_shapefile_in_the_raster_crs_and_a_finer_stride(tmp_path):
    raster = write_raster(tmp_path / "scene.tif", halves())
    polygons = halves_polygons(tmp_path / "fields.shp", epsg=32633)

    splits = chips(raster, polygons, chip_stride=4)

    # Offsets 0, 4, ..., 24 px fit in each half (7 columns) and 0, 4, ..., 56 px in height (15 rows).
    assert len(splits.train) + len(splits.val) == 2 * 7 * 15
    assert not splits.summary["polygons_reprojected"]
    assert_labels_match_pixels(splits)


def test_another_gsd_resamples_the_raster(tmp_path):
    raster = write_raster(tmp_path / "scene.tif", halves())
    polygons = halves_polygons(tmp_path / "fields.gpkg")

    splits = chips(raster, polygons, gsd_m=20)

    assert splits.summary["resampled"] and splits.summary["gsd_m"] == 20
    assert splits.summary["native_gsd_m"] == pytest.approx(10.0)
    assert len(splits.train) + len(splits.val) == 2 * 2 * 4  # 160 m chips: 2 x 4 in each half
    assert_labels_match_pixels(splits)


def test_a_geographic_raster_needs_gsd_and_is_cut_in_utm(tmp_path):
    raster = write_raster(tmp_path / "scene.tif", halves(), crs="EPSG:4326")
    polygons = halves_polygons(tmp_path / "fields.gpkg", epsg=32633)

    with pytest.raises(DataError, match=r"geographic CRS \(degrees\).*give --gsd METRES \(its pixels are about"):
        chips(raster, polygons)
    splits = chips(raster, polygons, gsd_m=10)

    assert splits.summary["work_crs"] == "EPSG:32633" and splits.summary["resampled"]
    images, labels = all_chips(splits)
    assert np.bincount(labels).min() >= 16  # the edges of the warped grid may lose a few chips
    # Resampling blurs the boundary between the halves a little, so compare chip means.
    expected_red = np.array([RED[splits.class_names[label]] for label in labels])
    assert np.allclose(images[..., 0].mean(axis=(1, 2)), expected_red, atol=3)


def test_a_16_bit_raster_is_stretched_to_8_bit(tmp_path):
    bands = halves("uint16", water=400, forest=3000)
    bands[1] = np.arange(SIZE * SIZE, dtype=np.uint16).reshape(SIZE, SIZE)
    raster = write_raster(tmp_path / "scene.tif", bands)
    polygons = halves_polygons(tmp_path / "fields.gpkg")

    splits = chips(raster, polygons)

    stretch = splits.summary["stretch"]
    assert stretch["method"].startswith("per-band 2-98 percentile")
    assert stretch["low"][0] == pytest.approx(400) and stretch["high"][0] == pytest.approx(3000)
    images, labels = all_chips(splits)
    water = splits.class_names.index("water")
    assert np.all(images[labels == water][..., 0] == 0) and np.all(images[labels != water][..., 0] == 255)
    assert images[..., 1].min() == 0 and images[..., 1].max() == 255


def test_chips_holding_nodata_are_skipped(tmp_path):
    bands = halves()
    bands[:, 3, 3] = 0
    raster = write_raster(tmp_path / "scene.tif", bands, nodata=0)

    splits = chips(raster, halves_polygons(tmp_path / "fields.gpkg"))

    assert splits.summary["chips_skipped"]["nodata"] == 1
    assert len(splits.train) + len(splits.val) == 63


def test_limit_per_class_applies_to_chips(tmp_path):
    raster = write_raster(tmp_path / "scene.tif", halves())

    splits = chips(raster, halves_polygons(tmp_path / "fields.gpkg"), limit_per_class=5)

    assert splits.summary["counts"] == {"train": {"forest": 5, "water": 5}, "val": {"forest": 5, "water": 5}}


def test_a_missing_class_field_lists_the_fields(tmp_path):
    raster = write_raster(tmp_path / "scene.tif", halves())
    polygons = halves_polygons(tmp_path / "fields.gpkg")

    with pytest.raises(DataError, match="no field 'class'; its fields are: landuse. Give --class-field"):
        load_dataset(raster, polygons=str(polygons))


def test_polygons_that_miss_the_raster(tmp_path):
    raster = write_raster(tmp_path / "scene.tif", halves())
    far = 100_000
    polygons = write_polygons(
        tmp_path / "far.gpkg",
        [
            ("water", (LEFT + far, TOP - 600, LEFT + far + 300, TOP)),
            ("forest", (LEFT - far, TOP - 600, LEFT - far + 300, TOP)),
        ],
    )
    with pytest.raises(DataError, match="do not overlap the raster"):
        chips(raster, polygons)


def test_a_class_whose_polygons_hold_no_chip(tmp_path):
    raster = write_raster(tmp_path / "scene.tif", halves())
    polygons = write_polygons(
        tmp_path / "small.gpkg", [("water", WATER_BOX), ("tiny", (LEFT + 400, TOP - 50, LEFT + 450, TOP))]
    )
    with pytest.raises(DataError, match="No 8 x 8 px chip at 10 m fits inside the polygons of class\\(es\\) tiny"):
        chips(raster, polygons)


def test_a_single_class_and_a_missing_layer(tmp_path):
    raster = write_raster(tmp_path / "scene.tif", halves())
    polygons = write_polygons(tmp_path / "one.gpkg", [("water", WATER_BOX), ("water", FOREST_BOX)])
    with pytest.raises(DataError, match="holds 1 class.*at least two"):
        chips(raster, polygons)
    with pytest.raises(DataError, match="Polygon layer .*nothing.gpkg does not exist"):
        chips(raster, tmp_path / "nothing.gpkg")
