"""Task-based image quality of one method on the quality phantom: noise (NPS), resolution (TTF per
rod contrast), CT-number accuracy per tissue and low-contrast detectability (CHO and NPWE) per
lesion size and contrast (docs/quality.md).

:func:`simulate_quality_images` makes the noise realisations once per dose; each method's outputs
on them go through :func:`assess`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from vagan.physics.quality_phantom import Insert, QualityPhantom, roi_stack
from vagan.physics.simulate import LowDoseSimulator, SimulationConfig
from vagan.quality.nps import RadialNPS, ensemble_noise, noise_power_spectrum
from vagan.quality.observers import Detectability, ObserverName, detectability
from vagan.quality.ttf import TaskTransferFunction, circular_edge_ttf
from vagan.study.stats import Interval, bootstrap_mean

OBSERVERS: tuple[ObserverName, ...] = ("cho", "npwe")
MEASURE_FRACTION = 0.6  # CT numbers are read inside this fraction of an insert's radius


@dataclass(frozen=True)
class QualityImages:
    """``K`` signal-present and ``K`` signal-absent images ``(K, H, W)`` in HU with independent noise."""

    present: np.ndarray
    absent: np.ndarray

    def map(self, fn) -> QualityImages:
        """The same realisations passed through ``fn`` (a method: ``(K, H, W)`` HU -> HU)."""
        return QualityImages(np.asarray(fn(self.present), np.float32), np.asarray(fn(self.absent), np.float32))


@dataclass(frozen=True)
class MethodQuality:
    """Everything measured for one method."""

    noise_std_hu: float
    nps: RadialNPS
    ttf: dict[str, TaskTransferFunction | None]  # rod name -> TTF (None: the method erased the rod's edge)
    ct_bias_hu: dict[str, Interval]  # tissue -> mean HU minus the true HU, over realisations
    detectability: dict[str, dict[ObserverName, Detectability]]  # lesion type -> observer -> result


def simulate_quality_images(phantom: QualityPhantom, config: SimulationConfig, dose: float, realisations: int,
                            seed: int, device: torch.device | str = "cpu", batch_size: int = 4,
                            progress: Callable[[int], object] | None = None) -> QualityImages:
    """Scans of the phantom at ``dose`` with fresh quantum noise in each (``source="truth"``);
    ``progress(n)`` is called after each batch with the number of scans it made."""
    simulator = LowDoseSimulator(config, (phantom.size, phantom.size), phantom.pixel_mm, device=device)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    stacks = []
    for signal in (True, False):
        truth = torch.from_numpy(phantom.render(signal)).to(device)
        scans = simulator.repeated_scans(truth, dose, realisations, generator, batch_size, progress)
        stacks.append(scans.cpu().numpy().astype(np.float32, copy=False))
    return QualityImages(*stacks)


def _tissue_masks(phantom: QualityPhantom) -> dict[Insert, np.ndarray]:
    """Where each tissue insert's CT number is read: inside 60% of its radius."""
    n = phantom.size
    y, x = np.mgrid[0:n, 0:n]
    return {ins: np.hypot(y - ins.row, x - ins.col) * phantom.pixel_mm <= MEASURE_FRACTION * ins.radius_mm
            for ins in phantom.of_kind("tissue")}


def _ct_bias(images: np.ndarray, phantom: QualityPhantom, resamples: int, seed: int) -> dict[str, Interval]:
    return {ins.name: bootstrap_mean(images[:, mask].mean(axis=1) - ins.hu, resamples=resamples, seed=seed)
            for ins, mask in _tissue_masks(phantom).items()}


def ct_number_shift(outputs: QualityImages, inputs: QualityImages, phantom: QualityPhantom, *,
                    resamples: int = 2000, seed: int = 0) -> dict[str, Interval]:
    """How far a method moves each tissue's CT number: the mean of output - input inside the insert,
    per scan (paired: the input's own noise and bias cancel), with a bootstrap interval over scans."""
    out = np.concatenate([outputs.present, outputs.absent]).astype(np.float64)
    inp = np.concatenate([inputs.present, inputs.absent]).astype(np.float64)
    return {ins.name: bootstrap_mean((out - inp)[:, mask].mean(axis=1), resamples=resamples, seed=seed)
            for ins, mask in _tissue_masks(phantom).items()}


def _rod_ttf(mean_image: np.ndarray, rod: Insert, pixel_mm: float) -> TaskTransferFunction | None:
    try:
        return circular_edge_ttf(mean_image, (rod.row, rod.col), rod.radius_mm / pixel_mm, pixel_mm)
    except ValueError:  # no contrast left: the method erased the rod
        return None


def channel_width_px(diameter_mm: float, pixel_mm: float) -> float:
    """The observers' scale for a lesion: Laguerre–Gauss width ~ the disc's diameter (at least 2 pixels);
    the NPWE's disc has half of it as radius."""
    return max(2.0, diameter_mm / pixel_mm)


def assess(images: QualityImages, phantom: QualityPhantom, *, channels: int = 5, resamples: int = 2000,
           seed: int = 0, detect: bool = True) -> MethodQuality:
    """NPS, TTF, CT-number bias and detectability of one method's outputs on the phantom's realisations.

    The observers train on the first half of the scans and test on the rest (ROIs of one scan
    never straddle the split). ``detect=False`` skips them (their bootstraps are most of the cost):
    ``detectability`` is then empty."""
    roi = phantom.roi_px
    cells = phantom.of_kind("lesion")  # uniform background in the signal-absent images
    noise_rois = roi_stack(ensemble_noise(images.absent), cells, roi)
    nps = noise_power_spectrum(noise_rois, phantom.pixel_mm)
    both = np.concatenate([images.present, images.absent])
    mean_image = both.mean(axis=0)
    ttf = {rod.name: _rod_ttf(mean_image, rod, phantom.pixel_mm) for rod in phantom.of_kind("rod")}
    n_train = (len(images.present) // 2) * len(phantom.lesions_of(phantom.lesion_types[0]))  # whole scans per half
    found: dict[str, dict[ObserverName, Detectability]] = {}
    for lesion in phantom.lesion_types if detect else ():
        sites = phantom.lesions_of(lesion)
        present = roi_stack(images.present, sites, roi)
        absent = roi_stack(images.absent, sites, roi)
        width = channel_width_px(lesion.diameter_mm, phantom.pixel_mm)
        found[lesion.name] = {
            "cho": detectability(present, absent, "cho", n_channels=channels, channel_width_px=width,
                                 n_train=n_train, resamples=resamples, seed=seed),
            "npwe": detectability(present, absent, "npwe", pixel_mm=phantom.pixel_mm, disc_radius_px=width / 2,
                                  n_train=n_train, resamples=resamples, seed=seed),
        }
    return MethodQuality(noise_std_hu=nps.noise_std, nps=nps.radial(), ttf=ttf,
                         ct_bias_hu=_ct_bias(both, phantom, resamples, seed), detectability=found)
