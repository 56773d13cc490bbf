"""AttentiveBlock: recurrence wiring (M_0 = 0.5, state carried), shapes, and that L_AB can be learnt."""

from __future__ import annotations

import torch

from vagan.data.attention_target import attention_target
from vagan.losses.attention import attentive_block_loss
from vagan.models.attentive_block import AttentiveBlock
from vagan.models.init import init_parameters


def test_maps_count_shape_and_range(rng: torch.Generator) -> None:
    block = AttentiveBlock(features=8, steps=4)
    x = torch.rand(2, 1, 37, 31, generator=rng)
    maps = block(x)
    assert len(maps) == 4
    for m in maps:
        assert m.shape == (2, 1, 37, 31)
        assert 0.0 < m.min() and m.max() < 1.0


def test_recurrence_starts_at_half_and_carries_state(rng: torch.Generator) -> None:
    block = AttentiveBlock(features=4, steps=3)
    x = torch.rand(1, 1, 8, 8, generator=rng)
    maps = block(x)
    mask, state = torch.full_like(x, 0.5), None
    for t in range(3):
        state = block.lstm(block.encoder(torch.cat([x, mask], 1)), state)
        mask = torch.sigmoid(block.head(state[0]))
        torch.testing.assert_close(maps[t], mask)
    # a block that forgot the state (fresh zero state each step) would give another M_2
    fresh = torch.sigmoid(block.head(block.lstm(block.encoder(torch.cat([x, maps[0]], 1)))[0]))
    assert not torch.allclose(fresh, maps[1])


def _smooth_batch(rng: torch.Generator, n: int = 4, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    coarse = torch.rand(n, 1, size // 8, size // 8, generator=rng)
    y = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    x = y + 0.05 * torch.randn(n, 1, size, size, generator=rng)
    return x, y


def test_attention_loss_falls_when_trained(rng: torch.Generator) -> None:
    x, y = _smooth_batch(rng)
    target = attention_target(x, y)
    block = init_parameters(AttentiveBlock(features=8, steps=4), rng)
    opt = torch.optim.Adam(block.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = attentive_block_loss(block(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
