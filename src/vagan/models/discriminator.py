"""The (attentive) discriminator of VAGAN (section II.B.2, eqs. 10 and 11).

Eight 3x3 conv layers with LeakyReLU(0.2); four of them have stride 2 so that a 64x64 patch ends
in a ``32 x 4 x 4 = 512`` feature vector (the paper's "512"), followed by one fully connected
output. With ``F = features``:

=====  ========================  =========  =========
layer  conv 3x3                  channels   64x64 in
=====  ========================  =========  =========
1      stride 1                  1 -> F/2   64
2      stride 2                  F/2 -> F   32
3      stride 1                  F -> F     32
4      stride 2                  F -> 2F    16
5      stride 1                  2F -> 2F   16
6      stride 1                  2F -> 2F   16   <- D_map = conv 3x3 (2F -> 1), no activation;
                                                    features *= D_map (attentive only)
7      stride 2                  2F -> 4F   8
8      stride 2                  4F -> 32   4
FC     512 -> 1 logit
=====  ========================  =========  =========

``D(.) = sigmoid(logit)``; the logit is returned and the losses apply the sigmoid stably.
``D_map`` has 1/4 of the input size (16x16 for 64x64 patches); eq. (11) compares it with M_T
area-pooled to that size. Inputs other than 64x64 are adaptive-average-pooled to 4x4 before the
fully connected layer (a no-op at 64x64), so whole slices can be scored too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vagan.models.outputs import DiscriminatorOutput

FINAL_CHANNELS = 32
FINAL_SIZE = 4


def _conv(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.LeakyReLU(0.2, inplace=True))


class Discriminator(nn.Module):
    """Eight-conv discriminator; ``attentive=True`` adds the D_map branch (see module doc)."""

    def __init__(self, attentive: bool = True, features: int = 64, in_channels: int = 1) -> None:
        super().__init__()
        if features < 2 or features % 2:
            raise ValueError(f"discriminator features must be an even number >= 2, got {features}")
        f = features
        self.in_channels = in_channels
        self.front = nn.Sequential(
            _conv(in_channels, f // 2, 1), _conv(f // 2, f, 2), _conv(f, f, 1),
            _conv(f, 2 * f, 2), _conv(2 * f, 2 * f, 1), _conv(2 * f, 2 * f, 1),
        )
        self.attention = nn.Conv2d(2 * f, 1, 3, padding=1) if attentive else None
        self.back = nn.Sequential(_conv(2 * f, 4 * f, 2), _conv(4 * f, FINAL_CHANNELS, 2))
        self.fc = nn.Linear(FINAL_CHANNELS * FINAL_SIZE * FINAL_SIZE, 1)

    @property
    def attentive(self) -> bool:
        return self.attention is not None

    def forward(self, x: torch.Tensor) -> DiscriminatorOutput:
        """``x``: ``(B, in_channels, H, W)`` image in network units."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"discriminator expects (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        h = self.front(x)
        attention_map = None
        if self.attention is not None:
            attention_map = self.attention(h)
            h = h * attention_map
        h = F.adaptive_avg_pool2d(self.back(h), FINAL_SIZE)
        return DiscriminatorOutput(logit=self.fc(h.flatten(1)), attention_map=attention_map)
