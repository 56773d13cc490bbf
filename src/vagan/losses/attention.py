"""Attention losses: L_AB of the attentive block (eq. 6) and L_A of the attentive discriminator (eq. 11)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def _mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.mean((a.float() - b.float()) ** 2)


def attentive_block_loss(maps: Sequence[torch.Tensor], target: torch.Tensor,
                         weights: Sequence[float] | None = None) -> torch.Tensor:
    """L_AB of eq. (6): ``sum_t theta_t * MSE(M_t, M)``.

    Args:
        maps: ``M_1 .. M_T`` from the attentive block, each shaped like ``target``.
        target: the binary attention target M of eq. (5), ``(B, 1, H, W)``.
        weights: ``theta_1 .. theta_T``; ``None`` gives ``theta_t = 0.5 ** (T - t)``, which is the
            paper's (0.125, 0.25, 0.5, 1.0) for T = 4.

    Raises:
        ValueError: no maps, ``len(weights) != T``, or a map shaped unlike ``target``.
    """
    if len(maps) == 0:
        raise ValueError("attentive_block_loss needs at least one attention map (the generator has no attentive block?)")
    if weights is None:
        weights = [0.5 ** (len(maps) - 1 - t) for t in range(len(maps))]
    if len(weights) != len(maps):
        raise ValueError(f"L_AB has {len(weights)} weights {tuple(weights)} for {len(maps)} attention maps; "
                         "give one weight per recurrent step")
    for m in maps:
        if m.shape != target.shape:
            raise ValueError(f"attention map shape {tuple(m.shape)} differs from the target's {tuple(target.shape)}")
    return sum(w * _mse(m, target) for w, m in zip(weights, maps, strict=True))  # type: ignore[return-value]


def discriminator_attention_loss(map_fake: torch.Tensor, attention_final: torch.Tensor,
                                 map_real: torch.Tensor) -> torch.Tensor:
    """L_A of eq. (11): ``MSE(D_map(G(x)), M_T) + MSE(D_map(y), 0)``.

    ``attention_final`` (M_T, ``(B, 1, H, W)``) is area-pooled to the map's size and **detached**:
    L_A only enters L_D (eq. 10), which trains the discriminator, so M_T is a fixed target there.
    """
    target = F.adaptive_avg_pool2d(attention_final.detach().float(), map_fake.shape[-2:])
    return _mse(map_fake, target) + torch.mean(map_real.float() ** 2)
