"""training.data loaders: batches, shuffling, augmentation, determinism, channel statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as dist

from training.data import ImageArrays, augment_batch, channel_stats, make_loader


def random_arrays(count: int = 50, size: int = 8, seed: int = 0) -> ImageArrays:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8)
    return ImageArrays(images, np.arange(count, dtype=np.int64))  # label = index: batches are traceable


def epoch(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(loader)


def test_training_batches_are_shuffled_float_images_in_0_to_1():
    arrays = random_arrays(50)
    loader = make_loader(arrays, batch_size=16, train=True, seed=0)

    batches = epoch(loader)

    assert len(batches) == len(loader) == 3  # 50 = 3 x 16 + 2: the incomplete batch is dropped
    for images, labels in batches:
        assert images.shape == (16, 3, 8, 8) and images.dtype == torch.float32
        assert labels.dtype == torch.int64
        assert images.min() >= 0 and images.max() <= 1
    seen = torch.cat([labels for _, labels in batches])
    assert len(set(seen.tolist())) == 48
    assert not torch.equal(seen, torch.sort(seen).values)


def test_a_split_smaller_than_one_batch_still_trains():
    batches = epoch(make_loader(random_arrays(5), batch_size=16, train=True))
    assert [len(labels) for _, labels in batches] == [5]


def test_evaluation_batches_are_ordered_complete_and_unaugmented():
    arrays = random_arrays(50)
    loader = make_loader(arrays, batch_size=16, train=False)

    batches = epoch(loader)

    assert [len(labels) for _, labels in batches] == [16, 16, 16, 2]
    images = torch.cat([images for images, _ in batches])
    assert torch.equal(torch.cat([labels for _, labels in batches]), torch.arange(50))
    expected = torch.from_numpy(arrays.images).permute(0, 3, 1, 2).float() / 255
    assert torch.allclose(images, expected)


def test_training_without_augmentation_only_shuffles():
    arrays = random_arrays(32)
    images, labels = next(iter(make_loader(arrays, batch_size=32, train=True, augment=False)))
    expected = torch.from_numpy(arrays.images[labels.numpy()]).permute(0, 3, 1, 2).float() / 255
    assert torch.allclose(images, expected)


def test_epochs_are_reproducible_from_the_seed_and_differ_from_each_other():
    arrays = random_arrays(40)
    first, same = (make_loader(arrays, batch_size=8, train=True, seed=5) for _ in range(2))
    other_seed = make_loader(arrays, batch_size=8, train=True, seed=6)

    epoch_0, epoch_0_again, epoch_0_other = epoch(first), epoch(same), epoch(other_seed)
    epoch_1 = epoch(first)
    first.sampler.set_epoch(0)
    epoch_0_replayed = epoch(first)

    def same_batches(a, b):
        return all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b, strict=True))

    assert same_batches(epoch_0, epoch_0_again) and same_batches(epoch_0, epoch_0_replayed)
    assert not same_batches(epoch_0, epoch_1)
    assert not same_batches(epoch_0, epoch_0_other)


def test_worker_processes_give_the_same_batches():
    arrays = random_arrays(24)
    in_process = epoch(make_loader(arrays, batch_size=8, train=True, seed=1))
    with_worker = epoch(make_loader(arrays, batch_size=8, train=True, seed=1, num_workers=1))
    for (a_images, a_labels), (b_images, b_labels) in zip(in_process, with_worker, strict=True):
        assert torch.equal(a_labels, b_labels) and torch.equal(a_images, b_images)


def dihedral_variants(image: torch.Tensor) -> list[torch.Tensor]:
    turns = [torch.rot90(image, k, dims=(-2, -1)) for k in range(4)]
    return turns + [t.flip(-1) for t in turns]


def test_augmentation_flips_turns_and_jitters_by_at_most_ten_percent():
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.uniform(0.3, 0.7, (64, 3, 8, 8)).astype(np.float32))

    augmented = augment_batch(images.clone(), torch.Generator().manual_seed(0))
    again = augment_batch(images.clone(), torch.Generator().manual_seed(0))

    assert augmented.shape == images.shape and torch.equal(augmented, again)
    used = set()
    for original, result in zip(images, augmented, strict=True):
        # Jitter is affine per image, so the right flip/turn correlates perfectly with the result.
        scores = [torch.corrcoef(torch.stack([v.ravel(), result.ravel()]))[0, 1] for v in dihedral_variants(original)]
        best = int(torch.argmax(torch.stack(scores)))
        assert scores[best] > 0.999
        used.add(best)
        ratio_mean = result.mean() / original.mean()
        ratio_std = result.std() / original.std()
        assert 0.9 - 1e-4 <= ratio_mean <= 1.1 + 1e-4
        assert 0.81 - 1e-4 <= ratio_std <= 1.21 + 1e-4
    assert len(used) >= 6  # the batch uses (nearly) all 8 flips and turns


def test_channel_stats_are_over_0_to_1_values():
    images = np.zeros((4, 2, 2, 3), dtype=np.uint8)
    images[:2, ..., 0] = 255  # red: half 0, half 1
    images[..., 1] = 51  # green: constant 0.2
    images[..., 2] = np.array([0, 255, 0, 255], dtype=np.uint8)[:, None, None]

    mean, std = channel_stats(ImageArrays(images, np.zeros(4, dtype=np.int64)))

    assert mean == pytest.approx([0.5, 0.2, 0.5])
    assert std == pytest.approx([0.5, 1e-6, 0.5], abs=1e-6)


def test_distributed_training_uses_a_distributed_sampler(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        loader = make_loader(random_arrays(20), batch_size=5, train=True, distributed=True, seed=2)
        first, second = epoch(loader), epoch(loader)
    finally:
        dist.destroy_process_group()
    order_first = torch.cat([labels for _, labels in first])
    order_second = torch.cat([labels for _, labels in second])
    assert sorted(order_first.tolist()) == list(range(20)) == sorted(order_second.tolist())
    assert not torch.equal(order_first, order_second)  # reshuffled each epoch
