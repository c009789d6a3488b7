"""Batches for training: uint8 arrays in, float32 (B, 3, H, W) in 0..1 out, augmented on demand.

The sampler hands each whole batch to the dataset as (batch seed, indices), so augmentation
runs vectorised on the batch and depends only on (seed, epoch, batch number, rank): the same
with any number of workers. Each pass over the loader is one epoch and draws new shuffles
and augmentations; ``loader.sampler.set_epoch(n)`` pins the epoch explicitly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from .base import ImageArrays

VIEWS = 8  # the flips and quarter turns of a square image
# Radiometric shifts in 0..1 units of the 8-bit images. EuroSAT maps Sentinel-2 reflectance x
# 10,000 of 0..2750 to 1..255, so 0.1 is about 1,080 DN / 0.108 reflectance. L1C carries haze
# that L2A removes: +300/+400/+650 DN on B4/B3/B2 for the Demmin scene, 0.11/0.145/0.235 here.
HAZE_RGB = (0.11, 0.145, 0.235)
HAZE_AMOUNT = (-1.0, 0.5)  # x HAZE_RGB: from all of that haze removed to half as much again added
BAND_OFFSET = 0.03  # plus an independent offset per band
GAIN = (0.75, 1.3)  # a common gain (illumination, calibration) ...
BAND_GAIN = 0.06  # ... and +-6% more per band
GAMMA_LOG = 0.3  # gamma in exp(+-0.3): 0.74..1.35
NOISE = 0.015  # standard deviation of added sensor noise, at most
SHIFT_PROBABILITY = 0.5  # default share of the images given each shift (--radiometric)
BLUR_SHARE = 0.4  # x that share: a 3x3 Gaussian blur blended in by up to 100% (softer sensor, resampling)
STATS_CHUNK = 256
STATS_MAX_IMAGES = 5000
# 0..1 images (B, C, H, W) and the batch's generator -> the augmented images and the view of each.
Augmentation = Callable[[torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


def make_loader(
    arrays: ImageArrays,
    *,
    batch_size: int,
    train: bool,
    seed: int = 0,
    augmentation: Augmentation | None = None,
    distributed: bool = False,
    num_workers: int = 0,
) -> DataLoader:
    """A loader of ``Batch``: images float32 (B, 3, H, W) in 0..1, not normalised; labels int64 (B,);
    the images' indices in ``arrays`` and their views.

    train=True: shuffled each epoch (split across ranks by a DistributedSampler when
    ``distributed``), each batch passed through ``augmentation`` (the stage's, from
    ``training.inputs.InputPipeline``) when one is given, and the last incomplete batch is
    dropped when there is at least one full batch (BatchNorm cannot train on a single
    sample). train=False: every sample in order, never augmented, on every rank.
    """
    sampler = _BatchSampler(len(arrays), batch_size, shuffle=train, seed=seed, distributed=distributed and train)
    return DataLoader(
        _Batches(arrays, augmentation if train else None),
        sampler=sampler,
        batch_size=None,  # the sampler already yields whole batches
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )


def dihedral(images: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
    """Each image of (B, C, H, W) in view ``views[i]`` of the 8 flips and turns (0 = as it is).

    View v is a left-right flip when v >= 4, then v % 4 quarter turns counter-clockwise. This
    one definition serves the training batches and the teacher's soft labels, which must agree.
    """
    images = torch.where((views >= 4)[:, None, None, None], images.flip(-1), images)
    for k in (1, 2, 3):
        chosen = views % 4 == k
        if chosen.any():
            images[chosen] = torch.rot90(images[chosen], k, dims=(-2, -1))
    return images


def augment_batch(
    images: torch.Tensor, generator: torch.Generator, radiometric: float = SHIFT_PROBABILITY
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random view (flip and turn) of each image of a batch, then random radiometric shifts.

    Overhead imagery has no up or left, so every flip and turn is a valid sample. ``images`` is
    float (B, C, H, W) in 0..1 with H == W; returns the images, still in 0..1, and the view of
    each (0..7, see ``dihedral``). ``radiometric`` is the share of images given each shift.
    """
    views = torch.randint(0, VIEWS, (images.shape[0],), generator=generator)
    images = dihedral(images, views)
    if radiometric > 0:
        images = radiometric_shift(images, generator, radiometric)
    return images, views


