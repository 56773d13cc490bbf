"""Layers that stay in float32 under autocast: the ones whose output is an image or a map itself.

The precision policy (:mod:`vagan.precision`) runs convolutions in bf16/fp16 through autocast. The
first convolution of every generator (its input is the image: bf16 would round a soft-tissue
value to steps of 4 HU), the output heads (residuals added to the fp32 LDCT), the attention head
(M_t) and the last layer of the baselines run through :func:`fp32_layer`, so reduced precision
never quantises an image.
"""

from __future__ import annotations

import torch
from torch import nn


def fp32_layer(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` in float32 with autocast switched off."""
    with torch.autocast(x.device.type, enabled=False):
        return layer(x.float())
