"""Every generator kind can overfit one tiny batch (a trainability check, narrow networks)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vagan.models.init import init_parameters
from vagan.models.registry import build_generator

# kind -> (width, Adam lr, steps); RED-CNN (5x5, no padding, plain init) learns more slowly.
SETTINGS = {"vagan": (8, 3e-3, 150), "red": (8, 3e-3, 150), "red_cnn": (16, 1e-3, 300), "wgan_vgg": (8, 3e-3, 150)}


def _batch(rng: torch.Generator, size: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    """4 smooth 'NDCT' patches and noisy 'LDCT' versions of them."""
    coarse = torch.rand(4, 1, 4, 4, generator=rng) * 0.5 + 0.25
    y = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return y + 0.2 * torch.randn(4, 1, size, size, generator=rng), y


@pytest.mark.parametrize("kind", sorted(SETTINGS))
def test_generator_overfits_one_batch(kind: str, rng: torch.Generator) -> None:
    width, lr, steps = SETTINGS[kind]
    x, y = _batch(rng)
    net = init_parameters(build_generator(kind, features=width, attention_features=4, attention_steps=2), rng)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.mean((net(x).image - y) ** 2)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert min(losses[-10:]) < losses[0] / 10, (losses[0], losses[-10:])
