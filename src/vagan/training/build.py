"""Networks of a preset, built from its :class:`ModelConfig` / :class:`TrainConfig`."""

from __future__ import annotations

import logging

import torch
from torch import nn

from vagan.errors import ConfigError
from vagan.models import registry
from vagan.training.config import ModelConfig, StageConfig, TrainConfig

log = logging.getLogger(__name__)

PERCEPTUAL_SEED = 20190101  # the fixed seed of the explicitly random VGG19 (`perceptual: vgg19_random`)


def build_generator(model: ModelConfig) -> nn.Module:
    return registry.build_generator(model.generator, features=model.generator_features,
                                    attention_features=model.attention_features, attention_steps=model.attention_steps)


def build_discriminator(model: ModelConfig) -> nn.Module:
    if model.discriminator == "none":
        raise ConfigError("model.discriminator is 'none' but an adversarial stage needs one")
    return registry.build_discriminator(model.discriminator, features=model.discriminator_features)


def needs_feature_net(stage: StageConfig) -> bool:
    return stage.losses.pcep > 0


def check_feature_net(train: TrainConfig) -> None:
    """Fail before any training if L_Pcep's network cannot be built: switched off, no weights, a
    weights file that is unreadable, holds more than tensors or has a wrong shape, an unknown layer.
    The network is built once here and dropped; its stage builds it again."""
    build_feature_net(train)


def build_feature_net(train: TrainConfig) -> nn.Module:
    """The frozen feature network V of L_Pcep (eq. 9)."""
    from vagan.models.vgg import VGG19Features

    if train.perceptual == "none":
        raise ConfigError("a stage weights L_Pcep (losses.pcep > 0) but train.perceptual is 'none'; set losses.pcep: 0 "
                          "or train.perceptual: vgg19")
    if train.perceptual == "vgg19_random":
        log.warning("L_Pcep uses a RANDOMLY initialised VGG19 (train.perceptual: vgg19_random): not a perceptual loss")
        return VGG19Features.random_init(torch.Generator().manual_seed(PERCEPTUAL_SEED), layer=train.vgg_layer)
    return VGG19Features.from_pretrained(train.vgg_weights, layer=train.vgg_layer)
