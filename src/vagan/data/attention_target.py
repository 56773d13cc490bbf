"""The binary attention target M of eq. (5).

Residual ``dx = y - x`` (NDCT minus LDCT). In ``signed`` mode (the paper's literal text)
``M = 1`` where ``dx > mean(dx)``; in ``abs`` mode ``M = 1`` where ``|dx| > mean(|dx|)``.
The mean is taken per image (over the last two axes).
"""

from __future__ import annotations

from typing import Literal, get_args

import torch

AttentionMode = Literal["signed", "abs"]
ATTENTION_MODES: tuple[str, ...] = get_args(AttentionMode)


def attention_target(ldct: torch.Tensor, ndct: torch.Tensor, mode: AttentionMode = "signed") -> torch.Tensor:
    """Eq. (5): binary mask of the pixels the noise changed most.

    Args:
        ldct: x, shape ``(..., H, W)``.
        ndct: y, same shape as ``ldct``.
        mode: ``"signed"`` (paper) or ``"abs"``.

    Returns:
        Float tensor of 0/1 with the shape of the inputs.

    >>> x = torch.tensor([[0.0, 0.0], [0.0, 0.0]]); y = torch.tensor([[1.0, -3.0], [0.0, 2.0]])
    >>> attention_target(x, y, "signed").tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    >>> attention_target(x, y, "abs").tolist()
    [[0.0, 1.0], [0.0, 1.0]]
    """
    if ldct.shape != ndct.shape:
        raise ValueError(f"LDCT and NDCT shapes differ: {tuple(ldct.shape)} vs {tuple(ndct.shape)}")
    residual = ndct - ldct
    if mode == "abs":
        residual = residual.abs()
    elif mode != "signed":
        raise ValueError(f"attention mode must be one of {ATTENTION_MODES}, got {mode!r}")
    mean = residual.mean(dim=(-2, -1), keepdim=True)
    return (residual > mean).to(ldct.dtype)
