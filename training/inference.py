"""Inference helpers shared by training, evaluation and quantisation: normalising and predicting.

They live apart from the training loop so that scoring a model (``evaluate``, ``quantize``) does
not depend on how it was trained.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from training.data import ImageArrays, make_loader


def normalise(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, size: int) -> torch.Tensor:
    """0..1 images (B, C, H, W) -> the network's input: standardised, resized to ``size`` (bilinear)."""
    x = (x - mean) / std
    if x.shape[-1] != size or x.shape[-2] != size:
        # Antialiasing when shrinking, as image libraries do; none is needed when enlarging.
        shrink = size < max(x.shape[-2:])
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)
    return x


def to_device(images: torch.Tensor, labels: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (channels-last) and labels on ``device``."""
    images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
    return images, labels.to(device, non_blocking=True)


def predict(
    forward: Callable[[torch.Tensor], torch.Tensor],
    arrays: ImageArrays,
    stats: tuple[torch.Tensor, torch.Tensor],
    input_size: int,
    device: torch.device,
    batch_size: int = 256,
    shift: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 logits and labels (on the CPU) of ``forward`` over ``arrays``, in order, without gradients.

    ``forward`` maps normalised input to logits: a model in eval mode, or an onnxruntime session.
    ``shift`` changes the 0..1 images before they are normalised (robust validation).
    """
    mean, std = (value.to(device) for value in stats)
    outputs, targets = [], []
    loader = make_loader(arrays, batch_size=batch_size, train=False, augment=False)
    with torch.no_grad():
        for batch in loader:
            images, _ = to_device(shift(batch.images) if shift else batch.images, batch.labels, device)
            outputs.append(forward(normalise(images, mean, std, input_size)).float().cpu())
            targets.append(batch.labels)
    if not outputs:
        return torch.zeros(0, 0), torch.zeros(0, dtype=torch.int64)
    return torch.cat(outputs), torch.cat(targets)
