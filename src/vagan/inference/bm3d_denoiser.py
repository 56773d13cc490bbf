"""BM3D baseline (the ``bm3d`` package) behind the same interface as the networks.

Scalar BM3D assumes white Gaussian noise of a known standard deviation. CT noise is neither white
nor stationary, so sigma is either given in HU or estimated per slice from the image (wavelet
median absolute deviation, :func:`skimage.restoration.estimate_sigma`); both are documented in
reports. BM3D-PSD is given the noise's autocorrelation instead (:mod:`vagan.inference.noise_psd`)
and sees its power spectrum. The image is denoised in network units over ``hu_range``.

``bm3d`` is licensed for non-commercial use only, so it is an optional extra
(``pip install "vagan[bm3d]"``); :func:`import_bm3d` says so where it is missing.
"""

from __future__ import annotations

import numpy as np

from vagan.errors import ConfigError
from vagan.inference.denoise import Denoised, Progress, as_slices
from vagan.io.windowing import NETWORK_RANGE, HURange

BM3D_EXTRA = 'pip install "vagan[bm3d]"'


def import_bm3d():
    """The ``bm3d`` module, or one :class:`ConfigError` that names the extra to install."""
    try:
        import bm3d
    except ImportError:
        raise ConfigError(f"BM3D needs the optional bm3d package (non-commercial licence, so not in vagan's core "
                          f"install): {BM3D_EXTRA}") from None
    if not hasattr(np, "trapz"):
        # bm4d 4.2.5 (the newest) estimates its parameters for a given PSD with np.trapz, which NumPy 2.4
        # removed in favour of np.trapezoid (the same function); without it BM3D-PSD fails
        np.trapz = np.trapezoid  # type: ignore[attr-defined]
    return bm3d


def estimate_noise_sigma_hu(hu: np.ndarray) -> float:
    """Noise standard deviation of one slice in HU (wavelet MAD estimator)."""
    from skimage.restoration import estimate_sigma

    return float(estimate_sigma(np.asarray(hu, dtype=np.float64)))


def noise_std_hu(autocorrelation: np.ndarray) -> float:
    """The noise std of an autocorrelation: the square root of its centre (the variance)."""
    centre = autocorrelation.shape[0] // 2
    return float(np.sqrt(autocorrelation[centre, centre]))


class BM3DDenoiser:
    """BM3D per slice: with a noise ``autocorrelation`` (HU^2, BM3D-PSD), a fixed ``sigma_hu``, or
    (neither) sigma estimated from each slice."""

    def __init__(self, sigma_hu: float | None = None, hu_range: HURange = NETWORK_RANGE, profile: str = "np",
                 autocorrelation: np.ndarray | None = None) -> None:
        if sigma_hu is not None and sigma_hu <= 0:
            raise ValueError(f"BM3D sigma must be > 0 HU, got {sigma_hu}")
        if sigma_hu is not None and autocorrelation is not None:
            raise ValueError("BM3D takes a sigma or a noise autocorrelation, not both")
        import_bm3d()  # before any work: a missing extra is one clear error
        self.sigma_hu = sigma_hu
        self.autocorrelation = autocorrelation
        self.hu_range = hu_range
        self.profile = profile
        if autocorrelation is not None:
            self.name = f"bm3d-psd(std={noise_std_hu(autocorrelation):.3g} HU)"
        else:
            self.name = "bm3d" if sigma_hu is None else f"bm3d(sigma={sigma_hu:g} HU)"
        self.last_sigmas_hu: list[float] = []
        self.has_attention = False
        self._psd: dict[tuple[int, int], np.ndarray] = {}

    def _noise(self, slice_hu: np.ndarray) -> float | np.ndarray:
        """bm3d's ``sigma_psd`` for one slice, in network units."""
        if self.autocorrelation is not None:
            from vagan.inference.noise_psd import power_spectrum

            shape = slice_hu.shape
            if shape not in self._psd:
                self._psd[shape] = power_spectrum(self.autocorrelation, shape) / self.hu_range.width**2
            self.last_sigmas_hu.append(noise_std_hu(self.autocorrelation))
            return self._psd[shape]
        sigma = self.sigma_hu if self.sigma_hu is not None else estimate_noise_sigma_hu(slice_hu)
        self.last_sigmas_hu.append(sigma)
        return max(sigma, 1e-3) / self.hu_range.width

    def __call__(self, hu: np.ndarray, progress: Progress | None = None, keep_attention: bool = False) -> Denoised:
        bm3d = import_bm3d()

        hu = as_slices(hu)
        out = np.empty_like(hu)
        self.last_sigmas_hu = []
        for z in range(hu.shape[0]):
            noise = self._noise(hu[z])
            unit = self.hu_range.to_unit(hu[z].astype(np.float64), clip=False)
            result = bm3d.bm3d(unit, sigma_psd=noise, profile=self.profile)
            out[z] = self.hu_range.to_hu(np.asarray(result, dtype=np.float32))
            if progress is not None:
                progress(1)
        return Denoised(out)
