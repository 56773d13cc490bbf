"""L_MS (eq. 8) against a value worked out by hand."""

from __future__ import annotations

import pytest
import torch

from vagan.losses.multiscale import multiscale_loss


def test_multiscale_loss_hand_value() -> None:
    target = torch.arange(16.0).view(1, 1, 4, 4)
    # area down-sampling: 1x1 -> mean 7.5; 2x2 -> [[2.5, 4.5], [10.5, 12.5]]
    quarter = torch.full((1, 1, 1, 1), 8.5)  # MSE 1
    half = torch.tensor([[2.5, 4.5], [10.5, 14.5]]).view(1, 1, 2, 2)  # MSE (0 + 0 + 0 + 4) / 4 = 1
    full = target + 1.0  # MSE 1
    loss = multiscale_loss((quarter, half, full), target)
    assert loss.item() == pytest.approx(0.25 * 1 + 0.5 * 1 + 1.0 * 1)
    assert multiscale_loss((full,), target, weights=(1.0,)).item() == pytest.approx(1.0)


def test_weight_count_must_match() -> None:
    target = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match="3 weights"):
        multiscale_loss((target,), target)
    with pytest.raises(ValueError):
        multiscale_loss((), target, weights=())
