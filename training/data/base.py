"""The data package's public types: the arrays training consumes and the summary beside them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ImageArrays:
    """Images decoded once, kept compact: uint8 (N, H, W, 3) RGB and int64 (N,) labels.

    ``files`` names each image's file relative to the source folder (None for raster chips),
    for tracing a prediction back to its file.
    """

    images: np.ndarray
    labels: np.ndarray
    files: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class DatasetSplits:
    """Train and validation arrays, the class names (index = label) and a JSON-able summary."""

    train: ImageArrays
    val: ImageArrays
    class_names: list[str]
    summary: dict
