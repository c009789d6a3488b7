"""training.data on image trees: layouts, splits, conversions, broken files, errors, cache."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image

from training.data import DataError, load_dataset
from training.data import images as image_decoding

# Each test image is one flat colour that encodes its class and number, so a loaded image
# can be traced back to the file it came from: R = 40 * class + 10, G = 2 * number.


def colour(label: int, number: int) -> tuple[int, int, int]:
    return (40 * label + 10, 2 * number, 100)


def write_png(path: Path, rgb: tuple[int, int, int], size: int = 16) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), rgb).save(path)


def make_tree(root: Path, counts: dict[str, int], size: int = 16) -> Path:
    """Class folders in sorted order, counts[name] PNGs each."""
    for label, (name, count) in enumerate(sorted(counts.items())):
        for number in range(count):
            write_png(root / name / f"{name}_{number}.png", colour(label, number), size)
    return root


def write_split_csv(path: Path, rows: list[tuple[str, int, str]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["", "Filename", "Label", "ClassName"])
        for index, (filename, label, class_name) in enumerate(rows):
            writer.writerow([index, filename, label, class_name])


def load(source: Path, tmp_path: Path, **options):
    """load_dataset with small images and the cache kept inside the test's folder."""
    options.setdefault("image_size", 16)
    return load_dataset(source, cache_dir=tmp_path / "cache", **options)


def assert_labels_match_pixels(arrays) -> None:
    assert np.array_equal(arrays.images[:, 0, 0, 0], 40 * arrays.labels + 10)


def assert_labels_match_folders(splits) -> None:
    for arrays in (splits.train, splits.val):
        folders = [f.split("/")[0] for f in arrays.files]
        assert folders == [splits.class_names[label] for label in arrays.labels]


def images_by_file(splits) -> dict[str, np.ndarray]:
    return {
        f: image for arrays in (splits.train, splits.val) for f, image in zip(arrays.files, arrays.images, strict=True)
    }


# --- class folders and splits ---------------------------------------------------------------


def test_class_folders_get_a_stratified_split(tmp_path):
    root = make_tree(tmp_path / "tree", {"Beach": 10, "Forest": 10, "Port": 5})

    splits = load(root, tmp_path, val_fraction=0.2)

    assert splits.class_names == ["Beach", "Forest", "Port"]
    assert splits.summary["kind"] == "class_folders"
    assert splits.summary["split"] == "stratified"
    assert splits.summary["counts"] == {
        "train": {"Beach": 8, "Forest": 8, "Port": 4},
        "val": {"Beach": 2, "Forest": 2, "Port": 1},
    }
    assert splits.train.images.shape == (20, 16, 16, 3) and splits.train.images.dtype == np.uint8
    assert splits.val.labels.dtype == np.int64
    assert_labels_match_pixels(splits.train)
    assert_labels_match_pixels(splits.val)
    assert_labels_match_folders(splits)
    assert not set(splits.train.files) & set(splits.val.files)
    json.dumps(splits.summary)  # the summary must be JSON-able


def test_split_is_deterministic_and_follows_the_seed(tmp_path):
    root = make_tree(tmp_path / "tree", {"A": 20, "B": 20})

    first, again = load(root, tmp_path, seed=3), load(root, tmp_path, seed=3)
    other = load(root, tmp_path, seed=4)

    assert list(first.val.files) == list(again.val.files)
    assert np.array_equal(first.val.images, again.val.images)
    assert set(first.val.files) != set(other.val.files)


def test_images_of_another_size_are_resized(tmp_path):
    root = make_tree(tmp_path / "tree", {"A": 3, "B": 3}, size=24)

    splits = load(root, tmp_path, image_size=8)

    assert splits.train.images.shape[1:] == (8, 8, 3)
    assert_labels_match_pixels(splits.train)
    assert splits.summary["image_size"] == 8


def test_label_map_orders_the_classes(tmp_path):
    root = make_tree(tmp_path / "tree", {"A": 4, "B": 4})
    (root / "label_map.json").write_text(json.dumps({"B": 0, "A": 1}))

    splits = load(root, tmp_path)

    assert splits.class_names == ["B", "A"]
    assert_labels_match_folders(splits)


