"""Seeded, stratified choices of samples: the validation split and the per-class cap."""

from __future__ import annotations

import numpy as np

# Separate random streams, so that capping a split never changes which samples are validation.
_SPLIT_STREAM = 1
_LIMIT_STREAM = 2


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return sorted (train, val) indices holding about ``val_fraction`` of each class in val.

    Every class with at least two samples keeps at least one in each split.
    """
    rng = np.random.default_rng([seed, _SPLIT_STREAM])
    train, val = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_val = min(max(round(len(members) * val_fraction), 1), len(members) - 1)
        val.append(members[:n_val])
        train.append(members[n_val:])
    return _join(train), _join(val)


def limit_per_class(labels: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Return sorted indices keeping at most ``limit`` randomly chosen samples of each class."""
    rng = np.random.default_rng([seed, _LIMIT_STREAM])
    kept = [rng.permutation(np.flatnonzero(labels == label))[:limit] for label in np.unique(labels)]
    return _join(kept)


def _join(parts: list[np.ndarray]) -> np.ndarray:
    return np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)
