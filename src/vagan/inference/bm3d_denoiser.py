"""BM3D baseline (the ``bm3d`` package) behind the same interface as the networks.

BM3D assumes white Gaussian noise of a known standard deviation. CT noise is neither white
nor stationary, so sigma is either given in HU or estimated per slice from the image (wavelet
median absolute deviation, :func:`skimage.restoration.estimate_sigma`); both are documented in
reports. The image is denoised in network units over ``hu_range``.
"""

from __future__ import annotations

import numpy as np

from vagan.inference.denoise import Denoised, Progress, as_slices
from vagan.io.windowing import NETWORK_RANGE, HURange


def estimate_noise_sigma_hu(hu: np.ndarray) -> float:
    """Noise standard deviation of one slice in HU (wavelet MAD estimator)."""
    from skimage.restoration import estimate_sigma

    return float(estimate_sigma(np.asarray(hu, dtype=np.float64)))


class BM3DDenoiser:
    """BM3D per slice; ``sigma_hu=None`` estimates sigma from each slice."""

    def __init__(self, sigma_hu: float | None = None, hu_range: HURange = NETWORK_RANGE, profile: str = "np") -> None:
        if sigma_hu is not None and sigma_hu <= 0:
            raise ValueError(f"BM3D sigma must be > 0 HU, got {sigma_hu}")
        self.sigma_hu = sigma_hu
        self.hu_range = hu_range
        self.profile = profile
        self.name = "bm3d" if sigma_hu is None else f"bm3d(sigma={sigma_hu:g} HU)"
        self.last_sigmas_hu: list[float] = []
        self.has_attention = False

    def __call__(self, hu: np.ndarray, progress: Progress | None = None, keep_attention: bool = False) -> Denoised:
        import bm3d

        hu = as_slices(hu)
        out = np.empty_like(hu)
        self.last_sigmas_hu = []
        for z in range(hu.shape[0]):
            sigma = self.sigma_hu if self.sigma_hu is not None else estimate_noise_sigma_hu(hu[z])
            self.last_sigmas_hu.append(sigma)
            unit = self.hu_range.to_unit(hu[z].astype(np.float64), clip=False)
            result = bm3d.bm3d(unit, sigma_psd=max(sigma, 1e-3) / self.hu_range.width, profile=self.profile)
            out[z] = self.hu_range.to_hu(np.asarray(result, dtype=np.float32))
            if progress is not None:
                progress(1)
        return Denoised(out)
