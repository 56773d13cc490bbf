"""vagan.losses: one function per equation of the paper (4, 6-11) and WGAN-GP for WGAN-VGG."""

from vagan.losses.adversarial import (
    discriminator_loss,
    generator_adversarial_loss,
    gradient_penalty,
    wgan_critic_loss,
    wgan_generator_loss,
)
from vagan.losses.attention import attentive_block_loss, discriminator_attention_loss
from vagan.losses.generator import PAPER_GENERATOR_WEIGHTS, generator_total_loss
from vagan.losses.multiscale import multiscale_loss
from vagan.losses.perceptual import perceptual_loss

__all__ = [
    "PAPER_GENERATOR_WEIGHTS", "attentive_block_loss", "discriminator_attention_loss", "discriminator_loss",
    "generator_adversarial_loss", "generator_total_loss", "gradient_penalty", "multiscale_loss",
    "perceptual_loss", "wgan_critic_loss", "wgan_generator_loss",
]