def radiometric_shift(
    images: torch.Tensor, generator: torch.Generator, probability: float = SHIFT_PROBABILITY
) -> torch.Tensor:
    """Physically plausible changes of the radiometry, each drawn per image (0..1 in and out).

    EuroSAT is Sentinel-2 L1C (top of atmosphere); users bring L2A surface reflectance too, which
    lacks the path radiance (haze) that L1C carries, most of it in blue. So: a haze term added or
    removed (per band, in the proportions of HAZE_RGB, of either sign), a gain per band around a
    common gain, a gamma, and sometimes a mild blur or sensor noise. Each change is applied to
    ``probability`` of the images (the blur to BLUR_SHARE of that), so clean images stay common.
    """
    batch, channels = images.shape[:2]

    def draw(low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(batch, *shape, generator=generator)

    def chosen() -> torch.Tensor:
        return (torch.rand(batch, 1, 1, 1, generator=generator) < probability).float()

    haze = draw(*HAZE_AMOUNT, 1, 1, 1) * torch.tensor(HAZE_RGB[:channels]).view(1, -1, 1, 1)
    haze = haze + draw(-BAND_OFFSET, BAND_OFFSET, channels, 1, 1)
    gain = draw(*GAIN, 1, 1, 1) * draw(1 - BAND_GAIN, 1 + BAND_GAIN, channels, 1, 1)
    gamma = torch.exp(draw(-GAMMA_LOG, GAMMA_LOG, 1, 1, 1))
    images = images + chosen() * haze
    images = images * (1 + chosen() * (gain - 1))
    images = images.clamp(0, 1) ** (1 + chosen() * (gamma - 1))
    blurred = (torch.rand(batch, 1, 1, 1, generator=generator) < BLUR_SHARE * probability).float()
    images = _blur(images, blurred * draw(0.0, 1.0, 1, 1, 1))
    noise = torch.randn(images.shape, generator=generator) * draw(0.0, NOISE, 1, 1, 1) * chosen()
    return (images + noise).clamp_(0, 1)


def _blur(images: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Blend each image with its 3x3 Gaussian blur by ``weight`` (B, 1, 1, 1) in 0..1."""
    kernel = torch.tensor([1.0, 2.0, 1.0])
    kernel = (kernel[:, None] * kernel[None, :] / 16).expand(images.shape[1], 1, 3, 3)
    blurred = torch.nn.functional.conv2d(
        torch.nn.functional.pad(images, (1, 1, 1, 1), mode="replicate"), kernel, groups=images.shape[1]
    )
    return images + weight * (blurred - images)


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


class Batch(NamedTuple):
    """One batch: images (B, 3, H, W) in 0..1, labels, and which image in which view each is."""

    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor  # positions in the arrays the loader reads
    views: torch.Tensor  # 0..7, see ``dihedral``; 0 when not augmented


class _Batches(Dataset):
    """Gives a whole batch for a (batch seed, indices) key."""

    def __init__(self, arrays: ImageArrays, augmentation: Augmentation | None) -> None:
        self.images, self.labels, self.augmentation = arrays.images, arrays.labels, augmentation

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key: tuple[int, np.ndarray]) -> Batch:
        batch_seed, indices = key
        images = torch.from_numpy(self.images[indices]).permute(0, 3, 1, 2).float().div_(255)
        views = torch.zeros(len(indices), dtype=torch.int64)
        if self.augmentation is not None:
            images, views = self.augmentation(images, torch.Generator().manual_seed(batch_seed))
        labels = torch.from_numpy(self.labels[indices]).long()
        return Batch(images.contiguous(), labels, torch.from_numpy(np.asarray(indices)).long(), views)


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
