"""Adversarial losses: the GAN game of eq. (4) split into generator (eq. 7's L_GAN) and
discriminator (eq. 10) parts, and WGAN-GP for the WGAN-VGG baseline.

Discriminators return logits ``l``; ``D = sigmoid(l)`` and the logs are computed stably:
``log D = -softplus(-l)``, ``log(1 - D) = -softplus(l)``.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

GanMode = Literal["paper", "nonsaturating"]
GAN_MODES: tuple[str, ...] = get_args(GanMode)
PAPER_GAMMA = 0.05  # gamma of eq. (10), the weight of the attentive discriminator's L_A


def generator_adversarial_loss(fake_logit: torch.Tensor, mode: GanMode = "paper") -> torch.Tensor:
    """L_GAN of eqs. (4) and (7), to be minimised by the generator.

    ``"paper"``: ``mean(log(1 - D(G(x)))) = mean(-softplus(l))`` (the literal, saturating form);
    ``"nonsaturating"``: ``mean(-log D(G(x))) = mean(softplus(-l))`` (Goodfellow's practical form).

    >>> round(float(generator_adversarial_loss(torch.zeros(2, 1))), 4)  # log(1 - 0.5)
    -0.6931
    """
    if mode == "paper":
        return -F.softplus(fake_logit).mean()
    if mode == "nonsaturating":
        return F.softplus(-fake_logit).mean()
    raise ValueError(f"GAN loss mode must be one of {GAN_MODES}, got {mode!r}")


def discriminator_loss(real_logit: torch.Tensor, fake_logit: torch.Tensor,
                       attention_loss: torch.Tensor | None = None, gamma: float = PAPER_GAMMA) -> torch.Tensor:
    """L_D of eq. (10): ``mean(-log D(y)) + mean(-log(1 - D(G(x)))) + gamma * L_A``.

    ``attention_loss`` is L_A (eq. 11, :func:`vagan.losses.attention.discriminator_attention_loss`)
    for the attentive discriminator, ``None`` for a plain one. The paper's gamma is 0.05.
    """
    loss = F.softplus(-real_logit).mean() + F.softplus(fake_logit).mean()
    if attention_loss is not None:
        loss = loss + gamma * attention_loss
    return loss


def wgan_critic_loss(real_score: torch.Tensor, fake_score: torch.Tensor) -> torch.Tensor:
    """WGAN critic loss (Yang et al. 2018): ``mean(C(G(x))) - mean(C(y))``; add
    ``lambda * gradient_penalty`` (lambda = 10) for WGAN-GP."""
    return fake_score.mean() - real_score.mean()


def wgan_generator_loss(fake_score: torch.Tensor) -> torch.Tensor:
    """WGAN generator loss: ``-mean(C(G(x)))``."""
    return -fake_score.mean()


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP penalty (Gulrajani et al. 2017), unweighted: ``mean((||grad C(x_hat)||_2 - 1)^2)``.

    ``x_hat = eps * real + (1 - eps) * fake`` with ``eps ~ U(0, 1)`` per sample, drawn from
    ``generator`` (on the generator's device, then moved). The graph is kept so the penalty
    trains the critic. ``critic`` returns a :class:`DiscriminatorOutput` (or a plain tensor).
    """
    eps_device = generator.device if generator is not None else real.device
    eps = torch.rand((real.shape[0],) + (1,) * (real.ndim - 1), generator=generator, device=eps_device)
    eps = eps.to(device=real.device, dtype=real.dtype)
    mixed = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    out = critic(mixed)
    score = out if isinstance(out, torch.Tensor) else out.logit
    (grad,) = torch.autograd.grad(score.sum(), mixed, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