def test_train_and_validation_csvs_in_the_folder_are_used(tmp_path):
    root = make_tree(tmp_path / "tree", {"A": 6, "B": 6})
    write_split_csv(
        root / "train.csv", [(f"{c}/{c}_{n}.png", label, c) for label, c in enumerate("AB") for n in (0, 1, 2, 3)]
    )
    write_split_csv(
        root / "validation.csv", [(f"{c}/{c}_{n}.png", label, c) for label, c in enumerate("AB") for n in (4, 5)]
    )

    splits = load(root, tmp_path)

    assert splits.summary["split"] == "csv"
    assert sorted(splits.val.files) == ["A/A_4.png", "A/A_5.png", "B/B_4.png", "B/B_5.png"]
    assert len(splits.train) == 8
    assert_labels_match_pixels(splits.train)


def test_explicit_csvs_and_a_validation_csv_alone(tmp_path):
    root = make_tree(tmp_path / "tree", {"A": 6, "B": 6})
    write_split_csv(tmp_path / "mine_train.csv", [("A/A_0.png", 0, "A"), ("B/B_0.png", 1, "B")])
    write_split_csv(tmp_path / "mine_val.csv", [("A/A_1.png", 0, "A"), ("B/B_1.png", 1, "B")])

    both = load(root, tmp_path, split_csv=str(tmp_path / "mine_train.csv"), val_csv=str(tmp_path / "mine_val.csv"))
    val_only = load(root, tmp_path, val_csv=str(tmp_path / "mine_val.csv"))

    assert sorted(both.train.files) == ["A/A_0.png", "B/B_0.png"]
    assert sorted(both.val.files) == ["A/A_1.png", "B/B_1.png"]
    assert sorted(val_only.val.files) == ["A/A_1.png", "B/B_1.png"]
    assert len(val_only.train) == 10 and not set(val_only.train.files) & set(val_only.val.files)


def test_limit_per_class_caps_each_split_and_keeps_validation_inside_the_full_one(tmp_path):
    root = make_tree(tmp_path / "tree", {"A": 30, "B": 20})

    full = load(root, tmp_path, seed=1)
    capped = load(root, tmp_path, seed=1, limit_per_class=3)
    again = load(root, tmp_path, seed=1, limit_per_class=3)

    assert capped.summary["counts"] == {"train": {"A": 3, "B": 3}, "val": {"A": 3, "B": 3}}
    assert list(capped.train.files) == list(again.train.files)
    assert set(capped.val.files) <= set(full.val.files)


def test_rsod_layout_labels_each_image_by_its_category_and_ignores_annotations(tmp_path):
    root = tmp_path / "RSOD"
    for label, category in enumerate(["aircraft", "oiltank", "overpass", "playground"]):
        for number in range(3):
            write_png(root / category / "JPEGImages" / f"{category}_{number}.png", colour(label, number))
            xml = root / category / "Annotation" / "xml" / f"{category}_{number}.xml"
            xml.parent.mkdir(parents=True, exist_ok=True)
            xml.write_text("<annotation><object><name>x</name></object></annotation>")

    splits = load(root, tmp_path, val_fraction=0.34)

    assert splits.summary["kind"] == "rsod"
    assert splits.class_names == ["aircraft", "oiltank", "overpass", "playground"]
    assert len(splits.train) + len(splits.val) == 12
    assert all(f.endswith(".png") for f in [*splits.train.files, *splits.val.files])
    assert_labels_match_pixels(splits.train)
    assert_labels_match_folders(splits)


