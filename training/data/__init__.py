"""Training data: labelled image sets as compact uint8 arrays, and loaders over them."""

from training.errors import DataError

from .base import DatasetSplits, ImageArrays
from .dataset import load_dataset
from .loader import (
    SHIFT_PROBABILITY,
    VIEWS,
    Batch,
    augment_batch,
    channel_stats,
    dihedral,
    make_loader,
    radiometric_shift,
)

__all__ = [
    "SHIFT_PROBABILITY",
    "VIEWS",
    "Batch",
    "DataError",
    "DatasetSplits",
    "ImageArrays",
    "augment_batch",
    "channel_stats",
    "dihedral",
    "load_dataset",
    "make_loader",
    "radiometric_shift",
]
