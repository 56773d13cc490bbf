"""Validation on whole slices after each epoch: PSNR and SSIM in network units (data range 1)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch.utils.data import Dataset
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)


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
            psnr.append(float(peak_signal_noise_ratio(out, y, data_range=1.0)))
            ssim.append(float(structural_similarity_index_measure(out, y, data_range=1.0)))
            psnr_in.append(float(peak_signal_noise_ratio(x, y, data_range=1.0)))
    finally:
        generator.train(was_training)
    n = max(len(psnr), 1)
    return {"val_psnr": sum(psnr) / n, "val_ssim": sum(ssim) / n, "val_psnr_ldct": sum(psnr_in) / n}
