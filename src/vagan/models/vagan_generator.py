"""The VAGAN generator: attentive block followed by the RED-style generator (eq. 3: ŷ = G(x ⊕ M*))."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import nn

from vagan.models.attentive_block import AttentiveBlock
from vagan.models.generator import DEFAULT_DILATIONS, REDGenerator
from vagan.models.outputs import GeneratorOutput


class AttentiveGenerator(nn.Module):
    """Attentive block (optional) + RED generator.

    With ``use_attention=True`` the generator sees ``concat(x, M_T)`` (2 channels) and the output
    carries ``M_1 .. M_T``; M_T is *not* detached, so L_MS also trains the attentive block. With
    ``use_attention=False`` there is no attentive block (``self.attention is None``) and the
    generator sees ``x`` alone (the G of the ``g_psnr`` / ``g_gan`` presets).
    """

    def __init__(self, use_attention: bool = True, attention_features: int = 32, attention_steps: int = 4,
                 generator_features: int = 64, dilations: Sequence[int] = DEFAULT_DILATIONS) -> None:
        super().__init__()
        self.attention = AttentiveBlock(attention_features, attention_steps) if use_attention else None
        self.generator = REDGenerator(in_channels=2 if use_attention else 1, features=generator_features,
                                      dilations=dilations)

    @property
    def use_attention(self) -> bool:
        return self.attention is not None

    def forward(self, x: torch.Tensor) -> GeneratorOutput:
        """``x``: ``(B, 1, H, W)`` LDCT in network units (any ``H, W``)."""
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"generator expects a (B, 1, H, W) LDCT batch, got {tuple(x.shape)}")
        if self.attention is None:
            return self.generator(x)
        maps = self.attention(x)
        out = self.generator(torch.cat([x, maps[-1]], dim=1))
        return replace(out, attention=tuple(maps))
