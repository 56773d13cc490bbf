"""A pool of unit noise images per slice, from which training mixes new low-dose noise at any dose.

Simulating a 512^2 slice takes seconds, so a dataset written once would show a network the same
noise every epoch, at one dose. But the noise inserted into a normal-dose scan is Gaussian, and its
variance splits into two fixed maps scaled by the dose (Yu et al. 2012;
:meth:`vagan.physics.simulate.LowDoseSimulator.noise_components`): ``w_q(a) Q + w_e(a) E``. With two
independent realisations of each, ``cos(t) Q_1 + sin(t) Q_2`` is a new realisation for every angle
``t`` (same covariance, exactly), so a pool of four images per slice yields fresh noise at any dose
for every patch of every epoch, with nothing simulated during training.

``vagan simulate --from DIR --set noise_pool=true`` writes ``<patient>/noise_<T>.npz`` beside the
series (``noise_<T>_series-<name>.npz`` for a patient's further series at ``T``, named as its dose
folders: :func:`vagan.io.mayo.series_label`): ``pool`` ``(2, 2, Z, H, W)`` float16 HU
(quantum/electronic x realisation), the slice positions along the normal (``positions_mm``, to pair
it with the series as read) and the dose of the written LDCT. Training uses it with ``data.train_doses`` (:class:`vagan.training.config.DataConfig`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vagan.errors import InputDataError
from vagan.physics.simulate import PADDING_BELOW_HU, LowDoseSimulator, dose_noise_weights

POOL_PREFIX = "noise_"
POSITION_TOLERANCE_MM = 0.1


def positions_mm(volume) -> np.ndarray:
    """Slice positions of a :class:`~vagan.io.volume.CTVolume` along its normal (mm), or its slice
    indices where it has no positions."""
    if volume.slice_positions_mm is None:
        return np.arange(volume.hu.shape[0], dtype=np.float64)
    return np.asarray(volume.slice_positions_mm, np.float64) @ volume.slice_normal


def pool_path(patient_dir: Path, label: str) -> Path:
    """``<patient>/noise_<label>.npz``: ``label`` that of the series' dose folders, its thickness (``3mm``)
    or for a patient's further series at it ``3mm_series-<name>`` (:func:`vagan.io.mayo.series_label`)."""
    return Path(patient_dir) / f"{POOL_PREFIX}{label}.npz"


def make_noise_pool(simulator: LowDoseSimulator, hu: np.ndarray, i0: np.ndarray | None, generator: torch.Generator,
                    batch_size: int, device: torch.device, progress: Any = None) -> np.ndarray:
    """The unit noise images ``(2, 2, Z, H, W)`` float16 of a normal-dose volume ``(Z, H, W)``; zero on
    padding (it carries no measurement)."""
    pool = np.zeros((2, 2, *hu.shape), np.float16)
    for start in range(0, len(hu), batch_size):
        chunk = torch.from_numpy(np.ascontiguousarray(hu[start:start + batch_size], dtype=np.float32)).to(device)
        level = None if i0 is None else torch.as_tensor(i0[start:start + len(chunk)], dtype=torch.float64)
        parts = simulator.noise_components(simulator.line_integrals(chunk), level, generator, realisations=2)
        pool[:, :, start:start + len(chunk)] = parts.cpu().numpy().astype(np.float16)
        if progress is not None:
            progress.update(len(chunk))
    pool[:, :, hu < PADDING_BELOW_HU] = 0.0
    return pool


def mix(pool: np.ndarray, dose: float, angle_q: float = 0.0, angle_e: float = 0.0) -> np.ndarray:
    """Noise of dose fraction ``dose`` from unit images ``(2, 2, ...)``: ``w_q (cos a_q Q1 + sin a_q Q2)
    + w_e (cos a_e E1 + sin a_e E2)``, float32."""
    w_q, w_e = dose_noise_weights(dose)
    q = math.cos(angle_q) * pool[0, 0].astype(np.float32) + math.sin(angle_q) * pool[0, 1].astype(np.float32)
    e = math.cos(angle_e) * pool[1, 0].astype(np.float32) + math.sin(angle_e) * pool[1, 1].astype(np.float32)
    return w_q * q + w_e * e


def save_pool(path: Path, pool: np.ndarray, positions_mm: np.ndarray, dose: float) -> None:
    with Path(path).open("wb") as handle:
        np.savez(handle, pool=pool, positions_mm=np.asarray(positions_mm, np.float64), dose=np.float64(dose))


def load_pool(path: Path, positions_mm: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """The pool of a series of ``shape`` whose slices lie at ``positions_mm``, checked against both."""
    try:
        with np.load(path, allow_pickle=False) as data:
            pool, saved = data["pool"], data["positions_mm"]
    except (ValueError, KeyError, OSError, EOFError) as err:
        raise InputDataError(f"{path}: not a vagan noise pool ({err})") from None
    if pool.shape != (2, 2, *shape) or pool.dtype != np.float16:
        raise InputDataError(f"{path}: a noise pool of shape {pool.shape} {pool.dtype}; the series needs "
                             f"{(2, 2, *shape)} float16")
    if saved.shape != (shape[0],) or np.abs(saved - np.asarray(positions_mm)).max(initial=0) > POSITION_TOLERANCE_MM:
        raise InputDataError(f"{path}: its slice positions do not match the series' (written for another series?)")
    if not np.all(np.isfinite(pool)):
        raise InputDataError(f"{path}: the noise pool holds non-finite values")
    return pool
