"""Model size and cost: parameter count and multiply-accumulates of one forward pass."""

from __future__ import annotations

import torch
from torch import nn


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not); buffers such as BN running stats excluded."""
    return sum(parameter.numel() for parameter in model.parameters())


def _layer_macs(module: nn.Module, output: torch.Tensor) -> int:
    # One image: the batch size is 1, so output.numel() counts output elements of one image.
    if isinstance(module, nn.Conv2d):
        kernel_height, kernel_width = module.kernel_size
        return output.numel() * (module.in_channels // module.groups) * kernel_height * kernel_width
    return output.numel() * module.in_features


def count_macs(model: nn.Module, input_size: int, channels: int = 3) -> int:
    """Multiply-accumulates of the conv and linear layers for one ``channels`` x ``input_size``² image."""
    total = 0

    def hook(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        total += _layer_macs(module, output)

    layers = [module for module in model.modules() if isinstance(module, nn.Conv2d | nn.Linear)]
    handles = [layer.register_forward_hook(hook) for layer in layers]
    was_training = model.training
    device = next(model.parameters()).device
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, channels, input_size, input_size, device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return total
