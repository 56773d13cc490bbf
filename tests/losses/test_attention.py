"""L_AB (eq. 6) and L_A (eq. 11) against values worked out by hand."""

from __future__ import annotations

import pytest
import torch

from vagan.losses.attention import attentive_block_loss, discriminator_attention_loss


def _t(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32).view(1, 1, len(rows), len(rows[0]))


def test_attentive_block_loss_hand_value() -> None:
    target = _t([[1, 0], [0, 1]])
    maps = [torch.zeros_like(target), torch.ones_like(target), torch.full_like(target, 0.5), target.clone()]
    # MSEs: 0.5, 0.5, 0.25, 0 -> 0.125 * 0.5 + 0.25 * 0.5 + 0.5 * 0.25 + 1.0 * 0 = 0.3125
    assert attentive_block_loss(maps, target).item() == pytest.approx(0.3125)
    assert attentive_block_loss(maps, target, weights=(1, 1, 1, 1)).item() == pytest.approx(1.25)


def test_default_weights_halve_backwards_from_the_last_step() -> None:
    target = _t([[1, 0], [0, 1]])
    maps = [torch.zeros_like(target), torch.full_like(target, 0.5)]  # MSE 0.5, 0.25
    assert attentive_block_loss(maps, target).item() == pytest.approx(0.5 * 0.5 + 1.0 * 0.25)


def test_attentive_block_loss_refuses_mismatches() -> None:
    target = _t([[1, 0], [0, 1]])
    maps = [target] * 3
    with pytest.raises(ValueError, match="3 attention maps"):
        attentive_block_loss(maps, target, weights=(0.125, 0.25, 0.5, 1.0))
    with pytest.raises(ValueError, match="at least one"):
        attentive_block_loss([], target)
    with pytest.raises(ValueError, match="shape"):
        attentive_block_loss([torch.zeros(1, 1, 3, 3)], target, weights=(1.0,))


def test_discriminator_attention_loss_hand_value() -> None:
    final = _t([[1, 1, 1, 0],
                [1, 1, 0, 0],
                [0, 0, 0, 0],
                [0, 0, 0, 0]])  # area-pooled to 2x2: [[1, 0.25], [0, 0]]
    final.requires_grad_(True)
    map_fake = _t([[1, 0], [0, 0]])  # MSE vs pooled M_T: 0.25^2 / 4 = 0.015625
    map_real = _t([[0.5, 0], [0, -0.5]])  # MSE vs 0: (0.25 + 0.25) / 4 = 0.125
    loss = discriminator_attention_loss(map_fake, final, map_real)
    assert loss.item() == pytest.approx(0.015625 + 0.125)


def test_final_attention_is_detached() -> None:
    final = torch.rand(1, 1, 4, 4, requires_grad=True)
    map_fake = torch.rand(1, 1, 4, 4, requires_grad=True)
    discriminator_attention_loss(map_fake, final, torch.zeros(1, 1, 4, 4)).backward()
    assert final.grad is None and map_fake.grad is not None
