"""Reproducible parameter initialisation from a caller's ``torch.Generator`` (no global seeding)."""

from __future__ import annotations

import math

import torch
from torch import nn


@torch.no_grad()
def init_parameters(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Re-draw every conv / transposed-conv / linear layer of ``module`` with PyTorch's default
    scheme (weights and biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))), using ``generator``.

    A submodule with a ``start_from_drawn()`` method (WGAN-VGG's generator: near the identity) then
    derives its own start from the weights just drawn. Returns ``module`` (changed in place). Other
    layers keep their parameters.
    """
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            fan_in = layer.weight[0].numel()  # torch's fan_in: dim 1 x kernel (also for transposed convs)
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            layer.weight.copy_(torch.rand(layer.weight.shape, generator=generator) * 2 * bound - bound)
            if layer.bias is not None:
                layer.bias.copy_(torch.rand(layer.bias.shape, generator=generator) * 2 * bound - bound)
    for layer in module.modules():
        start = getattr(layer, "start_from_drawn", None)
        if callable(start):
            start()
    return module
