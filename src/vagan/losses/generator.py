"""The generator's total loss L_G (eq. 7) as a weighted sum of named terms."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

import torch

LossTerm = Literal["mse", "ms", "ab", "gan", "pcep"]
LOSS_TERMS: tuple[str, ...] = get_args(LossTerm)
"""The terms of L_G by name: pixel MSE (the baselines), L_MS (eq. 8), L_AB (eq. 6), L_GAN (eq. 4),
L_Pcep (eq. 9); each has a weight of the same name in ``stages[*].losses``."""

PAPER_GENERATOR_WEIGHTS: dict[str, float] = {"gan": 0.005, "ab": 1.0, "ms": 0.01, "pcep": 0.5}
"""Eq. (7): L_G = 0.005 L_GAN + L_AB + 0.01 L_MS + 0.5 L_Pcep."""


def generator_total_loss(terms: Mapping[str, torch.Tensor],
                         weights: Mapping[str, float] = PAPER_GENERATOR_WEIGHTS,
                         ) -> tuple[torch.Tensor, dict[str, float]]:
    """L_G of eq. (7): ``sum_k weights[k] * terms[k]``.

    Args:
        terms: scalar loss terms by name (:data:`LOSS_TERMS`).
        weights: weight by name; names without a term are ignored, a term with weight 0 is logged
            but left out of the sum.

    Returns:
        ``(total, logged)``: the differentiable total and each *unweighted* term as a float.

    Raises:
        ValueError: no terms, or a term without a weight.
    """
    if not terms:
        raise ValueError("generator_total_loss got no loss terms")
    unknown = [k for k in terms if k not in weights]
    if unknown:
        raise ValueError(f"loss term(s) {unknown} have no weight; weights given for {sorted(weights)}")
    active = [weights[k] * t for k, t in terms.items() if weights[k] != 0]
    total = sum(active) if active else torch.zeros((), device=next(iter(terms.values())).device)
    logged = {k: float(t.detach()) for k, t in terms.items()}
    return total, logged  # type: ignore[return-value]
