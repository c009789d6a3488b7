"""What the network sees: the one owner of augmentation and normalisation, and prediction through it.

A model's ``InputPipeline`` is read from its checkpoint (the training split's channel mean and
standard deviation on 0..1 values, the input size, the stage's augmentation settings) or from
its model card. Training augments its batches and normalises them through it; the teacher,
evaluation, int8 calibration and ``predict`` normalise through it too, so every path feeds the
network what the exported graph and its model card expect.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F

from training.data import ImageArrays, augment_batch, make_loader
from training.data.loader import Augmentation


@dataclass(frozen=True)
class InputPipeline:
    """How 0..1 images (B, C, H, W) become the network's input, in training and after it."""

    mean: tuple[float, ...]  # per channel, of the 0..1 training images
    std: tuple[float, ...]
    size: int  # the side the network sees; images are resized to it
    augment: bool = False  # random flips and turns of the training batches
    radiometric: float = 0.0  # share of the augmented images given each radiometric shift

    @classmethod
    def from_checkpoint(cls, state: Mapping[str, Any]) -> InputPipeline:
        """The pipeline a checkpoint (or the state of a stage in training) was trained with."""
        config = state.get("config", {})
        return cls(
            mean=tuple(float(v) for v in state["mean"]),
            std=tuple(float(v) for v in state["std"]),
            size=int(state["input_size"]),
            augment=bool(config.get("augment", False)),
            radiometric=float(config.get("radiometric", 0.0)),
        )

    @property
    def augmentation(self) -> Augmentation | None:
        """What the training loader applies to each batch (``augment_batch``), or None."""
        return functools.partial(augment_batch, radiometric=self.radiometric) if self.augment else None

    def at_size(self, size: int) -> InputPipeline:
        """The same pipeline feeding the network ``size`` x ``size`` images (progressive resizing)."""
        return replace(self, size=size)

    def network_input(self, images: torch.Tensor) -> torch.Tensor:
        """0..1 images (B, C, H, W) -> the network's input: standardised, resized to ``size`` (bilinear)."""
        x = (images - _per_channel(self.mean, images.device)) / _per_channel(self.std, images.device)
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            # Antialiasing when shrinking, as image libraries do; none is needed when enlarging.
            shrink = self.size < max(x.shape[-2:])
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=shrink)
        return x


@functools.cache
def _per_channel(values: tuple[float, ...], device: torch.device) -> torch.Tensor:
    # Made once per device: a copy to the GPU for every batch would wait for the GPU each time.
    return torch.tensor(values, dtype=torch.float32, device=device).view(1, -1, 1, 1)


def to_device(images: torch.Tensor, labels: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (channels-last) and labels on ``device``."""
    images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
    return images, labels.to(device, non_blocking=True)


def predict(
    forward: Callable[[torch.Tensor], torch.Tensor],
    arrays: ImageArrays,
    pipeline: InputPipeline,
    device: torch.device,
    batch_size: int = 256,
    shift: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 logits and labels (on the CPU) of ``forward`` over ``arrays``, in order, without gradients.

    ``forward`` maps the network's input (``pipeline.network_input``) to logits: a model in eval
    mode, or an onnxruntime session. ``shift`` changes the 0..1 images first (robust validation).
    """
    outputs, targets = [], []
    loader = make_loader(arrays, batch_size=batch_size, train=False)
    with torch.no_grad():
        for batch in loader:
            images, _ = to_device(shift(batch.images) if shift else batch.images, batch.labels, device)
            outputs.append(forward(pipeline.network_input(images)).float().cpu())
            targets.append(batch.labels)
    if not outputs:
        return torch.zeros(0, 0), torch.zeros(0, dtype=torch.int64)
    return torch.cat(outputs), torch.cat(targets)
