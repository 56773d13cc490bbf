"""Perceptual loss L_Pcep (eq. 9)."""

from __future__ import annotations

import torch
from torch import nn


def perceptual_loss(feature_net: nn.Module, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_Pcep of eq. (9): ``MSE(V(G(x)), V(y))``.

    ``feature_net`` is V, e.g. :class:`vagan.models.vgg.VGG19Features` (frozen); the caller picks it.
    Gradients flow to ``pred`` only; the target's features are computed without a graph.
    """
    with torch.no_grad():
        target_features = feature_net(target)
    return torch.mean((feature_net(pred).float() - target_features.float()) ** 2)
