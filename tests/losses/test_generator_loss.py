"""L_G (eq. 7): the weighted sum with the paper's default weights and the logged terms."""

from __future__ import annotations

import pytest
import torch

from vagan.losses.generator import PAPER_GENERATOR_WEIGHTS, generator_total_loss


def test_paper_weights_hand_value() -> None:
    assert PAPER_GENERATOR_WEIGHTS == {"gan": 0.005, "ab": 1.0, "ms": 0.01, "pcep": 0.5}
    terms = {"gan": torch.tensor(2.0), "ab": torch.tensor(0.3), "ms": torch.tensor(4.0), "pcep": torch.tensor(0.1)}
    total, logged = generator_total_loss(terms)
    assert total.item() == pytest.approx(0.005 * 2 + 0.3 + 0.01 * 4 + 0.5 * 0.1)
    assert logged == pytest.approx({"gan": 2.0, "ab": 0.3, "ms": 4.0, "pcep": 0.1})
    assert all(isinstance(v, float) for v in logged.values())


def test_custom_weights_gradient_and_zero_weight() -> None:
    ms = torch.tensor(3.0, requires_grad=True)
    mse = torch.tensor(5.0, requires_grad=True)
    total, logged = generator_total_loss({"ms": ms, "mse": mse}, {"ms": 2.0, "mse": 0.0, "gan": 1.0})
    assert total.item() == pytest.approx(6.0) and logged == {"ms": 3.0, "mse": 5.0}
    total.backward()
    assert ms.grad.item() == pytest.approx(2.0) and mse.grad is None


def test_terms_without_weight_are_refused() -> None:
    with pytest.raises(ValueError, match="tv"):
        generator_total_loss({"tv": torch.tensor(1.0)})
    with pytest.raises(ValueError, match="no loss terms"):
        generator_total_loss({})


def test_every_loss_term_has_a_weight_in_the_config() -> None:
    from dataclasses import fields

    from vagan.losses.generator import LOSS_TERMS
    from vagan.training.config import LossWeights

    assert set(LOSS_TERMS) <= {f.name for f in fields(LossWeights)}
    assert set(PAPER_GENERATOR_WEIGHTS) <= set(LOSS_TERMS)
