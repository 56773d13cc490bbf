"""Multi-scale loss L_MS (eq. 8)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

PAPER_MULTISCALE_WEIGHTS: tuple[float, ...] = (0.25, 0.5, 1.0)


def downsample_to(target: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Area (average-pool) down-sampling of ``target`` to ``size`` = ``(h, w)``."""
    if tuple(target.shape[-2:]) == tuple(size):
        return target
    return F.adaptive_avg_pool2d(target, tuple(size))


def multiscale_loss(outputs: Sequence[torch.Tensor], target: torch.Tensor,
                    weights: Sequence[float] = PAPER_MULTISCALE_WEIGHTS) -> torch.Tensor:
    """L_MS of eq. (8): ``sum_i lambda_i * MSE(x_i, y_i)``.

    Args:
        outputs: side outputs ``x_i`` (e.g. at 1/4, 1/2 and 1 of the input scale).
        target: full-size ground truth y, ``(B, 1, H, W)``; ``y_i`` is its area down-sampling to
            ``x_i``'s size.
        weights: ``lambda_i``, one per output (paper: 0.25, 0.5, 1.0).

    Raises:
        ValueError: ``len(weights) != len(outputs)`` or no outputs.
    """
    if len(outputs) == 0 or len(weights) != len(outputs):
        raise ValueError(f"L_MS has {len(weights)} weights {tuple(weights)} for {len(outputs)} outputs; "
                         "give one weight per output")
    terms = (w * torch.mean((x.float() - downsample_to(target.float(), x.shape[-2:])) ** 2)
             for w, x in zip(weights, outputs, strict=True))
    return sum(terms)  # type: ignore[return-value]
