"""build_generator / build_discriminator: the preset names, and did-you-mean errors."""

from __future__ import annotations

import pytest
import torch

from vagan.errors import ConfigError
from vagan.models.baselines import REDCNN, WGANCritic, WGANVGGGenerator
from vagan.models.discriminator import Discriminator
from vagan.models.registry import (
    DISCRIMINATOR_KINDS,
    GENERATOR_KINDS,
    build_discriminator,
    build_generator,
)
from vagan.models.vagan_generator import AttentiveGenerator


def test_generator_kinds() -> None:
    assert set(GENERATOR_KINDS) == {"vagan", "red", "red_cnn", "wgan_vgg"}
    vagan = build_generator("vagan", features=4, attention_features=4, attention_steps=3)
    assert isinstance(vagan, AttentiveGenerator) and vagan.use_attention and vagan.attention.steps == 3
    red = build_generator("red", features=4)
    assert isinstance(red, AttentiveGenerator) and not red.use_attention
    assert isinstance(build_generator("red_cnn"), REDCNN)
    assert isinstance(build_generator("wgan_vgg"), WGANVGGGenerator)
    assert build_generator("red_cnn").encoder[0].out_channels == 96
    assert build_generator("vagan").generator.enc1.out_channels == 64


def test_discriminator_kinds() -> None:
    assert set(DISCRIMINATOR_KINDS) == {"attentive", "plain", "wgan_critic"}
    assert build_discriminator("attentive", features=8).attentive
    plain = build_discriminator("plain", features=8)
    assert isinstance(plain, Discriminator) and not plain.attentive
    assert isinstance(build_discriminator("wgan_critic", features=8), WGANCritic)


def test_every_kind_runs_on_a_patch(rng: torch.Generator) -> None:
    x = torch.rand(1, 1, 32, 32, generator=rng)
    for kind in GENERATOR_KINDS:
        assert build_generator(kind, features=4, attention_features=4)(x).image.shape == x.shape
    for kind in DISCRIMINATOR_KINDS:
        assert build_discriminator(kind, features=4)(x).logit.shape == (1, 1)


def test_unknown_names_suggest_the_closest() -> None:
    with pytest.raises(ConfigError, match="did you mean 'vagan'"):
        build_generator("vagn")
    with pytest.raises(ConfigError, match="did you mean 'attentive'"):
        build_discriminator("atentive")
    with pytest.raises(ConfigError, match="red_cnn"):  # lists the valid names
        build_generator("unet")