# --- conversions and broken files -----------------------------------------------------------


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_grayscale_rgba_and_16_bit_images_are_converted_and_counted(tmp_path):
    root = make_tree(tmp_path / "tree", {"A": 4, "B": 4})
    Image.new("L", (16, 16), 77).save(root / "A" / "gray.png")
    Image.new("RGBA", (16, 16), (1, 2, 3, 0)).save(root / "A" / "rgba.png")
    ramp = (np.arange(256, dtype=np.uint16).reshape(16, 16) * 200).astype(np.uint16)
    Image.fromarray(ramp).save(root / "B" / "gray16.png")
    with rasterio.open(
        root / "B" / "rgb16.tif", "w", driver="GTiff", width=16, height=16, count=3, dtype="uint16"
    ) as tif:
        tif.write(np.stack([ramp, ramp, ramp]))

    splits = load(root, tmp_path, val_fraction=0.5, limit_per_class=None)

    assert splits.summary["converted"] == {"16bit_stretched": 2, "alpha_dropped": 1, "grayscale": 1}
    by_file = images_by_file(splits)
    assert np.all(by_file["A/gray.png"] == 77)
    assert np.all(by_file["A/rgba.png"] == [1, 2, 3])
    for name in ("B/gray16.png", "B/rgb16.tif"):
        stretched = by_file[name]
        assert stretched.min() == 0 and stretched.max() == 255
        assert np.array_equal(stretched[..., 0], stretched[..., 2])
        assert np.all(np.diff(stretched[..., 0].ravel().astype(int)) >= 0)  # the ramp stays a ramp


