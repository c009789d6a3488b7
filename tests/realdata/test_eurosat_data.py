"""training.data on the real EuroSAT RGB tree (../shared/data/eurosat_rgb)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from training.data import load_dataset

pytestmark = pytest.mark.realdata


def test_eurosat_loads_with_its_own_splits_and_label_order(shared_data, tmp_path):
    root = shared_data / "eurosat_rgb"
    label_map = json.loads((root / "label_map.json").read_text())

    splits = load_dataset(root, limit_per_class=20, cache_dir=tmp_path)

    assert splits.class_names == sorted(label_map, key=label_map.get)
    assert len(splits.class_names) == 10
    assert splits.summary["kind"] == "class_folders"
    assert splits.summary["split"] == "csv" and splits.summary["val_csv"] == "validation.csv"
    assert splits.summary["skipped"] == 0 and splits.summary["converted"] == {}
    for arrays in (splits.train, splits.val):
        assert arrays.images.shape == (200, 64, 64, 3) and arrays.images.dtype == np.uint8
        assert np.bincount(arrays.labels).tolist() == [20] * 10
        folders = [f.split("/")[0] for f in arrays.files]
        assert folders == [splits.class_names[label] for label in arrays.labels]
        for index in (0, 77, 199):  # the pixels are the file's own
            assert np.array_equal(arrays.images[index], np.asarray(Image.open(root / arrays.files[index])))
    val_csv = (root / "validation.csv").read_text()
    assert all(f in val_csv for f in splits.val.files)
    assert not set(splits.train.files) & set(splits.val.files)
