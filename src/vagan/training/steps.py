"""One optimisation step per stage kind: PSNR-oriented, GAN (eqs. 7, 10) and WGAN-GP.

Each step takes the networks, the optimizers and a batch, and returns the logged terms.
The GAN step is BasicSR-style: a generator step with D frozen, then a D step on the real
patches and the detached fake ones in one forward pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from vagan.errors import NonFiniteLossError
from vagan.losses.adversarial import (
    discriminator_loss,
    generator_adversarial_loss,
    gradient_penalty,
    wgan_critic_loss,
    wgan_generator_loss,
)
from vagan.losses.attention import attentive_block_loss, discriminator_attention_loss
from vagan.losses.generator import LOSS_TERMS, generator_total_loss
from vagan.losses.multiscale import multiscale_loss
from vagan.losses.perceptual import perceptual_loss
from vagan.training.config import StageConfig


@dataclass
class Networks:
    """The networks of one run (possibly DDP-wrapped) and the frozen perceptual feature net."""

    generator: nn.Module
    discriminator: nn.Module | None = None
    feature_net: nn.Module | None = None


def _unwrap(module: nn.Module) -> nn.Module:
    return module.module if hasattr(module, "module") else module


def _set_requires_grad(module: nn.Module, flag: bool) -> None:
    for p in _unwrap(module).parameters():
        p.requires_grad_(flag)


def _check_finite(total: torch.Tensor, what: str) -> None:
    if not torch.isfinite(total).all():
        raise NonFiniteLossError(f"{what} loss is {total.item()}")


def _content_terms(out, batch: dict[str, torch.Tensor], stage: StageConfig, nets: Networks) -> dict[str, torch.Tensor]:
    """Terms of L_G that do not involve the discriminator."""
    w = stage.losses
    y = batch["ndct"]
    terms: dict[str, torch.Tensor] = {}
    if w.mse:
        terms["mse"] = torch.mean((out.image - y) ** 2)
    if w.ms:
        outputs = out.multiscale if out.multiscale else (out.image,)
        terms["ms"] = multiscale_loss(outputs, y, weights=w.ms_scales[-len(outputs):])
    if w.ab:
        terms["ab"] = attentive_block_loss(out.attention, batch["attention"], weights=w.ab_steps)
    if w.pcep:
        if nets.feature_net is None:
            raise RuntimeError("perceptual loss weight is set but no feature network was built")
        terms["pcep"] = perceptual_loss(nets.feature_net, out.image.float(), y)
    return terms


def _update(total: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
    """Backward and optimiser step through ``scaler`` (loss scaling for fp16; a pass-through otherwise)."""
    scaler.scale(total).backward()
    scaler.step(optimizer)


def _weights(stage: StageConfig) -> dict[str, float]:
    return {name: getattr(stage.losses, name) for name in LOSS_TERMS}


def psnr_step(nets: Networks, opt_g: torch.optim.Optimizer, batch: dict[str, torch.Tensor], stage: StageConfig,
              autocast: Callable[[], contextlib.AbstractContextManager], scaler: torch.amp.GradScaler) -> dict[str, float]:
    """Stage 1: minimise the content terms (L_MS, L_AB, pixel MSE)."""
    opt_g.zero_grad(set_to_none=True)
    with autocast():
        out = nets.generator(batch["ldct"])
        terms = _content_terms(out, batch, stage, nets)
        total, logged = generator_total_loss(terms, _weights(stage))
    _check_finite(total, "generator")
    _update(total, opt_g, scaler)
    scaler.update()
    return {"loss_g": float(total.detach()), **logged}


def gan_step(nets: Networks, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer, batch: dict[str, torch.Tensor],
             stage: StageConfig, autocast: Callable[[], contextlib.AbstractContextManager],
             scaler: torch.amp.GradScaler) -> dict[str, float]:
    """Stage 2: a generator step on L_G (eq. 7), then a discriminator step on L_D (eq. 10)."""
    disc = nets.discriminator
    assert disc is not None
    x, y = batch["ldct"], batch["ndct"]

    _set_requires_grad(disc, False)
    opt_g.zero_grad(set_to_none=True)
    with autocast():
        out = nets.generator(x)
        terms = _content_terms(out, batch, stage, nets)
        fake_logit = _unwrap(disc)(out.image).logit
        terms["gan"] = generator_adversarial_loss(fake_logit.float(), mode=stage.gan_mode)
        total_g, logged = generator_total_loss(terms, _weights(stage))
    _check_finite(total_g, "generator")
    _update(total_g, opt_g, scaler)
    _set_requires_grad(disc, True)

    opt_d.zero_grad(set_to_none=True)
    fake = out.image.detach()
    with autocast():
        d_out = disc(torch.cat([y, fake], dim=0))
        real_logit, fake_logit = d_out.logit.float().chunk(2, dim=0)
        attention_term = None
        if d_out.attention_map is not None:
            map_real, map_fake = d_out.attention_map.float().chunk(2, dim=0)
            final_map = out.attention[-1].detach() if out.attention else torch.zeros_like(fake)
            attention_term = discriminator_attention_loss(map_fake, final_map, map_real)
        total_d = discriminator_loss(real_logit, fake_logit, attention_loss=attention_term, gamma=stage.losses.d_attention)
    _check_finite(total_d, "discriminator")
    _update(total_d, opt_d, scaler)
    scaler.update()
    logged.update(loss_g=float(total_g.detach()), loss_d=float(total_d.detach()),
                  d_real=float(torch.sigmoid(real_logit.detach()).mean()), d_fake=float(torch.sigmoid(fake_logit.detach()).mean()))
    if attention_term is not None:
        logged["d_attention"] = float(attention_term.detach())
    return logged


def wgan_step(nets: Networks, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer, batch: dict[str, torch.Tensor],
              stage: StageConfig, autocast: Callable[[], contextlib.AbstractContextManager], scaler: torch.amp.GradScaler,
              update_generator: bool, generator: torch.Generator | None = None) -> dict[str, float]:
    """WGAN-VGG (Yang et al. 2018): a critic step with gradient penalty; every ``critic_steps``-th batch a G step.

    The critic step and its gradient penalty run in float32 (the penalty's double backward is the
    least robust part under reduced precision); the generator step, the critic's scoring of G's
    output included, runs under ``autocast``.
    """
    critic = nets.discriminator
    assert critic is not None
    x, y = batch["ldct"], batch["ndct"]
    opt_d.zero_grad(set_to_none=True)
    with torch.no_grad(), autocast():
        fake = nets.generator(x).image.float()
    real_score = critic(y).logit.float()
    fake_score = critic(fake).logit.float()
    penalty = gradient_penalty(_unwrap(critic), y, fake, generator=generator)
    total_d = wgan_critic_loss(real_score, fake_score) + stage.losses.gradient_penalty * penalty
    _check_finite(total_d, "critic")
    total_d.backward()
    opt_d.step()
    logged = {"loss_d": float(total_d.detach()), "gp": float(penalty.detach()),
              "wasserstein": float((real_score.mean() - fake_score.mean()).detach())}
    if update_generator:
        _set_requires_grad(critic, False)
        opt_g.zero_grad(set_to_none=True)
        with autocast():
            out = nets.generator(x)
            terms = _content_terms(out, batch, stage, nets)
            terms["gan"] = wgan_generator_loss(_unwrap(critic)(out.image).logit.float())
            total_g, logged_g = generator_total_loss(terms, _weights(stage))
        _check_finite(total_g, "generator")
        _update(total_g, opt_g, scaler)
        scaler.update()
        _set_requires_grad(critic, True)
        logged.update(logged_g, loss_g=float(total_g.detach()))
    return logged
