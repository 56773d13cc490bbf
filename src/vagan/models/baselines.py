"""Baseline networks: RED-CNN (Chen et al. 2017) and WGAN-VGG's generator and critic (Yang et al. 2018).

They return the same :class:`GeneratorOutput` / :class:`DiscriminatorOutput` as VAGAN (with empty
``multiscale`` and ``attention``), so training, inference and evaluation treat all methods alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vagan.models.fp32 import fp32_layer
from vagan.models.outputs import DiscriminatorOutput, GeneratorOutput


class REDCNN(nn.Module):
    """RED-CNN: 5 conv + 5 deconv layers, ``features`` (96) channels, 5x5 kernels, no padding, ReLU.

    Shortcuts (added before the ReLU): input -> output, after conv 2 -> after deconv 3, after
    conv 4 -> after deconv 1. The output passes a final ReLU as in the original. Inputs need
    ``H, W >= 21`` (five unpadded 5x5 convs); the output has the input's size.
    """

    kernel_size = 5
    depth = 5
    bf16_inference_ok = False
    """Its bf16 output is 1.0-1.6 HU RMS from fp32 (96-channel features without normalisation through
    ten layers): ``--precision auto`` denoises with it in fp32 (docs/performance.md)."""

    def __init__(self, features: int = 96, in_channels: int = 1) -> None:
        super().__init__()
        k, f = self.kernel_size, features
        self.encoder = nn.ModuleList(nn.Conv2d(in_channels if i == 0 else f, f, k) for i in range(self.depth))
        self.decoder = nn.ModuleList(nn.ConvTranspose2d(f, in_channels if i == self.depth - 1 else f, k)
                                     for i in range(self.depth))

    @property
    def min_size(self) -> int:
        return self.depth * (self.kernel_size - 1) + 1

    def forward(self, x: torch.Tensor) -> GeneratorOutput:
        """``x``: ``(B, 1, H, W)`` LDCT in network units."""
        if x.ndim != 4 or min(x.shape[-2:]) < self.min_size:
            raise ValueError(f"RED-CNN needs a (B, C, H, W) input with H, W >= {self.min_size}, got {tuple(x.shape)}")
        shortcut_in = x
        h = torch.relu(fp32_layer(self.encoder[0], x))  # the image itself is never rounded to bf16
        shortcut_2 = h = torch.relu(self.encoder[1](h))
        h = torch.relu(self.encoder[2](h))
        shortcut_4 = h = torch.relu(self.encoder[3](h))
        h = torch.relu(self.encoder[4](h))
        h = torch.relu(self.decoder[0](h) + shortcut_4)
        h = torch.relu(self.decoder[1](h))
        h = torch.relu(self.decoder[2](h) + shortcut_2)
        h = torch.relu(self.decoder[3](h))
        out = torch.relu(fp32_layer(self.decoder[4], h) + shortcut_in.float())  # the image stays float32
        return GeneratorOutput(image=out)


INIT_SCALE = 0.02
"""The random part of :class:`WGANVGGGenerator`'s near-identity start, as a fraction of PyTorch's default
kernels: the untrained generator changes a CT slice by a few HU RMS."""


@torch.no_grad()
def near_identity_(conv: nn.Conv2d, scale: float) -> None:
    """``conv``'s kernels become a Dirac (channel ``k`` to channel ``k``, for the first min(in, out)
    channels) plus ``scale`` times the random kernels it has, and its bias zero."""
    random = conv.weight.clone() * scale
    nn.init.dirac_(conv.weight)
    conv.weight.add_(random)
    if conv.bias is not None:
        conv.bias.zero_()


class WGANVGGGenerator(nn.Module):
    """WGAN-VGG generator: 8 conv layers (3x3, padding 1), ``features`` (32) channels with ReLU, the
    last one to 1 channel. Any ``H, W``.

    Deviations (docs/design.md, "WGAN-VGG's start"):

    * Yang et al. put a ReLU after the last layer too; here it is linear, because a ReLU output that
      starts all-zero (it does for some initialisations) passes no gradient at all.
    * The layers start near the identity (:func:`near_identity_`): network units are non-negative, so
      Dirac kernels carry the input through every ReLU unchanged, and small random kernels on top give
      the other channels their start. PyTorch's default initialisation starts the output about 850 HU
      below the input, and at the paper's learning rate (1e-5) a few hundred generator updates cannot
      close that gap: the phantom study's WGAN-VGG ended 600 HU off. The architecture is unchanged.
    """

    def __init__(self, features: int = 32, in_channels: int = 1, depth: int = 8,
                 init_scale: float = INIT_SCALE) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(depth):
            c_in = in_channels if i == 0 else features
            c_out = 1 if i == depth - 1 else features
            layers.append(nn.Conv2d(c_in, c_out, 3, padding=1))
            if i < depth - 1:
                layers.append(nn.ReLU(inplace=True))
        self.body = nn.Sequential(*layers)
        self.init_scale = init_scale
        self.start_from_drawn()

    def start_from_drawn(self) -> None:
        """Every convolution near the identity, its random part taken from the kernels it has now (also
        after :func:`vagan.models.init.init_parameters` re-draws them from a seeded generator)."""
        for layer in self.body:
            if isinstance(layer, nn.Conv2d):
                near_identity_(layer, self.init_scale)

    def forward(self, x: torch.Tensor) -> GeneratorOutput:
        """``x``: ``(B, 1, H, W)`` LDCT in network units. The last conv (the image) runs in float32."""
        first, *hidden, last = self.body
        h = fp32_layer(first, x)  # the image itself is never rounded to bf16
        for layer in hidden:
            h = layer(h)
        return GeneratorOutput(image=fp32_layer(last, h))


class WGANCritic(nn.Module):
    """WGAN-VGG critic: 6 conv 3x3 layers (F, F, 2F, 2F, 4F, 4F with F = 64; strides 1, 2, 1, 2, 1, 2),
    LeakyReLU(0.2), then FC 1024 + LeakyReLU and FC 1. No sigmoid, no batch norm (WGAN-GP).

    A 64x64 patch ends in ``4F x 8 x 8``; other sizes are adaptive-average-pooled to 8x8 first.
    The score is returned as ``DiscriminatorOutput.logit``.
    """

    final_size = 8

    def __init__(self, features: int = 64, in_channels: int = 1) -> None:
        super().__init__()
        widths = (features, features, 2 * features, 2 * features, 4 * features, 4 * features)
        layers: list[nn.Module] = []
        c_in = in_channels
        for i, c_out in enumerate(widths):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=1 + i % 2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
            c_in = c_out
        self.body = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Linear(c_in * self.final_size**2, 1024), nn.LeakyReLU(0.2, inplace=True),
                                nn.Linear(1024, 1))

    def forward(self, x: torch.Tensor) -> DiscriminatorOutput:
        """``x``: ``(B, 1, H, W)`` image in network units."""
        h = F.adaptive_avg_pool2d(self.body(x), self.final_size)
        return DiscriminatorOutput(logit=self.fc(h.flatten(1)))
