"""The correlated noise of CT, as BM3D can be told about it ("BM3D-PSD", the ``sigma_psd`` of ``bm3d``).

CT noise is shaped by the reconstruction kernel: a white-noise sigma cannot describe it, and the
sigma that removes it best lies at 2-3x its standard deviation, where BM3D also removes anatomy.
BM3D accepts the noise's power spectrum instead. vagan estimates it from LDCT - NDCT differences of
pairs that are not test data, as the noise's **autocorrelation** ``R(dy, dx)`` (HU^2, lags up to
:data:`MAX_LAG` pixels, ``R(0, 0)`` the variance) measured inside the body, and turns it into the
power spectrum of any slice size: ``PSD = M N * DFT(w R)``, ``w`` a Bartlett taper over the lags
that keeps the spectrum non-negative (bm3d's convention: white noise of std ``s`` has
``PSD = s^2 M N`` everywhere). The autocorrelation is stored as a small ``.npy`` file (odd square,
HU^2) that ``vagan denoise --model bm3d-psd:FILE`` reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vagan.errors import InputDataError

MAX_LAG = 12  # pixels: CT kernels correlate the noise over a few pixels; 25x25 lags hold it
MIN_PIXELS = 1000
MAX_FILE_SIDE = 101


def noise_autocorrelation(noise: Sequence[np.ndarray], masks: Sequence[np.ndarray], max_lag: int = MAX_LAG
                          ) -> np.ndarray:
    """Autocorrelation ``(2 L + 1, 2 L + 1)`` (HU^2) of noise images over their masked pixels.

    Each image's mean inside its mask is removed; every pair of masked pixels at a lag counts once,
    pooled over images (``sum of products / number of pairs`` per lag, by FFT).
    """
    total = np.zeros((2 * max_lag + 1,) * 2)
    pairs = np.zeros_like(total)
    used = 0
    for image, mask in zip(noise, masks):
        mask = np.asarray(mask, bool)
        if not mask.any():
            continue
        used += int(mask.sum())
        values = np.where(mask, np.asarray(image, np.float64) - image[mask].mean(), 0.0)
        shape = tuple(n + max_lag for n in values.shape)  # zero padding: no wrap-around within the lags
        spectrum = np.fft.rfft2(values, shape)
        count = np.fft.rfft2(mask.astype(np.float64), shape)
        products = np.fft.irfft2(np.abs(spectrum) ** 2, shape)
        counts = np.fft.irfft2(np.abs(count) ** 2, shape)
        lags = np.r_[-max_lag:max_lag + 1]
        total += products[np.ix_(lags, lags)]
        pairs += np.round(counts[np.ix_(lags, lags)])
    if used < MIN_PIXELS:
        raise InputDataError(f"noise autocorrelation: only {used} pixels inside the body; at least {MIN_PIXELS} "
                             "are needed")
    return total / np.maximum(pairs, 1.0)


def power_spectrum(autocorrelation: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """bm3d's ``sigma_psd`` for images of ``shape`` (in the units of the autocorrelation, i.e. HU^2)."""
    check_autocorrelation(autocorrelation, "autocorrelation")
    lag = autocorrelation.shape[0] // 2
    if min(shape) <= 2 * lag:
        raise ValueError(f"images of {shape} are too small for an autocorrelation of lags up to {lag}")
    taper_1d = 1.0 - np.abs(np.r_[-lag:lag + 1]) / (lag + 1)
    tapered = autocorrelation * np.outer(taper_1d, taper_1d)
    grid = np.zeros(shape)
    lags = np.r_[-lag:lag + 1]
    grid[np.ix_(lags % shape[0], lags % shape[1])] = tapered
    spectrum = np.fft.fft2(grid).real
    floor = 1e-6 * max(float(spectrum.max()), 1e-12)
    return np.clip(spectrum, floor, None) * shape[0] * shape[1]


def check_autocorrelation(autocorrelation: np.ndarray, where: str) -> None:
    """An odd square 2-D array of finite numbers with a positive centre (the variance), at most
    :data:`MAX_FILE_SIDE` a side; a ``ValueError`` naming ``where`` otherwise."""
    a = np.asarray(autocorrelation)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] % 2 == 0 or a.shape[0] > MAX_FILE_SIDE:
        raise ValueError(f"{where}: a noise autocorrelation is an odd square 2-D array of at most {MAX_FILE_SIDE} "
                         f"a side (lags -L..L, HU^2), got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.number) or not np.all(np.isfinite(a)):
        raise ValueError(f"{where}: the noise autocorrelation holds non-finite or non-numeric values")
    centre = a[a.shape[0] // 2, a.shape[1] // 2]
    if not centre > 0 or np.abs(a).max() > centre * (1 + 1e-6):
        raise ValueError(f"{where}: the centre of a noise autocorrelation is its variance, positive and the "
                         f"largest value; got centre {centre!r}, largest {np.abs(a).max()!r}")


def save_autocorrelation(path: Path, autocorrelation: np.ndarray) -> None:
    check_autocorrelation(autocorrelation, str(path))
    np.save(path, np.asarray(autocorrelation, np.float64), allow_pickle=False)


def load_autocorrelation(path: Path) -> np.ndarray:
    """Read a ``.npy`` noise autocorrelation (no pickles), checked; :class:`InputDataError` otherwise."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputDataError(f"{path}: no such noise autocorrelation file (`vagan evaluate` with bm3d-psd writes "
                             "bm3d_psd_autocorrelation.npy into its output folder)")
    from vagan.io.arrays import npy_header

    try:
        shape, _, _ = npy_header(path)  # the header only: its size is checked before any data is read
        if len(shape) != 2 or max(shape, default=0) > MAX_FILE_SIDE:
            raise ValueError(f"shape {shape}")
        array = np.load(path, allow_pickle=False)
    except (ValueError, EOFError) as err:
        raise InputDataError(f"{path}: not a noise autocorrelation .npy file ({err})") from None
    try:
        check_autocorrelation(array, str(path))
    except ValueError as err:
        raise InputDataError(str(err)) from None
    return array.astype(np.float64)
