"""Build networks by the names the presets use (``model.generator`` / ``model.discriminator``)."""

from __future__ import annotations

import difflib
from typing import Literal, get_args

from torch import nn

from vagan.errors import ConfigError
from vagan.models.baselines import REDCNN, WGANCritic, WGANVGGGenerator
from vagan.models.discriminator import Discriminator
from vagan.models.vagan_generator import AttentiveGenerator

GeneratorKind = Literal["vagan", "red", "red_cnn", "wgan_vgg"]
GENERATOR_KINDS: tuple[str, ...] = get_args(GeneratorKind)
"""``vagan``: attentive block + RED generator; ``red``: the same generator without attention
(``g_psnr``/``g_gan``); ``red_cnn`` and ``wgan_vgg``: the baselines."""

DiscriminatorKind = Literal["attentive", "plain", "wgan_critic"]
DISCRIMINATOR_KINDS: tuple[str, ...] = get_args(DiscriminatorKind)

DEFAULT_FEATURES: dict[str, int] = {"vagan": 64, "red": 64, "red_cnn": 96, "wgan_vgg": 32,
                                    "attentive": 64, "plain": 64, "wgan_critic": 64}


def min_input_side(generator: nn.Module) -> int:
    """The smallest image side a generator accepts (RED-CNN's unpadded convolutions shrink the image)."""
    return generator.min_size if isinstance(generator, REDCNN) else 1


def _check(name: str, kinds: tuple[str, ...], what: str) -> None:
    if name not in kinds:
        close = difflib.get_close_matches(name, kinds, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown {what} {name!r}: expected one of {', '.join(kinds)}{hint}")


def build_generator(name: str, *, features: int | None = None, attention_features: int = 32,
                    attention_steps: int = 4) -> nn.Module:
    """A generator returning :class:`GeneratorOutput`.

    Args:
        name: one of :data:`GENERATOR_KINDS`.
        features: base width (``None``: the kind's default, see :data:`DEFAULT_FEATURES`).
        attention_features, attention_steps: the attentive block's width and T (``vagan`` only;
            ignored by the other kinds).

    Raises:
        ConfigError: unknown ``name`` (with a "did you mean").
    """
    _check(name, GENERATOR_KINDS, "generator")
    width = DEFAULT_FEATURES[name] if features is None else features
    if name in ("vagan", "red"):
        return AttentiveGenerator(use_attention=name == "vagan", attention_features=attention_features,
                                  attention_steps=attention_steps, generator_features=width)
    if name == "red_cnn":
        return REDCNN(features=width)
    return WGANVGGGenerator(features=width)


def build_discriminator(name: str, *, features: int | None = None) -> nn.Module:
    """A discriminator returning :class:`DiscriminatorOutput`.

    Args:
        name: one of :data:`DISCRIMINATOR_KINDS` (``attentive``: with D_map, ``plain``: without,
            ``wgan_critic``: WGAN-VGG's critic).
        features: base width (``None``: 64).

    Raises:
        ConfigError: unknown ``name`` (with a "did you mean").
    """
    _check(name, DISCRIMINATOR_KINDS, "discriminator")
    width = DEFAULT_FEATURES[name] if features is None else features
    if name == "wgan_critic":
        return WGANCritic(features=width)
    return Discriminator(attentive=name == "attentive", features=width)
