"""Whole-slice denoising with any method: a trained network (batched, CPU or GPU) or BM3D.

Every method maps HU slices ``(Z, H, W)`` to HU slices of the same shape, so evaluation and
the DICOM command treat them alike. Networks are fully convolutional: slice size may differ
from the training patches.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

if TYPE_CHECKING:
    from vagan.inference.model_loading import TrainedModel


@dataclass
class Denoised:
    """Output HU slices and, for attentive models, the learned attention maps M_T in [0, 1]."""

    hu: np.ndarray
    attention: np.ndarray | None = None


class Denoiser(Protocol):
    """What evaluation and the CLI need of a method."""

    name: str

    def __call__(self, hu: np.ndarray, progress: Callable[[Iterable], Iterable] | None = None) -> Denoised: ...


class NetworkDenoiser:
    """A trained generator applied to whole slices in batches."""

    def __init__(self, model: TrainedModel, batch_size: int = 4, device: torch.device | str = "cpu",
                 amp: bool = False, name: str | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.amp = amp and self.device.type == "cuda"
        self.name = name or model.name
        model.generator.to(self.device).eval()

    @torch.no_grad()
    def __call__(self, hu: np.ndarray, progress: Callable[[Iterable], Iterable] | None = None,
                 keep_attention: bool = False) -> Denoised:
        hu = as_slices(hu)
        hu_range = self.model.hu_range
        out = np.empty_like(hu, dtype=np.float32)
        attention = np.empty_like(out) if keep_attention and self.model.has_attention else None
        starts = range(0, hu.shape[0], self.batch_size)
        for start in progress(starts) if progress else starts:
            chunk = torch.from_numpy(np.ascontiguousarray(hu[start:start + self.batch_size]))[:, None]
            x = hu_range.to_unit(chunk.to(self.device, torch.float32))
            ctx = torch.autocast("cuda", dtype=torch.bfloat16) if self.amp else contextlib.nullcontext()
            with ctx:
                result = self.model.generator(x)
            denoised = hu_range.to_hu(result.image.float().clamp(0, 1))[:, 0].cpu().numpy()
            original = hu[start:start + len(chunk)]
            outside = (original < hu_range.lo) | (original > hu_range.hi)  # padding, metal: outside what G saw
            out[start:start + len(chunk)] = np.where(outside, original, denoised)
            if attention is not None and result.attention:
                attention[start:start + len(chunk)] = result.attention[-1].float()[:, 0].cpu().numpy()
        return Denoised(out, attention)


def as_slices(hu: np.ndarray) -> np.ndarray:
    hu = np.asarray(hu, dtype=np.float32)
    if hu.ndim == 2:
        hu = hu[None]
    if hu.ndim != 3:
        raise ValueError(f"expected HU slices of shape (Z, H, W) or (H, W), got {hu.shape}")
    if not np.isfinite(hu).all():
        raise ValueError("input contains NaN or infinite values")
    return hu
