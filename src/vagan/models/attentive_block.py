"""The recurrent attentive block of the VAGAN generator (section II.B.1, eq. 6).

Settled from the parent Attentive GAN (Qian et al. 2018): docs/design.md, "Attentive block".
"""

from __future__ import annotations

import torch
from torch import nn

from vagan.models.convlstm import ConvLSTMCell
from vagan.models.fp32 import fp32_layer


class ResidualBlock(nn.Module):
    """Two 3x3 conv + ReLU with an identity shortcut: ``x = relu(block(x) + x)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu_(self.body(x) + x)


class AttentiveBlock(nn.Module):
    """Estimates the noise attention map M* progressively over ``steps`` recurrent steps.

    With ``M_0 = 0.5`` everywhere, step ``t`` computes::

        concat(x, M_{t-1}) -> conv 3x3 (in+1 -> F) + ReLU -> 3 x ResidualBlock(F)
                           -> ConvLSTMCell(F, F) (state carried across steps)
                           -> conv 3x3 (F -> 1) -> sigmoid -> M_t in [0, 1]

    Fully convolutional (stride 1, zero padding): any ``H, W``. The paper uses ``T = 4``.
    """

    initial_value = 0.5

    def __init__(self, features: int = 32, steps: int = 4, in_channels: int = 1) -> None:
        super().__init__()
        if steps < 1:
            raise ValueError(f"attention steps must be >= 1, got {steps}")
        self.steps = steps
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels + 1, features, 3, padding=1), nn.ReLU(inplace=True),
            ResidualBlock(features), ResidualBlock(features), ResidualBlock(features),
        )
        self.lstm = ConvLSTMCell(features, features, kernel_size=3)
        self.head = nn.Conv2d(features, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``x``: ``(B, in_channels, H, W)`` LDCT in network units. Returns ``[M_1, ..., M_T]``, each ``(B, 1, H, W)``."""
        b, _, h, w = x.shape
        mask = x.new_full((b, 1, h, w), self.initial_value, dtype=torch.float32)
        state = None
        maps: list[torch.Tensor] = []
        for _ in range(self.steps):
            features = self.encoder[1:](fp32_layer(self.encoder[0], torch.cat([x, mask], dim=1)))  # image in fp32
            state = self.lstm(features, state)
            mask = torch.sigmoid(fp32_layer(self.head, state[0]))
            maps.append(mask)
        return maps
