"""The one precision policy of vagan: which arithmetic the networks run in, on which device.

``auto | fp32 | bf16 | fp16`` (``--precision`` of ``denoise``, ``evaluate``, ``train``; config keys
``train.precision`` and ``precision``). Reduced precision is *autocast* only: convolutions run in
bf16/fp16, while normalisation (HU <-> network units), the global residual adds, the output heads,
the ConvLSTM cell state, the losses and every HU value stay float32 (see ``docs/performance.md``).

``auto`` picks bf16 where the hardware runs it natively and it is measured to be faster:

* CUDA: bf16 where ``torch.cuda.is_bf16_supported()`` (Ampere and newer), else fp32.
* CPU: bf16 where oneDNN reports native bf16 (AVX512-BF16 or AMX) **and** a dilated 3x3 conv
  micro-benchmark runs at least :data:`AUTO_MIN_SPEEDUP` (1.1) times faster in bf16 than in fp32 on this
  machine; else fp32. On AVX2-only CPUs bf16 is emulated and slower, so ``auto`` never picks it.

``auto`` never fails. An explicit ``bf16``/``fp16`` that the device cannot run natively is a
:class:`~vagan.errors.ConfigError` (one ``error:`` line, exit code 2).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
import typing
from dataclasses import dataclass
from typing import Any, Literal

import torch

from vagan.errors import ConfigError

log = logging.getLogger(__name__)

PrecisionName = Literal["auto", "fp32", "bf16", "fp16"]
"""What a user may ask for (config fields are typed with it)."""
PRECISIONS: tuple[str, ...] = typing.get_args(PrecisionName)
AUTO_MIN_SPEEDUP = 1.1
"""``auto`` takes bf16 on a CPU only when the probe conv is at least this much faster in bf16."""

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def upgrade_amp(section: dict[str, Any]) -> dict[str, Any]:
    """A config section written before this policy had ``amp`` (bf16 autocast on a GPU): ``amp: false``
    becomes ``precision: fp32``, ``amp: true`` ``precision: auto`` (a ``precision`` given wins)."""
    if "amp" not in section:
        return section
    upgraded = {k: v for k, v in section.items() if k != "amp"}
    upgraded.setdefault("precision", "auto" if section["amp"] else "fp32")
    return upgraded


@dataclass(frozen=True)
class Precision:
    """A resolved precision: ``name`` is ``fp32``, ``bf16`` or ``fp16`` on ``device_type``; ``reason`` says why."""

    name: Literal["fp32", "bf16", "fp16"]
    device_type: str = "cpu"
    reason: str = ""
    requested: str = ""

    def __post_init__(self) -> None:
        if self.name not in _DTYPES:
            raise ValueError(f"precision must be fp32, bf16 or fp16 once resolved, got {self.name!r}")

    @property
    def dtype(self) -> torch.dtype:
        return _DTYPES[self.name]

    @property
    def reduced(self) -> bool:
        return self.name != "fp32"

    @property
    def needs_grad_scaler(self) -> bool:
        """fp16 training needs loss scaling (bf16 has fp32's exponent range and does not)."""
        return self.name == "fp16"

    def autocast(self) -> contextlib.AbstractContextManager:
        """The autocast context of this precision (a no-op for fp32)."""
        if not self.reduced:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A GradScaler that is active for fp16 only (a pass-through otherwise)."""
        return torch.amp.GradScaler(self.device_type, enabled=self.needs_grad_scaler)

    def describe(self) -> str:
        return f"{self.name} on {self.device_type}" + (f" ({self.reason})" if self.reason else "")

    def for_inference(self, network: torch.nn.Module) -> Precision:
        """``auto`` keeps fp32 for a network that declares ``bf16_inference_ok = False`` (its bf16 output
        is more than 1 HU RMS from fp32, see docs/performance.md); an explicit choice is kept."""
        if self.requested == "auto" and self.reduced and not getattr(network, "bf16_inference_ok", True):
            return Precision("fp32", self.device_type, f"auto: {type(network).__name__} loses > 1 HU RMS in "
                             f"{self.name}", self.requested)
        return self


def cpu_bf16_native() -> bool:
    """True when oneDNN runs bf16 natively on this CPU (AVX512-BF16, AVX512 core with bf16, or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cpu_fp16_native() -> bool:
    """True when oneDNN runs fp16 natively on this CPU (AVX512-FP16 or AMX-FP16)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_fp16_supported())
    except (AttributeError, RuntimeError):
        return False


@functools.lru_cache(maxsize=1)
def cpu_bf16_speedup(repeats: int = 5) -> float:
    """fp32 time / bf16 time of a 64 -> 64 dilated 3x3 conv on 2 x 96^2, channels-last (about 0.1 s).

    The two are timed alternately and the best of ``repeats`` of each is kept, so that a burst of
    load from other processes hits both alike.
    """
    gen = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv2d(64, 64, 3, padding=2, dilation=2).to(memory_format=torch.channels_last)
    x = torch.rand(2, 64, 96, 96, generator=gen).contiguous(memory_format=torch.channels_last)
    best = {False: float("inf"), True: float("inf")}
    with torch.inference_mode():
        for reduced in (False, True, *([False, True] * repeats)):  # the first pair warms up
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=reduced):
                start = time.perf_counter()
                conv(x)
                best[reduced] = min(best[reduced], time.perf_counter() - start)
    return best[False] / max(best[True], 1e-9)


def _cuda_bf16(device: torch.device) -> bool:
    try:
        return bool(torch.cuda.is_bf16_supported())
    except (AssertionError, RuntimeError):
        return False


def resolve_precision(requested: str, device: torch.device | str, measure: bool = True) -> Precision:
    """``auto | fp32 | bf16 | fp16`` on ``device`` -> a :class:`Precision`, or a :class:`ConfigError`.

    ``measure=False`` skips the CPU timing probe of ``auto`` (native bf16 is then taken as faster):
    every process of a distributed job must make the same choice, whatever its momentary load.
    """
    device = torch.device(device)
    kind = device.type
    if requested not in PRECISIONS:
        raise ConfigError(f"precision {requested!r} is not one of {', '.join(PRECISIONS)}")
    if requested == "fp32":
        return Precision("fp32", kind, "requested", requested)
    if kind == "cuda":
        if requested == "fp16":
            return Precision("fp16", kind, "requested", requested)
        if _cuda_bf16(device):
            return Precision("bf16", kind, "requested" if requested == "bf16" else "GPU has native bf16", requested)
        if requested == "bf16":
            raise ConfigError(f"--precision bf16: {device} has no native bfloat16 (it needs an Ampere or newer GPU); "
                              "use --precision fp16, fp32 or auto")
        return Precision("fp32", kind, "GPU without native bf16", requested)
    if kind != "cpu":
        if requested != "auto":
            raise ConfigError(f"--precision {requested}: only fp32 is supported on {kind} devices; use fp32 or auto")
        return Precision("fp32", kind, f"{kind} device", requested)
    if requested == "fp16":
        if not cpu_fp16_native():
            raise ConfigError("--precision fp16: this CPU has no native float16 (AVX512-FP16 or AMX-FP16); "
                              "use --precision bf16, fp32 or auto")
        return Precision("fp16", kind, "requested", requested)
    if not cpu_bf16_native():
        if requested == "bf16":
            raise ConfigError("--precision bf16: this CPU has no native bfloat16 (AVX512-BF16 or AMX); bf16 would be "
                              "emulated and slower than fp32. Use --precision fp32 or auto")
        return Precision("fp32", kind, "CPU without native bf16", requested)
    if requested == "bf16":
        return Precision("bf16", kind, "requested", requested)
    if not measure:
        return Precision("bf16", kind, "native bf16", requested)
    speedup = cpu_bf16_speedup()
    if speedup >= AUTO_MIN_SPEEDUP:
        return Precision("bf16", kind, f"native bf16, measured {speedup:.1f}x faster than fp32", requested)
    return Precision("fp32", kind, f"native bf16 measured only {speedup:.1f}x faster than fp32", requested)


def to_channels_last(module: torch.nn.Module) -> torch.nn.Module:
    """Convolution weights in channels-last (NHWC) memory order, in place; returns ``module``."""
    return module.to(memory_format=torch.channels_last)
