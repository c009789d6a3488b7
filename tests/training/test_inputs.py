"""training.inputs: one InputPipeline owns augmentation and normalisation, read from a checkpoint."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from training.data import augment_batch
from training.inputs import InputPipeline

STATE = {
    "mean": [0.3, 0.4, 0.5],
    "std": [0.1, 0.2, 0.25],
    "input_size": 16,
    "config": {"augment": True, "radiometric": 0.25},
}


def test_a_checkpoint_gives_its_normalisation_size_and_augmentation():
    pipeline = InputPipeline.from_checkpoint(STATE)

    assert (pipeline.mean, pipeline.std, pipeline.size) == ((0.3, 0.4, 0.5), (0.1, 0.2, 0.25), 16)
    images = torch.rand(6, 3, 8, 8)
    augmented, views = pipeline.augmentation(images.clone(), torch.Generator().manual_seed(4))
    expected, expected_views = augment_batch(images.clone(), torch.Generator().manual_seed(4), radiometric=0.25)
    assert torch.equal(augmented, expected) and torch.equal(views, expected_views)
    assert InputPipeline.from_checkpoint({**STATE, "config": {"augment": False}}).augmentation is None


def test_the_network_input_is_standardised_then_resized():
    pipeline = InputPipeline.from_checkpoint(STATE)
    images = torch.rand(2, 3, 32, 32)
    standardised = (images - torch.tensor(STATE["mean"]).view(1, 3, 1, 1)) / torch.tensor(STATE["std"]).view(1, 3, 1, 1)

    assert torch.equal(pipeline.at_size(32).network_input(images), standardised)
    shrunk = F.interpolate(standardised, size=(16, 16), mode="bilinear", align_corners=False, antialias=True)
    assert torch.equal(pipeline.network_input(images), shrunk)
    enlarged = F.interpolate(standardised, size=(40, 40), mode="bilinear", align_corners=False, antialias=False)
    assert torch.equal(pipeline.at_size(40).network_input(images), enlarged)
