"""Whole-slice denoising with any method: a trained network (batched, CPU or GPU) or BM3D.

Every method maps HU slices ``(Z, H, W)`` to HU slices of the same shape, so evaluation and
the DICOM command treat them alike. Networks are fully convolutional: slice size may differ
from the training patches. Networks run channels-last under the precision policy of
:mod:`vagan.precision` (bf16 autocast where it is native and faster); HU in, HU out, both float32.
Memory is bounded by the batch, not the series: one batch of activations at a time, and the
output array is the only copy of the result.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from vagan.errors import InputDataError
from vagan.models.registry import min_input_side
from vagan.precision import Precision, to_channels_last

if TYPE_CHECKING:
    from vagan.inference.model_loading import TrainedModel

log = logging.getLogger(__name__)

Progress = Callable[[int], None]
"""Called with the number of slices finished since the last call (e.g. ``tqdm.update``)."""

DEFAULT_BATCH = {"cpu": 1, "cuda": 16}
"""Slices per forward pass when none is given: on a CPU a batch of 2 is no faster than 1 per slice
(benchmarks/RESULTS.md) and only adds memory."""


@dataclass
class Denoised:
    """Output HU slices and, for attentive models, the learned attention maps M_T in [0, 1]."""

    hu: np.ndarray
    attention: np.ndarray | None = None


class Denoiser(Protocol):
    """What evaluation and the CLI need of a method."""

    name: str
    has_attention: bool  # whether ``keep_attention`` can return the maps M_T

    def __call__(self, hu: np.ndarray, progress: Progress | None = None, keep_attention: bool = False) -> Denoised: ...


class NetworkDenoiser:
    """A trained generator applied to whole slices in batches.

    Args:
        model: the loaded generator and its config; it runs on the device it is on.
        batch_size: slices per forward pass (``None``: :data:`DEFAULT_BATCH` of the device).
        precision: a resolved :class:`~vagan.precision.Precision` (``None``: fp32).
        compile: run the generator through ``torch.compile`` (inductor, weights frozen); when the
            compiler is unavailable or fails, a warning and the eager path.
    """

    engine = "torch"  # see vagan.inference.engine

    def __init__(self, model: TrainedModel, batch_size: int | None = None, precision: Precision | None = None,
                 compile: bool = False, name: str | None = None) -> None:
        self.device = model.device
        batch_size = DEFAULT_BATCH.get(self.device.type, 1) if batch_size is None else batch_size
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.batch_size = batch_size
        chosen = precision or Precision("fp32", self.device.type)
        self.precision = chosen.for_inference(model.generator)
        if self.precision != chosen:
            log.info("precision of %s: %s", model.name, self.precision.describe())
        self.name = name or model.name
        self.module = to_channels_last(model.generator).eval()
        self.compile = compile
        self._compiled: Callable | None = None

    def _forward(self, x: torch.Tensor):
        if self.compile:
            try:
                return self._compiled_forward(x)
            except (ValueError, MemoryError, torch.OutOfMemoryError):
                raise  # the input's fault or the machine's, not the compiler's: eager would fail alike
            except Exception as err:  # noqa: BLE001 - compiler failures have many types (no C++ compiler, ...)
                log.warning("torch.compile is unavailable here (%s: %s); running eager",
                            type(err).__name__, str(err).splitlines()[0][:200] if str(err) else "")
                self.compile = False
        return self.module(x)

    def _compiled_forward(self, x: torch.Tensor):
        import torch._inductor.config as inductor_config

        if self._compiled is None:
            self._compiled = torch.compile(self.module, dynamic=False)
        with inductor_config.patch(freezing=True):  # constant weights: prepacked and folded once
            return self._compiled(x)

    @property
    def has_attention(self) -> bool:
        return self.model.has_attention

    @torch.no_grad()
    def __call__(self, hu: np.ndarray, progress: Progress | None = None, keep_attention: bool = False) -> Denoised:
        hu = as_slices(hu)
        side = min_input_side(self.model.generator)
        if min(hu.shape[1:]) < side:
            raise InputDataError(f"slices of {hu.shape[1]}x{hu.shape[2]} pixels are smaller than the {side}x{side} "
                                 f"that {self.name} needs")
        hu_range = self.model.hu_range
        out = np.empty_like(hu, dtype=np.float32)
        attention = np.empty_like(out) if keep_attention and self.model.has_attention else None
        for start in range(0, hu.shape[0], self.batch_size):
            original = hu[start:start + self.batch_size]
            n = len(original)
            chunk = torch.from_numpy(np.ascontiguousarray(original))[:, None]
            if self.compile and n < self.batch_size < len(hu):  # pad a series' last batch: no recompilation
                chunk = torch.cat([chunk, chunk[-1:].expand(self.batch_size - n, -1, -1, -1)])
            x = hu_range.to_unit(chunk.to(self.device, torch.float32))  # one channel: NCHW is channels-last too
            with self.precision.autocast():
                result = self._forward(x)
            denoised = hu_range.to_hu(result.image[:n].float().clamp(0, 1))[:, 0].cpu().numpy()
            outside = (original < hu_range.lo) | (original > hu_range.hi)  # padding, metal: outside what G saw
            out[start:start + n] = np.where(outside, original, denoised)
            if attention is not None and result.attention:
                attention[start:start + n] = result.attention[-1][:n].float()[:, 0].cpu().numpy()
            if progress is not None:
                progress(n)
        return Denoised(out, attention)


def as_slices(hu: np.ndarray) -> np.ndarray:
    hu = np.asarray(hu, dtype=np.float32)
    if hu.ndim == 2:
        hu = hu[None]
    if hu.ndim != 3:
        raise InputDataError(f"expected HU slices of shape (Z, H, W) or (H, W), got {hu.shape}")
    if not np.isfinite(hu).all():
        raise InputDataError("input contains NaN or infinite values")
    return hu