def add_broken_files(folder: Path, count: int) -> None:
    for number in range(count):
        if number % 2:
            (folder / f"broken_{number}.jpg").write_bytes(b"this is not a jpeg")
        else:
            good = next(folder.glob("*.png"))
            data = good.read_bytes()
            (folder / f"broken_{number}.png").write_bytes(data[: len(data) // 2])  # truncated


def test_broken_files_up_to_one_percent_are_skipped_and_counted(tmp_path):
    root = make_tree(tmp_path / "tree", {"A": 100, "B": 100}, size=8)
    add_broken_files(root / "A", 2)  # 2 of 202 files: 0.99 %

    splits = load(root, tmp_path, image_size=8)

    assert splits.summary["skipped"] == 2
    assert sorted(s["file"] for s in splits.summary["skipped_files"]) == ["A/broken_0.png", "A/broken_1.jpg"]
    assert len(splits.train) + len(splits.val) == 200
    assert sum(splits.summary["counts"]["train"].values()) == len(splits.train)
    assert_labels_match_pixels(splits.train)


def test_more_than_one_percent_broken_files_fail_the_load(tmp_path):
    root = make_tree(tmp_path / "tree", {"A": 100, "B": 100}, size=8)
    add_broken_files(root / "B", 3)  # 3 of 203 files: 1.5 %

    with pytest.raises(DataError, match=r"3 of 203 images .* cannot be decoded .*Replace or delete"):
        load(root, tmp_path, image_size=8)


# --- mistakes the user can make -------------------------------------------------------------


def test_missing_source(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load(tmp_path / "nowhere", tmp_path)


def test_a_file_without_polygons(tmp_path):
    image = tmp_path / "scene.png"
    write_png(image, (1, 2, 3))
    with pytest.raises(DataError, match="is a file.*--polygons"):
        load(image, tmp_path)


def test_folder_without_class_folders(tmp_path):
    (tmp_path / "flat").mkdir()
    write_png(tmp_path / "flat" / "a.png", (1, 2, 3))
    with pytest.raises(DataError, match="no class folders"):
        load(tmp_path / "flat", tmp_path)


def test_empty_class_folder(tmp_path):
    root = make_tree(tmp_path / "tree", {"A": 3, "B": 3})
    (root / "Empty").mkdir()
    (root / "Empty" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match="Empty .* hold no images.*remove the empty folders"):
        load(root, tmp_path)


def test_a_single_class(tmp_path):
    root = make_tree(tmp_path / "tree", {"Only": 5})
    with pytest.raises(DataError, match="single class folder \\(Only\\).*at least two"):
        load(root, tmp_path)


def test_csv_naming_a_missing_file(tmp_path):
    root = make_tree(tmp_path / "tree", {"A": 3, "B": 3})
    write_split_csv(root / "train.csv", [("A/A_0.png", 0, "A"), ("A/gone.png", 0, "A")])
    write_split_csv(root / "validation.csv", [("B/B_0.png", 1, "B")])
    with pytest.raises(DataError, match="train.csv names 1 image.*A/gone.png.*Restore the files or remove"):
        load(root, tmp_path)


def test_csv_with_an_unknown_label(tmp_path):
    root = make_tree(tmp_path / "tree", {"A": 3, "B": 3})
    write_split_csv(root / "train.csv", [("A/A_0.png", 0, "A"), ("B/B_0.png", 7, "B")])
    write_split_csv(root / "validation.csv", [("B/B_1.png", 1, "B")])
    with pytest.raises(DataError, match="B/B_0.png the unknown label '7'.*labels are 0..1"):
        load(root, tmp_path)


def test_csv_whose_class_name_disagrees_with_its_label(tmp_path):
    root = make_tree(tmp_path / "tree", {"A": 3, "B": 3})
    write_split_csv(tmp_path / "t.csv", [("A/A_0.png", 1, "A")])
    with pytest.raises(DataError, match="label 1 but ClassName 'A'"):
        load(root, tmp_path, split_csv=str(tmp_path / "t.csv"))


def test_csv_without_the_needed_columns_or_that_does_not_exist(tmp_path):
    root = make_tree(tmp_path / "tree", {"A": 3, "B": 3})
    (tmp_path / "bad.csv").write_text("path,class\nA/A_0.png,A\n")
    with pytest.raises(DataError, match="needs Filename and Label"):
        load(root, tmp_path, split_csv=str(tmp_path / "bad.csv"))
    with pytest.raises(DataError, match="nope.csv was found neither"):
        load(root, tmp_path, val_csv="nope.csv")


def test_label_map_disagreeing_with_the_folders(tmp_path):
    root = make_tree(tmp_path / "tree", {"A": 3, "B": 3})
    (root / "label_map.json").write_text(json.dumps({"A": 0, "C": 1}))
    with pytest.raises(DataError, match=r"folders without a label: \['B'\]; labels without a folder: \['C'\]"):
        load(root, tmp_path)


@pytest.mark.parametrize(
    ("option", "message"),
    [({"val_fraction": 1.0}, "--val-fraction must lie between 0 and 1"), ({"limit_per_class": 0}, "at least 1")],
)
def test_bad_options(tmp_path, option, message):
    root = make_tree(tmp_path / "tree", {"A": 3, "B": 3})
    with pytest.raises(DataError, match=message):
        load(root, tmp_path, **option)


# --- cache ----------------------------------------------------------------------------------


def test_second_load_reads_the_cache_without_decoding(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "tree", {"A": 5, "B": 5})
    first = load(root, tmp_path)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the cache holds these images")

    monkeypatch.setattr(image_decoding, "decode_image", no_decoding)
    second = load(root, tmp_path)
    other_seed = load(root, tmp_path, seed=9)  # same files: same cache entry

    assert not first.summary["cache"]["hit"]
    assert second.summary["cache"]["hit"] and other_seed.summary["cache"]["hit"]
    assert Path(second.summary["cache"]["file"]).parent == tmp_path / "cache"
    assert np.array_equal(first.train.images, second.train.images)
    assert np.array_equal(first.val.labels, second.val.labels)


def test_a_changed_file_invalidates_the_cache(tmp_path):
    root = make_tree(tmp_path / "tree", {"A": 5, "B": 5})
    load(root, tmp_path)
    write_png(root / "A" / "A_0.png", (250, 250, 250))

    again = load(root, tmp_path)

    assert not again.summary["cache"]["hit"]
    by_file = images_by_file(again)
    assert np.all(by_file["A/A_0.png"] == 250)


def test_default_cache_is_under_the_working_directory(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "tree", {"A": 3, "B": 3})
    monkeypatch.chdir(tmp_path)

    splits = load_dataset(root, image_size=8)

    assert Path(splits.summary["cache"]["file"]).parent == tmp_path / "cache" / "datasets"
