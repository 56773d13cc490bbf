"""Every parameter a preset trains gets a gradient; frozen ones (D in the G step, VGG19) get none."""

import contextlib

import pytest
import torch
from support import tiny_batch, tiny_config

from vagan.training.build import (
    build_discriminator,
    build_feature_net,
    build_generator,
    needs_feature_net,
)
from vagan.training.config import PRESETS
from vagan.training.steps import Networks, gan_step, psnr_step, wgan_step

NO_SCALER = torch.amp.GradScaler("cpu", enabled=False)  # fp32: no loss scaling


def _grads(module):
    return {n: None if p.grad is None else p.grad.clone() for n, p in module.named_parameters()}


@pytest.mark.parametrize("preset", PRESETS)
def test_gradients_reach_trained_and_spare_frozen_parameters(preset):
    torch.manual_seed(0)
    cfg = tiny_config(preset)
    batch = tiny_batch()
    for stage in cfg.stages:
        gen = build_generator(cfg.model)
        disc = build_discriminator(cfg.model) if stage.adversarial != "none" else None
        vgg = build_feature_net(cfg.train) if needs_feature_net(stage) else None
        opt_g = torch.optim.SGD(gen.parameters(), lr=0.0)
        opt_d = torch.optim.SGD(disc.parameters(), lr=0.0) if disc is not None else None
        seen = {}

        def spy(opt, name, modules):
            step = opt.step

            def wrapped(*args, **kwargs):
                seen[name] = {key: _grads(m) for key, m in modules.items() if m is not None}
                return step(*args, **kwargs)

            opt.step = wrapped

        spy(opt_g, "g_step", {"g": gen, "d": disc, "vgg": vgg})
        if opt_d is not None:
            spy(opt_d, "d_step", {"g": gen, "d": disc})
        nets = Networks(gen, disc, vgg)
        if stage.adversarial == "none":
            psnr_step(nets, opt_g, batch, stage, contextlib.nullcontext, NO_SCALER)
        elif stage.adversarial == "gan":
            gan_step(nets, opt_g, opt_d, batch, stage, contextlib.nullcontext, NO_SCALER)
        else:
            wgan_step(nets, opt_g, opt_d, batch, stage, contextlib.nullcontext, NO_SCALER, update_generator=True,
                      generator=torch.Generator().manual_seed(0))

        at_g = seen["g_step"]
        for name, grad in at_g["g"].items():
            assert grad is not None and torch.isfinite(grad).all(), f"{preset}/{stage.name}: no grad for G.{name}"
            assert grad.abs().sum() > 0, f"{preset}/{stage.name}: zero grad for G.{name}"
        if vgg is not None:
            assert all(g is None for g in at_g["vgg"].values()), "VGG19 must stay frozen"
        if disc is not None:
            at_d = seen["d_step"]
            last_bias = list(at_d["d"])[-1]  # a WGAN critic's output bias cancels in E[C(y)] - E[C(G(x))]
            for name, grad in at_d["d"].items():
                assert grad is not None, f"{preset}/{stage.name}: no grad for D.{name}"
                if not (stage.adversarial == "wgan_gp" and name == last_bias):
                    assert grad.abs().sum() > 0, f"{preset}/{stage.name}: zero grad for D.{name}"
            if stage.adversarial == "gan":  # G step first: D is frozen and gets nothing
                assert all(g is None for g in at_g["d"].values())
            else:  # critic step first: the G step adds nothing to the critic's gradients
                for name, grad in at_g["d"].items():
                    assert torch.equal(grad, at_d["d"][name]), name
