"""Fréchet distance between feature distributions (FID, Heusel et al. 2017).

Like MONAI's ``FIDMetric`` this takes *features*, not images: the feature network is the
caller's choice (see :mod:`vagan.evaluation.feature_nets`) and its name travels with every
result, because FID values from different networks are not comparable.

.. math::
    d^2 = \\|\\mu_1 - \\mu_2\\|^2 + \\mathrm{Tr}(\\Sigma_1 + \\Sigma_2 - 2 (\\Sigma_1 \\Sigma_2)^{1/2})

``Tr((S1 S2)^{1/2})`` is computed as the sum of square roots of the eigenvalues of the
symmetric PSD matrix ``S1^{1/2} S2 S1^{1/2}`` (same spectrum as ``S1 S2``), in float64, with
round-off negatives clipped to 0. This is exact for singular covariances, so it also works
when there are fewer samples than feature dimensions.

FID is biased upwards for small sample counts (Chong & Forsyth 2020); the usual Inception
protocol uses >= 2048 (better 10k+) samples. Every :class:`FIDResult` records ``n`` and
flags ``small_sample``; compare methods only at equal ``n`` and equal feature network.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

MIN_UNBIASED_SAMPLES = 2048


@dataclass(frozen=True)
class FeatureMoments:
    """Mean ``(D,)`` and covariance ``(D, D)`` (ddof=1) of ``n`` feature vectors, float64."""

    mean: np.ndarray
    cov: np.ndarray
    n: int


def _as_features(features: np.ndarray | torch.Tensor, what: str) -> np.ndarray:
    arr = features.detach().cpu().double().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    arr = arr.astype(np.float64, copy=False)
    if arr.ndim != 2:
        raise ValueError(f"{what}: expected features of shape (N, D), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what}: features contain NaN or infinite values")
    return arr


def feature_moments(features: np.ndarray | torch.Tensor) -> FeatureMoments:
    """Moments of a whole ``(N, D)`` feature array (two-pass, more accurate than streaming)."""
    f = _as_features(features, "features")
    if f.shape[0] < 2:
        raise ValueError(f"FID needs at least 2 feature vectors per set, got {f.shape[0]}")
    mean = f.mean(axis=0)
    centred = f - mean
    cov = centred.T @ centred / (f.shape[0] - 1)
    return FeatureMoments(mean, cov, f.shape[0])


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (negative round-off eigenvalues -> 0)."""
    w, v = np.linalg.eigh((matrix + matrix.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(a: FeatureMoments, b: FeatureMoments) -> float:
    """Squared Fréchet distance between Gaussians N(a.mean, a.cov) and N(b.mean, b.cov)."""
    if a.mean.shape != b.mean.shape:
        raise ValueError(f"feature dimensions differ: {a.mean.shape[0]} vs {b.mean.shape[0]}")
    sqrt_a = _psd_sqrt(a.cov)
    inner = sqrt_a @ b.cov @ sqrt_a
    eig = np.linalg.eigvalsh((inner + inner.T) / 2)
    trace_sqrt = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    diff = a.mean - b.mean
    value = float(diff @ diff + np.trace(a.cov) + np.trace(b.cov) - 2.0 * trace_sqrt)
    scale = max(float(np.trace(a.cov) + np.trace(b.cov)), 1e-300)
    if value < 0.0:
        if value < -1e-6 * scale:
            log.warning("Fréchet distance %.3g < 0 beyond round-off; covariances may be ill-conditioned", value)
        value = 0.0
    return value


@dataclass(frozen=True)
class FIDResult:
    """One FID value with the feature network that produced it and the sample counts."""

    value: float
    feature_net: str
    n_real: int
    n_fake: int
    dim: int

    @property
    def small_sample(self) -> bool:
        """True when fewer than 2048 samples per set were used (FID is then biased upwards)."""
        return min(self.n_real, self.n_fake) < MIN_UNBIASED_SAMPLES


def fid_from_moments(real: FeatureMoments, fake: FeatureMoments, feature_net: str) -> FIDResult:
    """FID from precomputed moments, labelled with the feature network's name."""
    value = frechet_distance(real, fake)
    result = FIDResult(value, feature_net, real.n, fake.n, int(real.mean.shape[0]))
    if result.small_sample:
        log.info("FID on %d/%d samples (< %d) is biased upwards; compare only at equal n", real.n, fake.n,
                 MIN_UNBIASED_SAMPLES)
    return result


def fid_from_features(
    real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor, feature_net: str
) -> FIDResult:
    """FID between two feature sets ``(N, D)`` and ``(M, D)`` from the network named ``feature_net``."""
    return fid_from_moments(feature_moments(real), feature_moments(fake), feature_net)
