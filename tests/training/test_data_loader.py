"""training.data loaders: batches, shuffling, augmentation, determinism, channel statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as dist

from training.data import ImageArrays, augment_batch, channel_stats, dihedral, make_loader, radiometric_shift
from training.inputs import InputPipeline


def random_arrays(count: int = 50, size: int = 8, seed: int = 0) -> ImageArrays:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8)
    return ImageArrays(images, np.arange(count, dtype=np.int64))  # label = index: batches are traceable


def epoch(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(loader)


def test_training_batches_are_shuffled_float_images_in_0_to_1():
    arrays = random_arrays(50)
    loader = make_loader(arrays, batch_size=16, train=True, seed=0, augmentation=augment_batch)

    batches = epoch(loader)

    assert len(batches) == len(loader) == 3  # 50 = 3 x 16 + 2: the incomplete batch is dropped
    for images, labels, _, _ in batches:
        assert images.shape == (16, 3, 8, 8) and images.dtype == torch.float32
        assert labels.dtype == torch.int64
        assert images.min() >= 0 and images.max() <= 1
    seen = torch.cat([batch.labels for batch in batches])
    assert len(set(seen.tolist())) == 48
    assert not torch.equal(seen, torch.sort(seen).values)


def test_a_split_smaller_than_one_batch_still_trains():
    batches = epoch(make_loader(random_arrays(5), batch_size=16, train=True))
    assert [len(batch.labels) for batch in batches] == [5]


def test_evaluation_batches_are_ordered_complete_and_unaugmented():
    arrays = random_arrays(50)
    loader = make_loader(arrays, batch_size=16, train=False)

    batches = epoch(loader)

    assert [len(batch.labels) for batch in batches] == [16, 16, 16, 2]
    images = torch.cat([batch.images for batch in batches])
    assert torch.equal(torch.cat([batch.labels for batch in batches]), torch.arange(50))
    expected = torch.from_numpy(arrays.images).permute(0, 3, 1, 2).float() / 255
    assert torch.allclose(images, expected)


def test_training_without_augmentation_only_shuffles():
    arrays = random_arrays(32)
    images, labels, _, views = next(iter(make_loader(arrays, batch_size=32, train=True)))
    expected = torch.from_numpy(arrays.images[labels.numpy()]).permute(0, 3, 1, 2).float() / 255
    assert torch.allclose(images, expected)
    assert not views.any()


def test_epochs_are_reproducible_from_the_seed_and_differ_from_each_other():
    arrays = random_arrays(40)
    first, same = (make_loader(arrays, batch_size=8, train=True, seed=5, augmentation=augment_batch) for _ in range(2))
    other_seed = make_loader(arrays, batch_size=8, train=True, seed=6, augmentation=augment_batch)

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
    augmentation = InputPipeline((0.5,) * 3, (0.25,) * 3, 8, augment=True, radiometric=0.5).augmentation
    in_process = epoch(make_loader(arrays, batch_size=8, train=True, seed=1, augmentation=augmentation))
    with_worker = epoch(make_loader(arrays, batch_size=8, train=True, seed=1, augmentation=augmentation, num_workers=1))
    for (a_images, a_labels, *_), (b_images, b_labels, *_) in zip(in_process, with_worker, strict=True):
        assert torch.equal(a_labels, b_labels) and torch.equal(a_images, b_images)


def numpy_view(image: np.ndarray, view: int) -> np.ndarray:
    """The documented view of a (C, H, W) image: a left-right flip when view >= 4, then view % 4 turns."""
    flipped = image[:, :, ::-1] if view >= 4 else image
    return np.rot90(flipped, view % 4, axes=(1, 2))


def test_the_eight_views_are_the_flips_and_turns_as_documented():
    image = np.random.default_rng(0).uniform(0, 1, (3, 5, 5)).astype(np.float32)
    batch = torch.from_numpy(np.repeat(image[None], 8, axis=0))
    views = dihedral(batch.clone(), torch.arange(8))
    for view in range(8):
        np.testing.assert_array_equal(views[view].numpy(), numpy_view(image, view))
    assert len({views[view].numpy().tobytes() for view in range(8)}) == 8


def test_augmentation_reports_the_view_each_image_is_shown_in():
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.uniform(0.2, 0.8, (128, 3, 8, 8)).astype(np.float32))

    augmented, views = augment_batch(images.clone(), torch.Generator().manual_seed(0))
    again, views_again = augment_batch(images.clone(), torch.Generator().manual_seed(0))

    assert augmented.shape == images.shape and torch.equal(augmented, again) and torch.equal(views, views_again)
    assert set(views.tolist()) == set(range(8))
    for original, result, view in zip(images.numpy(), augmented, views.tolist(), strict=True):
        # Radiometric shifts keep the pixel order of each band, so the reported view correlates best.
        scores = [np.corrcoef(numpy_view(original, v).ravel(), result.numpy().ravel())[0, 1] for v in range(8)]
        assert int(np.argmax(scores)) == view


def test_radiometric_shifts_stay_in_range_and_leave_some_images_clean():
    rng = np.random.default_rng(1)
    images = torch.from_numpy(rng.uniform(0.05, 0.6, (512, 3, 8, 8)).astype(np.float32))

    shifted = radiometric_shift(images.clone(), torch.Generator().manual_seed(3))

    assert shifted.min() >= 0 and shifted.max() <= 1
    unchanged = (shifted - images).abs().amax(dim=(1, 2, 3)) < 1e-6
    assert 0 < unchanged.float().mean() < 0.1  # about 2.5% are drawn with no change at all
    # Haze is removed more often than added (users bring L2A scenes, EuroSAT is L1C): blue drops most.
    change = (shifted - images).mean(dim=(2, 3))
    assert change[:, 2].mean() < change[:, 0].mean() < 0.05


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
    order_first = torch.cat([batch.labels for batch in first])
    order_second = torch.cat([batch.labels for batch in second])
    assert sorted(order_first.tolist()) == list(range(20)) == sorted(order_second.tolist())
    assert not torch.equal(order_first, order_second)  # reshuffled each epoch


def test_radiometric_share_zero_gives_flips_and_turns_only():
    rng = np.random.default_rng(2)
    images = torch.from_numpy(rng.uniform(0.05, 0.6, (64, 3, 8, 8)).astype(np.float32))

    augmented, views = augment_batch(images.clone(), torch.Generator().manual_seed(0), radiometric=0.0)

    for original, result, view in zip(images.numpy(), augmented.numpy(), views.tolist(), strict=True):
        np.testing.assert_array_equal(result, numpy_view(original, view))


@pytest.mark.parametrize("share", [0.1, 0.9])
def test_the_radiometric_share_sets_how_many_images_are_shifted(share):
    rng = np.random.default_rng(1)
    images = torch.from_numpy(rng.uniform(0.05, 0.6, (4000, 3, 4, 4)).astype(np.float32))

    shifted = radiometric_shift(images.clone(), torch.Generator().manual_seed(3), share)

    unchanged = ((shifted - images).abs().amax(dim=(1, 2, 3)) < 1e-6).float().mean().item()
    # Four independent changes (haze, gain, gamma, noise) plus a blur on 0.4 x share of the images.
    expected = (1 - share) ** 4 * (1 - 0.4 * share)
    assert unchanged == pytest.approx(expected, abs=0.03)


def test_the_loader_applies_the_pipelines_radiometric_share():
    arrays = ImageArrays(
        images=np.random.default_rng(0).integers(10, 150, (32, 8, 8, 3), dtype=np.uint8),
        labels=np.zeros(32, dtype=np.int64),
    )
    pipeline = InputPipeline((0.5,) * 3, (0.25,) * 3, 8, augment=True, radiometric=0.0)
    batch = next(iter(make_loader(arrays, batch_size=32, train=True, augmentation=pipeline.augmentation)))
    source = torch.from_numpy(arrays.images[batch.indices.numpy()]).permute(0, 3, 1, 2).float() / 255
    for original, result, view in zip(source.numpy(), batch.images.numpy(), batch.views.tolist(), strict=True):
        np.testing.assert_array_equal(result, numpy_view(original, view))
