"""GAN (eqs. 4, 7, 10) and WGAN-GP losses against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from vagan.losses.adversarial import (
    discriminator_loss,
    generator_adversarial_loss,
    gradient_penalty,
    wgan_critic_loss,
    wgan_generator_loss,
)
from vagan.models.outputs import DiscriminatorOutput

LN3 = math.log(3.0)  # sigmoid(ln 3) = 0.75


def test_generator_loss_paper_and_nonsaturating() -> None:
    fake = torch.tensor([[0.0], [LN3]])  # D(G(x)) = 0.5, 0.75
    paper = (math.log(1 - 0.5) + math.log(1 - 0.75)) / 2
    nonsaturating = -(math.log(0.5) + math.log(0.75)) / 2
    assert generator_adversarial_loss(fake).item() == pytest.approx(paper, rel=1e-6)
    assert generator_adversarial_loss(fake, "nonsaturating").item() == pytest.approx(nonsaturating, rel=1e-6)
    with pytest.raises(ValueError, match="nonsaturating"):
        generator_adversarial_loss(fake, "hinge")  # type: ignore[arg-type]


def test_losses_stay_finite_for_confident_discriminators() -> None:
    extreme = torch.tensor([[200.0], [-200.0]])
    assert generator_adversarial_loss(extreme).item() == pytest.approx(-100.0)  # log(1-D) ~ -200 and ~0
    assert generator_adversarial_loss(extreme, "nonsaturating").item() == pytest.approx(100.0)
    assert torch.isfinite(discriminator_loss(extreme, extreme))


def test_discriminator_loss_with_and_without_attention_term() -> None:
    real, fake = torch.tensor([[LN3]]), torch.tensor([[0.0]])  # D(y) = 0.75, D(G(x)) = 0.5
    plain = -math.log(0.75) - math.log(1 - 0.5)
    assert discriminator_loss(real, fake).item() == pytest.approx(plain, rel=1e-6)
    with_attention = discriminator_loss(real, fake, attention_loss=torch.tensor(2.0), gamma=0.05)
    assert with_attention.item() == pytest.approx(plain + 0.1, rel=1e-6)


def test_wgan_losses() -> None:
    real, fake = torch.tensor([[1.0], [3.0]]), torch.tensor([[0.5], [1.5]])
    assert wgan_critic_loss(real, fake).item() == pytest.approx(1.0 - 2.0)
    assert wgan_generator_loss(fake).item() == pytest.approx(-1.0)


class _LinearCritic(nn.Module):
    """C(x) = a * sum(x): its input gradient is a everywhere, of norm a * sqrt(H * W)."""

    def __init__(self, a: float) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a))

    def forward(self, x: torch.Tensor) -> DiscriminatorOutput:
        return DiscriminatorOutput(logit=self.a * x.sum(dim=(1, 2, 3)).unsqueeze(1))


def test_gradient_penalty_of_a_linear_critic(rng: torch.Generator) -> None:
    real, fake = torch.rand(3, 1, 2, 2, generator=rng), torch.rand(3, 1, 2, 2, generator=rng)
    critic = _LinearCritic(1.5)  # ||grad|| = 1.5 * 2 = 3 for every sample
    penalty = gradient_penalty(critic, real, fake, generator=rng)
    assert penalty.item() == pytest.approx((3.0 - 1.0) ** 2, rel=1e-6)
    penalty.backward()  # the penalty trains the critic: d/da (2a - 1)^2 = 4 (2a - 1) = 8
    assert critic.a.grad.item() == pytest.approx(8.0, rel=1e-5)
    assert gradient_penalty(_LinearCritic(0.5), real, fake).item() == pytest.approx(0.0, abs=1e-10)


def test_gradient_penalty_is_reproducible_with_a_generator() -> None:
    critic = nn.Sequential(nn.Flatten(), nn.Linear(16, 1), nn.Tanh())
    real, fake = torch.ones(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)
    a = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(5))
    b = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(5))
    assert a.item() == b.item()
