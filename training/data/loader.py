"""Batches for training: uint8 arrays in, float32 (B, 3, H, W) in 0..1 out, augmented on demand.

The sampler hands each whole batch to the dataset as (batch seed, indices), so augmentation
runs vectorised on the batch and depends only on (seed, epoch, batch number, rank): the same
with any number of workers. Each pass over the loader is one epoch and draws new shuffles
and augmentations; ``loader.sampler.set_epoch(n)`` pins the epoch explicitly.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from .base import ImageArrays

JITTER = 0.1  # brightness and contrast vary by up to +-10%
STATS_CHUNK = 256
STATS_MAX_IMAGES = 5000


def make_loader(
    arrays: ImageArrays,
    *,
    batch_size: int,
    train: bool,
    seed: int = 0,
    augment: bool = True,
    distributed: bool = False,
    num_workers: int = 0,
) -> DataLoader:
    """A loader of (images float32 (B, 3, H, W) in 0..1, not normalised; labels int64 (B,)).

    train=True: shuffled each epoch (split across ranks by a DistributedSampler when
    ``distributed``), augmented unless ``augment`` is False, and the last incomplete batch is
    dropped when there is at least one full batch (BatchNorm cannot train on a single
    sample). train=False: every sample in order, never augmented, on every rank.
    """
    sampler = _BatchSampler(len(arrays), batch_size, shuffle=train, seed=seed, distributed=distributed and train)
    return DataLoader(
        _Batches(arrays, augment=train and augment),
        sampler=sampler,
        batch_size=None,  # the sampler already yields whole batches
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )


def augment_batch(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random flips, 90-degree turns and +-10% brightness/contrast for each image of a batch.

    Overhead imagery has no up or left, so every flip and turn is a valid sample. ``images``
    is float (B, C, H, W) in 0..1 with H == W; the result stays in 0..1.
    """
    batch = images.shape[0]
    flip_h, flip_v = (torch.rand(batch, generator=generator) < 0.5 for _ in range(2))
    turns = torch.randint(0, 4, (batch,), generator=generator)
    brightness, contrast = (1 + (torch.rand(batch, 1, 1, 1, generator=generator) * 2 - 1) * JITTER for _ in range(2))
    images = torch.where(flip_h[:, None, None, None], images.flip(-1), images)
    images = torch.where(flip_v[:, None, None, None], images.flip(-2), images)
    for k in (1, 2, 3):
        chosen = turns == k
        if chosen.any():
            images[chosen] = torch.rot90(images[chosen], k, dims=(-2, -1))
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return (((images - mean) * contrast + mean) * brightness).clamp_(0, 1)


def channel_stats(arrays: ImageArrays) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of the 0..1 pixel values.

    Use it on the training split. Above 5000 images an evenly spaced subset is used.
    """
    images = arrays.images
    if len(images) > STATS_MAX_IMAGES:
        images = images[np.linspace(0, len(images) - 1, STATS_MAX_IMAGES).astype(np.int64)]
    total, squares = np.zeros(3), np.zeros(3)
    # Chunks keep the float copy small whatever the split's size.
    for start in range(0, len(images), STATS_CHUNK):
        chunk = images[start : start + STATS_CHUNK].reshape(-1, 3).astype(np.float64) / 255.0
        total += chunk.sum(axis=0)
        squares += np.square(chunk).sum(axis=0)
    count = max(len(images) * images.shape[1] * images.shape[2], 1)
    mean = total / count
    # A constant channel would divide by zero at normalisation; 1e-6 keeps it finite.
    std = np.maximum(np.sqrt(np.maximum(squares / count - mean**2, 0)), 1e-6)
    return mean.tolist(), std.tolist()


class _Batches(Dataset):
    """Gives a whole batch for a (batch seed, indices) key."""

    def __init__(self, arrays: ImageArrays, augment: bool) -> None:
        self.images, self.labels, self.augment = arrays.images, arrays.labels, augment

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key: tuple[int, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        batch_seed, indices = key
        images = torch.from_numpy(self.images[indices]).permute(0, 3, 1, 2).float().div_(255)
        if self.augment:
            images = augment_batch(images, torch.Generator().manual_seed(batch_seed))
        return images.contiguous(), torch.from_numpy(self.labels[indices]).long()


class _BatchSampler(Sampler):
    """Yields (batch seed, indices) for each batch of one epoch; counts epochs by itself."""

    def __init__(self, size: int, batch_size: int, *, shuffle: bool, seed: int, distributed: bool) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self.size, self.batch_size, self.shuffle, self.seed = size, batch_size, shuffle, seed
        self.ranks = DistributedSampler(range(size), shuffle=True, seed=seed) if distributed else None
        self.rank = dist.get_rank() if distributed else 0
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass epoch ``epoch`` (its shuffle and augmentations)."""
        self.epoch = epoch

    def _order(self) -> np.ndarray:
        if self.ranks is not None:
            self.ranks.set_epoch(self.epoch)
            return np.fromiter(self.ranks, dtype=np.int64)
        if self.shuffle:
            return np.random.default_rng([self.seed, self.epoch]).permutation(self.size)
        return np.arange(self.size)

    def _batch_starts(self, count: int) -> range:
        drop_last = self.shuffle and count >= self.batch_size
        end = count - count % self.batch_size if drop_last else count
        return range(0, end, self.batch_size)

    def __len__(self) -> int:
        count = len(self.ranks) if self.ranks is not None else self.size
        return len(self._batch_starts(count))

    def __iter__(self):
        order, epoch = self._order(), self.epoch
        self.epoch += 1
        for number, start in enumerate(self._batch_starts(len(order))):
            batch_seed = int(np.random.SeedSequence([self.seed, epoch, number, self.rank]).generate_state(1)[0])
            yield batch_seed, order[start : start + self.batch_size]
