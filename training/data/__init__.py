"""Training data: labelled image sets as compact uint8 arrays, and loaders over them."""

from .base import DataError, DatasetSplits, ImageArrays
from .dataset import load_dataset
from .loader import augment_batch, channel_stats, make_loader

__all__ = [
    "DataError",
    "DatasetSplits",
    "ImageArrays",
    "augment_batch",
    "channel_stats",
    "load_dataset",
    "make_loader",
]
