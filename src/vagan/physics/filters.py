"""Ramp filters for filtered back-projection (functional numerics used by the projector).

The ramp is built in the spatial domain (Kak & Slaney, "Principles of Computerized Tomographic
Imaging", ch. 3) and then transformed, which avoids the DC error of sampling ``|f|`` directly:

* parallel beam, channel pitch ``tau`` (mm): ``h(0) = 1/(4 tau^2)``, ``h(n) = 0`` for even n,
  ``h(n) = -1/(n^2 pi^2 tau^2)`` for odd n;
* equiangular fan beam, pitch ``alpha`` (rad): ``g(n) = (1/2) (n alpha / sin(n alpha))^2 h(n alpha)``,
  i.e. ``g(0) = 1/(8 alpha^2)``, ``g(n) = -1/(2 pi^2 sin^2(n alpha))`` for odd n.

An apodisation window ``W(f)`` (``f`` in cycles per channel, Nyquist 0.5) multiplies the kernel's
spectrum; ``hann`` is the default of the simulator (a smooth kernel, like the B30 reconstructions
of the Mayo data).
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch

__all__ = ["WINDOWS", "FilterWindow", "filter_response", "filter_sinogram", "ramp_kernel", "window_response"]

FilterWindow = Literal["ram-lak", "shepp-logan", "cosine", "hamming", "hann"]
WINDOWS: tuple[str, ...] = get_args(FilterWindow)


def _check_window(window: str) -> None:
    if window not in WINDOWS:
        raise ValueError(f"unknown filter window {window!r}; expected one of {list(WINDOWS)}")


def ramp_kernel(n: int, spacing: float, equiangular: bool = False, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Spatial ramp kernel at offsets ``0..n-1`` (it is even, so negative offsets mirror it).

    ``spacing`` is the channel pitch: mm for a parallel beam, rad for an equiangular fan (then the
    ``(gamma / sin gamma)^2 / 2`` fan correction is applied).
    """
    k = torch.arange(n, dtype=dtype)
    kernel = torch.zeros(n, dtype=dtype)
    kernel[0] = 1.0 / (4.0 * spacing**2)
    odd = k % 2 == 1
    if equiangular:
        kernel[0] = 1.0 / (8.0 * spacing**2)
        kernel[odd] = -1.0 / (2.0 * math.pi**2 * torch.sin(k[odd] * spacing) ** 2)
    else:
        kernel[odd] = -1.0 / (math.pi**2 * (k[odd] * spacing) ** 2)
    return kernel


def window_response(window: str, freqs: torch.Tensor) -> torch.Tensor:
    """Apodisation window at ``freqs`` (cycles per channel, 0..0.5)."""
    _check_window(window)
    x = freqs / 0.5  # 0 at DC, 1 at Nyquist
    if window == "ram-lak":
        return torch.ones_like(x)
    if window == "shepp-logan":
        return torch.sinc(x / 2.0)  # torch.sinc(t) = sin(pi t) / (pi t)
    if window == "cosine":
        return torch.cos(math.pi * x / 2.0)
    if window == "hamming":
        return 0.54 + 0.46 * torch.cos(math.pi * x)
    return 0.5 + 0.5 * torch.cos(math.pi * x)  # hann


def _fft_size(n: int) -> int:
    """Smallest power of two >= 2n - 1 (linear, not circular, convolution)."""
    return 1 << max(1, (2 * n - 2).bit_length())


def filter_response(n: int, spacing: float, window: str, equiangular: bool = False) -> torch.Tensor:
    """Real spectrum (length ``P // 2 + 1``) of the windowed ramp, for an FFT of size ``P = _fft_size(n)``."""
    size = _fft_size(n)
    kernel = ramp_kernel(n, spacing, equiangular)
    padded = torch.zeros(size, dtype=torch.float64)
    padded[:n] = kernel
    padded[size - n + 1 :] = kernel[1:].flip(0)  # negative offsets, circularly
    spectrum = torch.fft.rfft(padded).real  # the kernel is even: its spectrum is real
    return spectrum * window_response(window, torch.fft.rfftfreq(size, dtype=torch.float64))


def filter_sinogram(
    sinogram: torch.Tensor, spacing: float, window: str = "hann", equiangular: bool = False
) -> torch.Tensor:
    """Convolve every row (last axis) of ``sinogram`` with the windowed ramp, times ``spacing``.

    This is the discrete ``Q(n) = spacing * sum_k p(k) h(n - k)`` of FBP; the result has the units of
    ``sinogram / spacing``.
    """
    n = sinogram.shape[-1]
    size = _fft_size(n)
    response = filter_response(n, spacing, window, equiangular).to(device=sinogram.device, dtype=sinogram.dtype)
    spectrum = torch.fft.rfft(sinogram, n=size, dim=-1) * response
    return torch.fft.irfft(spectrum, n=size, dim=-1)[..., :n] * spacing
