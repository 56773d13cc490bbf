"""init_parameters: reproducible from the caller's generator, PyTorch's default bounds."""

from __future__ import annotations

import math

import torch
from torch import nn

from vagan.models.init import init_parameters


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(2, 4, 3), nn.ConvTranspose2d(4, 3, 4), nn.Linear(5, 6), nn.GroupNorm(1, 4))


def test_same_seed_same_parameters_and_default_bounds() -> None:
    a = init_parameters(_net(), torch.Generator().manual_seed(3))
    b = init_parameters(_net(), torch.Generator().manual_seed(3))
    c = init_parameters(_net(), torch.Generator().manual_seed(4))
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters(), strict=True):
        torch.testing.assert_close(pa, pb)
        if not name.startswith("3."):  # GroupNorm is left alone
            assert not torch.equal(pa, pc)
    fan_ins = {"0": 2 * 9, "1": 3 * 16, "2": 5}
    for index, fan_in in fan_ins.items():
        layer = a[int(index)]
        assert layer.weight.abs().max() <= 1 / math.sqrt(fan_in)
        assert layer.weight.abs().max() > 0.5 / math.sqrt(fan_in)
    assert torch.equal(a[3].weight, torch.ones(4))
