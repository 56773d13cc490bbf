"""Named results of the networks, shared by every method so that training, inference and evaluation
treat all of them alike."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class GeneratorOutput:
    """What a generator returns.

    Attributes:
        image: the denoised image ŷ, ``(B, 1, H, W)`` in network units (not clamped).
        multiscale: side outputs at 1/4, 1/2 and 1 of the input scale for L_MS (eq. 8), the last
            one being ``image``; empty for generators without side heads (the baselines).
        attention: the attentive block's maps ``M_1 .. M_T`` (eq. 6), each ``(B, 1, H, W)`` in
            [0, 1]; empty when the generator has no attentive block.
    """

    image: torch.Tensor
    multiscale: tuple[torch.Tensor, ...] = ()
    attention: tuple[torch.Tensor, ...] = ()

    @property
    def final_attention(self) -> torch.Tensor | None:
        """``M_T``, or ``None`` without an attentive block."""
        return self.attention[-1] if self.attention else None


@dataclass(frozen=True)
class DiscriminatorOutput:
    """What a discriminator (or WGAN critic) returns.

    Attributes:
        logit: ``(B, 1)`` raw score; for the GAN discriminators ``D(.) = sigmoid(logit)``
            (the losses apply the sigmoid in a numerically stable way), for the WGAN critic the
            score itself.
        attention_map: the attentive discriminator's ``D_map`` (eq. 11), ``(B, 1, h, w)`` with
            ``h, w`` = 1/4 of the input; ``None`` for discriminators without attention.
    """

    logit: torch.Tensor
    attention_map: torch.Tensor | None = None
