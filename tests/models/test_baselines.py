"""RED-CNN and WGAN-VGG networks: the published layer layouts and shapes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vagan.models.baselines import REDCNN, WGANCritic, WGANVGGGenerator


def test_red_cnn_layout_and_shape(rng: torch.Generator) -> None:
    net = REDCNN()  # default 96 channels
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    deconvs = [m for m in net.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert len(convs) == 5 and len(deconvs) == 5
    assert all(m.kernel_size == (5, 5) and m.padding == (0, 0) for m in convs + deconvs)
    assert [m.out_channels for m in convs] == [96] * 5 and deconvs[-1].out_channels == 1
    small = REDCNN(features=4)
    out = small(torch.rand(2, 1, 33, 29, generator=rng))
    assert out.image.shape == (2, 1, 33, 29) and out.multiscale == () and out.attention == ()
    assert (out.image >= 0).all()


def test_red_cnn_refuses_inputs_below_its_receptive_field() -> None:
    with pytest.raises(ValueError, match="21"):
        REDCNN(features=4)(torch.zeros(1, 1, 20, 40))


def test_wgan_vgg_generator_layout_and_shape(rng: torch.Generator) -> None:
    net = WGANVGGGenerator()
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 8 and all(c.kernel_size == (3, 3) for c in convs)
    assert [c.out_channels for c in convs] == [32] * 7 + [1]
    out = WGANVGGGenerator(features=4)(torch.rand(2, 1, 37, 31, generator=rng))
    assert out.image.shape == (2, 1, 37, 31) and out.multiscale == () and out.attention == ()


def test_wgan_critic_layout_and_shape(rng: torch.Generator) -> None:
    critic = WGANCritic()
    convs = [m for m in critic.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256]
    assert [c.stride[0] for c in convs] == [1, 2, 1, 2, 1, 2]
    linears = [m for m in critic.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(256 * 8 * 8, 1024), (1024, 1)]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in critic.modules())  # WGAN-GP forbids batch norm
    small = WGANCritic(features=4)
    for size in ((64, 64), (40, 52)):
        out = small(torch.rand(2, 1, *size, generator=rng))
        assert out.logit.shape == (2, 1) and out.attention_map is None
