"""Validation on whole slices after each epoch: PSNR and SSIM in the run's network units (data range 1),
computed by the same functions as ``vagan evaluate`` (:mod:`vagan.evaluation.metrics`). With the
default HU range ([-1024, 3072]) a run's validation values are the evaluation's field-convention
slice values; a run with another ``data.hu_min``/``hu_max`` measures in its own units."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch.utils.data import Dataset

from vagan.evaluation.metrics import psnr as psnr_of
from vagan.evaluation.metrics import ssim as ssim_of

VALIDATION_KEYS = ("val_psnr", "val_ssim", "val_psnr_ldct")
"""What :func:`validate` logs: the output's PSNR and SSIM against NDCT, and the LDCT's PSNR."""


@torch.no_grad()
def validate(generator: torch.nn.Module, slices: Dataset, device: torch.device,
             autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext) -> dict[str, float]:
    """Mean PSNR/SSIM of the generator's output and of the LDCT input against NDCT."""
    was_training = generator.training
    generator.eval()
    psnr, ssim, psnr_in = [], [], []
    try:
        for i in range(len(slices)):
            item = slices[i]
            x = item["ldct"][None].to(device)
            y = item["ndct"][None].to(device)
            with autocast():
                out = generator(x).image.float().clamp(0, 1)
            psnr.append(psnr_of(out, y, 1.0))
            ssim.append(ssim_of(out, y, 1.0))
            psnr_in.append(psnr_of(x, y, 1.0))
    finally:
        generator.train(was_training)
    n = max(len(psnr), 1)
    return dict(zip(VALIDATION_KEYS, (sum(psnr) / n, sum(ssim) / n, sum(psnr_in) / n), strict=True))
