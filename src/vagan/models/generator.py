"""The RED-style residual encoder-decoder generator of VAGAN (section II.B.1, eqs. 3 and 8).

The paper gives only "14 convolution blocks (Conv+ReLU)", skip connections, and side outputs from
the 1st, 3rd and 5th deconvolution layers. The rest follows the parent Attentive-GAN autoencoder
(Qian et al. 2018) and RED-CNN (Chen et al. 2017), trimmed to 14 blocks. With ``F = features``:

=====  ==============================  =========  ============  =======================
block  layer (all 3x3 unless noted)    channels   scale         note
=====  ==============================  =========  ============  =======================
1      conv                            in -> F    1
2      conv, stride 2                  F -> 2F    1/2
3      conv                            2F -> 2F   1/2
4      conv, stride 2                  2F -> 4F   1/4
5      conv                            4F -> 4F   1/4
6-9    conv, dilation ``dilations``    4F -> 4F   1/4           default 2, 4, 8, 4
10     deconv (1st)                    4F -> 4F   1/4           + skip from block 5; head 1/4
11     deconv 4x4, stride 2 (2nd)      4F -> 2F   1/2           + skip from block 3
12     deconv (3rd)                    2F -> 2F   1/2           head 1/2
13     deconv 4x4, stride 2 (4th)      2F -> F    1             + skip from block 1
14     deconv (5th)                    F -> F     1             head 1 (the output ŷ)
=====  ==============================  =========  ============  =======================

Every block is the layer followed by ReLU; an additive encoder skip is added before that ReLU
(RED-CNN style: ``relu(deconv(h) + skip)``). The three heads are plain 3x3 convs to one channel
(no ReLU, they are not counted among the 14 blocks) predicting a *residual*: the output at scale
``s`` is ``avgpool_s(LDCT) + head_s`` (area down-sampling of the LDCT channel, i.e. input channel 0),
so the full-scale output is ``ŷ = x + residual`` (global residual). Heads and residual adds run in
float32 under autocast (:mod:`vagan.models.fp32`).

Dilations: the parent uses 2, 4, 8, 16 on large images. Trained on 64x64 patches the 1/4-scale map
is 16x16, where a dilation-16 conv sees only padding outside its centre tap: those weights would
never be trained yet would act on real content at 512x512 inference. Hence 2, 4, 8, 4 by default.

Any ``H, W`` works: the input is reflect-padded (bottom/right) to a multiple of 4 and the outputs
are cropped back, the 1/2 and 1/4 side outputs to ``ceil(H/2)`` and ``ceil(H/4)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vagan.models.fp32 import fp32_layer
from vagan.models.outputs import GeneratorOutput

DEFAULT_DILATIONS: tuple[int, int, int, int] = (2, 4, 8, 4)


def _conv(c_in: int, c_out: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=dilation, dilation=dilation)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad ``x`` at the bottom/right to ``H, W`` divisible by ``multiple`` (reflect; replicate when too small)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


class REDGenerator(nn.Module):
    """Residual encoder-decoder with 14 Conv+ReLU blocks and 1/4, 1/2, 1 scale heads (see module doc)."""

    scale_factor = 4

    def __init__(self, in_channels: int = 1, features: int = 64,
                 dilations: Sequence[int] = DEFAULT_DILATIONS) -> None:
        super().__init__()
        if len(dilations) != 4 or any(d < 1 for d in dilations):
            raise ValueError(f"dilations must be 4 positive integers (14 blocks in all), got {tuple(dilations)}")
        f = features
        self.in_channels = in_channels
        self.enc1 = _conv(in_channels, f)
        self.enc2 = _conv(f, 2 * f, stride=2)
        self.enc3 = _conv(2 * f, 2 * f)
        self.enc4 = _conv(2 * f, 4 * f, stride=2)
        self.enc5 = _conv(4 * f, 4 * f)
        self.middle = nn.ModuleList(_conv(4 * f, 4 * f, dilation=d) for d in dilations)
        self.dec1 = nn.ConvTranspose2d(4 * f, 4 * f, 3, padding=1)
        self.dec2 = nn.ConvTranspose2d(4 * f, 2 * f, 4, stride=2, padding=1)
        self.dec3 = nn.ConvTranspose2d(2 * f, 2 * f, 3, padding=1)
        self.dec4 = nn.ConvTranspose2d(2 * f, f, 4, stride=2, padding=1)
        self.dec5 = nn.ConvTranspose2d(f, f, 3, padding=1)
        self.head_quarter = nn.Conv2d(4 * f, 1, 3, padding=1)
        self.head_half = nn.Conv2d(2 * f, 1, 3, padding=1)
        self.head_full = nn.Conv2d(f, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> GeneratorOutput:
        """``x``: ``(B, in_channels, H, W)``, channel 0 the LDCT image. Returns image and multiscale outputs."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"generator expects (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        xp = pad_to_multiple(x, self.scale_factor)
        ldct = xp[:, :1]

        e1 = torch.relu_(fp32_layer(self.enc1, xp))  # the image itself is never rounded to bf16
        e3 = torch.relu_(self.enc3(torch.relu_(self.enc2(e1))))
        e5 = torch.relu_(self.enc5(torch.relu_(self.enc4(e3))))
        m = e5
        for layer in self.middle:
            m = torch.relu_(layer(m))
        d1 = torch.relu_(self.dec1(m) + e5)
        d2 = torch.relu_(self.dec2(d1) + e3)
        d3 = torch.relu_(self.dec3(d2))
        d4 = torch.relu_(self.dec4(d3) + e1)
        d5 = torch.relu_(self.dec5(d4))

        ldct = ldct.float()  # the global residual adds are float32 (the heads too, see vagan.models.fp32)
        quarter = F.avg_pool2d(ldct, 4) + fp32_layer(self.head_quarter, d1)
        half = F.avg_pool2d(ldct, 2) + fp32_layer(self.head_half, d3)
        full = ldct + fp32_layer(self.head_full, d5)
        quarter = quarter[..., : math.ceil(h / 4), : math.ceil(w / 4)]
        half = half[..., : math.ceil(h / 2), : math.ceil(w / 2)]
        full = full[..., :h, :w]
        return GeneratorOutput(image=full, multiscale=(quarter, half, full))
