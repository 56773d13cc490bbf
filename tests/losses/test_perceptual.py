"""L_Pcep (eq. 9): feature MSE with the caller's feature network; gradients reach the prediction."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vagan.losses.perceptual import perceptual_loss
from vagan.models.vgg import VGG19Features


class _Double(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2.0 * x


def test_feature_mse_hand_value() -> None:
    pred = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    target = torch.tensor([[1.0, 2.0], [3.0, 2.0]]).view(1, 1, 2, 2)
    assert perceptual_loss(nn.Identity(), pred, target).item() == pytest.approx(4.0 / 4)
    assert perceptual_loss(_Double(), pred, target).item() == pytest.approx(16.0 / 4)


def test_with_vgg_features(rng: torch.Generator) -> None:
    features = VGG19Features.random_init(rng, layer="conv2_2")
    target = torch.rand(2, 1, 16, 16, generator=rng)
    assert perceptual_loss(features, target.clone(), target).item() == 0.0
    pred = (target + 0.1 * torch.randn(2, 1, 16, 16, generator=rng)).requires_grad_(True)
    loss = perceptual_loss(features, pred, target)
    loss.backward()
    assert loss.item() > 0 and pred.grad is not None and pred.grad.abs().sum() > 0
