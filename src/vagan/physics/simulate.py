"""Low-dose CT simulation: HU slices -> projections -> noise at a dose fraction -> FBP -> HU.

Two sources (``source=``):

* ``"truth"``: the input is noise-free (e.g. a phantom). Its line integrals get quantum noise at
  ``I0 * dose`` incident photons per ray plus electronic noise (:func:`vagan.physics.noise.add_quantum_noise`).
* ``"ndct"``: the input is a real normal-dose scan that already carries full-dose noise. For
  ``dose < 1`` only the extra variance is inserted (Yu et al. 2012,
  :func:`vagan.physics.noise.insert_dose_reduction_noise`); ``dose = 1`` returns the input.

Two reconstructions (``SimulationConfig.reconstruction``):

* ``"noise_only"`` (default): ``HU_out = HU_in + FBP(p_noisy - p)``. FBP is linear, so this is the
  scanner's FBP of the noisy data with the input kept at its own resolution; the noise-free path
  returns the input exactly, and an NDCT keeps its sharpness, as in Mayo's own projection-domain
  noise insertion, where full- and quarter-dose images share one reconstruction kernel.
* ``"full"``: ``HU_out = FBP(p_noisy)``: the whole scanner model, FBP blur included.

Outside the scanner's field of view (the circle every view sees; 251 mm radius for the default
geometry) nothing is measured: those pixels are projected as air. A noise-free input (``truth``)
returns -1000 HU there; a real scan (``ndct``) keeps its own values there, since they came from its
own, larger, field of view (:func:`covering_config` widens the detector to the image for real series).
Inside, HU below -1000 are projected as air (attenuation is clipped at 0); in ``noise_only`` mode
values below :data:`PADDING_BELOW_HU` are a scanner's padding (-2000, -3024 HU outside its
reconstruction circle), not tissue, and pass through unchanged.

**Exposure.** Each ray's full-dose incident count is ``i0 * bowtie * tube-current modulation``
(:mod:`vagan.physics.exposure`); ``i0`` is the config's, or one per slice passed to the call (a real
series' exposure matched to its own noise, :mod:`vagan.data.noise_matching`). The phantom defaults
have neither bowtie nor modulation, as the calibration below was made.

**Calibration of the defaults.** ``DEFAULT_I0 = 2.0e5`` photons per ray with a cosine-windowed
FBP (electronic noise 10 counts^2, default Siemens-like geometry). Target: the Mayo 1 mm pairs, whose
quarter-minus-full difference has an RMSE of about 50 HU; those pairs were made by inserting the
extra quarter-dose noise into the full-dose projections, i.e. ``source="ndct"`` applied to a
full-dose scan. On a 320 mm water cylinder (512^2 pixels of 0.7 mm, body = 10 mm inside its edge),
full dose simulated from the noise-free truth and quarter dose inserted into it give the figures of
``benchmarks/results/simulator.md`` (``python benchmarks/bench_simulator.py``): with the Hann window
and I0 = 1.75e5 the inserted difference was only 39 HU (NDCT noise 21.6 HU); the cosine window at
I0 = 2.0e5 brings it to about 50 HU while I0 stays in the 1.5-2.25e5 range of a full-dose abdomen.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch

from vagan.config_schema import Section, bounded, build_dataclass
from vagan.errors import ConfigError
from vagan.physics.attenuation import MU_WATER_PER_MM, hu_to_mu
from vagan.physics.exposure import BowtieKind, angular_modulation, bowtie_transmission
from vagan.physics.filters import FilterWindow
from vagan.physics.geometry import (
    SCANNER_CHANNEL_MM,
    SCANNER_CHANNELS,
    SCANNER_SOURCE_DETECTOR_MM,
    SCANNER_SOURCE_ISOCENTER_MM,
    SCANNER_VIEWS,
    FanBeamGeometry,
    Geometry,
)
from vagan.physics.noise import (
    DEFAULT_COUNT_FLOOR,
    DEFAULT_ELECTRONIC_NOISE_VAR,
    add_quantum_noise,
    full_dose_variance,
    insert_dose_reduction_noise,
    standard_normal_like,
)
from vagan.physics.projector import CTProjector

__all__ = ["AIR_HU", "DEFAULT_I0", "PADDING_BELOW_HU", "LowDoseSimulator", "SimulationConfig", "covering_config",
           "dose_noise_weights", "simulate_low_dose"]

DEFAULT_I0 = 2.0e5  # full-dose photons per ray; see the module docstring for the calibration
AIR_HU = -1000.0
PADDING_BELOW_HU = -1100.0  # below air and its noise: a scanner's padding value, not a measurement

Source = Literal["truth", "ndct"]


@dataclass(frozen=True)
class SimulationConfig(Section):
    """Settings of :func:`simulate_low_dose`; validated on creation (``ConfigError`` names the key).

    Geometry fields describe the fan beam; ``geometry="parallel"`` uses its rebinned equivalent
    (same views and channels, pitch ``detector_spacing_mm * source_isocenter_mm / source_detector_mm``).
    ``i0`` is the full-dose incident photon count per ray and view; ``electronic_noise_var`` is in
    counts^2; ``noise=False`` switches all noise off. ``bowtie`` (``none`` or ``body``, a bowtie that
    evens out a water cylinder of ``bowtie_radius_mm``) and ``tube_current_modulation`` (angular,
    square-root rule) shape each ray's flux (:mod:`vagan.physics.exposure`).
    """

    geometry: Literal["fan", "parallel"] = "fan"
    n_views: int = bounded(SCANNER_VIEWS, ge=1)
    n_detectors: int = bounded(SCANNER_CHANNELS, ge=1)
    detector_spacing_mm: float = bounded(SCANNER_CHANNEL_MM, gt=0)
    source_isocenter_mm: float = bounded(SCANNER_SOURCE_ISOCENTER_MM, gt=0)
    source_detector_mm: float = bounded(SCANNER_SOURCE_DETECTOR_MM, gt=0)
    detector_offset_mm: float = 0.0
    i0: float = bounded(DEFAULT_I0, gt=0)
    electronic_noise_var: float = bounded(DEFAULT_ELECTRONIC_NOISE_VAR, ge=0)  # counts^2
    count_floor: float = bounded(DEFAULT_COUNT_FLOOR, gt=0)
    mu_water_per_mm: float = bounded(MU_WATER_PER_MM, gt=0)
    filter_window: FilterWindow = "cosine"
    bowtie: BowtieKind = "none"
    bowtie_radius_mm: float = bounded(160.0, gt=0)
    tube_current_modulation: bool = False
    noise: bool = True
    reconstruction: Literal["noise_only", "full"] = "noise_only"

    def check(self) -> None:
        try:
            self.make_geometry()
        except ValueError as err:
            raise ConfigError(f"scan geometry: {err}") from err

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SimulationConfig:
        """Build from a mapping (e.g. a YAML section); unknown keys raise ``ConfigError``."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"simulation: expected a mapping of settings, got {type(data).__name__} {data!r}")
        return build_dataclass(cls, dict(data), "simulation")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def make_geometry(self) -> Geometry:
        """The scan geometry these settings describe."""
        fan = FanBeamGeometry(
            source_isocenter_mm=self.source_isocenter_mm,
            source_detector_mm=self.source_detector_mm,
            n_detectors=self.n_detectors,
            detector_spacing_mm=self.detector_spacing_mm,
            n_views=self.n_views,
            detector_offset_mm=self.detector_offset_mm,
        )
        return fan if self.geometry == "fan" else fan.rebinned_parallel()


def _check_dose(dose: float) -> float:
    if isinstance(dose, bool) or not isinstance(dose, (int, float)) or not (0 < dose <= 1):
        raise ValueError(
            f"dose must be a fraction of the full dose in (0, 1] (e.g. 0.25 for quarter dose), got {dose!r}"
        )
    return float(dose)


class LowDoseSimulator:
    """A reusable simulator for slices of one shape and pixel size (builds the projector once).

    >>> sim = LowDoseSimulator(SimulationConfig(n_views=32, n_detectors=48, detector_spacing_mm=8.0), (16, 16), 4.0)
    >>> sim(torch.zeros(16, 16), dose=0.25, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([16, 16])
    """

    def __init__(
        self,
        config: SimulationConfig,
        image_shape: tuple[int, int],
        pixel_spacing_mm: float,
        device: torch.device | str | None = None,
    ) -> None:
        self.config = config
        geometry = config.make_geometry()
        self.projector = CTProjector(geometry, image_shape, pixel_spacing_mm).to(device)
        self._fov = self.projector.fov_mask()
        self._bowtie = bowtie_transmission(geometry, config.bowtie, config.bowtie_radius_mm, config.mu_water_per_mm)

    def __call__(
        self,
        hu: torch.Tensor,
        dose: float,
        generator: torch.Generator | None = None,
        source: Source = "truth",
        i0: float | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Simulate ``hu`` ((H, W), (B, H, W) or (B, 1, H, W), in HU) at ``dose``; same shape, HU.

        ``i0`` overrides the config's full-dose photons per ray: a number, or one per slice (``(B,)``).
        """
        dose = _check_dose(dose)
        if source not in ("truth", "ndct"):
            raise ValueError(
                f"source must be 'truth' (noise-free input) or 'ndct' (a normal-dose scan), got {source!r}"
            )
        shape = hu.shape
        batch = self._as_batch(hu)
        cfg = self.config
        if self.keeps_input and (not cfg.noise or (source == "ndct" and dose == 1.0)):
            out = batch.float().clone()
        else:
            clean = self.line_integrals(batch)
            if not cfg.noise:
                noisy = clean
            elif source == "truth":
                noisy = add_quantum_noise(clean, self.flux(clean, i0) * dose, cfg.electronic_noise_var, generator,
                                          cfg.count_floor)
            else:
                noisy = insert_dose_reduction_noise(clean, self.flux(clean, i0), dose, cfg.electronic_noise_var,
                                                    generator, cfg.count_floor)
            out = self._reconstruct(batch, clean, noisy)
        return self._outside(out, batch, source).to(hu.dtype).reshape(shape)

    def scan_pair(self, truth: torch.Tensor, dose: float, generator: torch.Generator | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """A noise-free ``truth`` ((B, H, W), HU) scanned at full dose, and the same scan taken to ``dose``
        by inserting the extra noise into its *measured* full-dose projections (Yu et al. 2012, as the
        Mayo pairs were made): ``(ndct, ldct)``, each the shape of ``truth``.

        One projection and one FBP call serve both images, about half the cost of scanning the truth
        and then the reconstructed NDCT (``self(truth, 1.0)``, then ``self(ndct, dose, source="ndct")``),
        which also re-projects the NDCT's noise into the variance the insertion uses.
        """
        dose = _check_dose(dose)
        cfg = self.config
        batch = self._as_batch(truth)
        clean = self.line_integrals(batch)
        if cfg.noise:
            flux = self.flux(clean)
            full = add_quantum_noise(clean, flux, cfg.electronic_noise_var, generator, cfg.count_floor)
            low = insert_dose_reduction_noise(full, flux, dose, cfg.electronic_noise_var, generator, cfg.count_floor)
        else:
            full = low = clean
        images = self._reconstruct(torch.cat([batch, batch]), torch.cat([clean, clean]), torch.cat([full, low]))
        ndct, ldct = (self._outside(part, batch, "truth").to(truth.dtype).reshape(truth.shape)
                      for part in images.chunk(2))
        return ndct, ldct

    def repeated_scans(self, truth: torch.Tensor, dose: float, count: int, generator: torch.Generator | None = None,
                       batch_size: int = 4, progress: Callable[[int], object] | None = None) -> torch.Tensor:
        """``count`` scans of one noise-free slice ``truth`` ((H, W), HU) at ``dose``, each with fresh
        noise: ``(count, H, W)``, reconstructed ``batch_size`` at a time (``progress(n)`` after each).

        The slice is projected once: the same scans as ``self(truth.expand(count, H, W), dose)``
        without ``count`` identical projections.
        """
        dose = _check_dose(dose)
        if truth.dim() != 2:
            raise ValueError(f"expected one slice (H, W), got {tuple(truth.shape)}")
        if count < 1 or batch_size < 1:
            raise ValueError(f"count and batch_size must be >= 1, got {count} and {batch_size}")
        cfg = self.config
        one = self._as_batch(truth)
        clean_one = self.line_integrals(one)
        flux = self.flux(clean_one) * dose
        out = torch.empty((count, *truth.shape), dtype=truth.dtype, device=truth.device)
        for start in range(0, count, batch_size):
            n = min(batch_size, count - start)
            clean, batch = clean_one.expand(n, -1, -1), one.expand(n, -1, -1, -1)
            noisy = (add_quantum_noise(clean, flux, cfg.electronic_noise_var, generator, cfg.count_floor)
                     if cfg.noise else clean)
            images = self._outside(self._reconstruct(batch, clean, noisy), batch, "truth")
            out[start:start + n] = images[:, 0].to(truth.dtype)
            if progress is not None:
                progress(n)
        return out

    @property
    def keeps_input(self) -> bool:
        """``noise_only``: the output is the input plus the FBP of the noise (see the module docstring)."""
        return self.config.reconstruction == "noise_only"

    def _reconstruct(self, batch: torch.Tensor, clean: torch.Tensor, noisy: torch.Tensor) -> torch.Tensor:
        """HU of the scan whose projections are ``noisy``: the input plus the FBP of the noise
        (``noise_only``), or the FBP of the whole sinogram (``full``)."""
        cfg = self.config
        if self.keeps_input:
            return batch.float() + self._noise_hu(noisy - clean)
        return 1000.0 * (self.projector.fbp(noisy, cfg.filter_window) / cfg.mu_water_per_mm - 1.0)

    def line_integrals(self, hu: torch.Tensor) -> torch.Tensor:
        """Noise-free projections ``(B, views, channels)`` of HU slices (attenuation clipped at 0,
        nothing outside the field of view)."""
        batch = self._as_batch(hu)
        mu = hu_to_mu(batch.float(), self.config.mu_water_per_mm) * self._fov.to(batch.device)
        return self.projector(mu)

    def full_dose_noise(
        self, line_integrals: torch.Tensor, i0: float | torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """One realisation of the noise (HU, ``(B, H, W)``) that a full-dose scan at ``i0`` carries:
        Gaussian in the projections with variance ``(I + sigma_e^2) / I^2``, reconstructed by FBP;
        zero outside the field of view."""
        cfg = self.config
        variance = full_dose_variance(line_integrals, self.flux(line_integrals, i0), cfg.electronic_noise_var,
                                      cfg.count_floor)
        return self._noise_images([variance], generator)

    def noise_components(
        self, line_integrals: torch.Tensor, i0: float | torch.Tensor | None = None,
        generator: torch.Generator | None = None, realisations: int = 2,
    ) -> torch.Tensor:
        """Unit noise images from which the noise of any lower dose is mixed, ``(2, R, B, H, W)`` HU.

        Yu et al.'s added variance splits into two fixed maps scaled by the dose,
        ``var_add(a) = (1-a)/a * 1/I + (1-a)(1+a)/a^2 * sigma_e^2/I^2`` (:func:`dose_noise_weights`), so
        with ``Q`` the FBP of Gaussian noise of per-ray variance ``1/I`` (quantum) and ``E`` that of
        ``sigma_e^2/I^2`` (electronic), ``w_q(a) Q + w_e(a) E`` has exactly the distribution of the noise
        :meth:`__call__` inserts for ``source="ndct"``. ``R`` independent realisations of each; any
        ``cos(t) Q_1 + sin(t) Q_2`` is one more (a training set sees new noise every epoch for free).
        """
        if realisations < 1:
            raise ValueError(f"realisations must be >= 1, got {realisations}")
        cfg = self.config
        counts = (self.flux(line_integrals, i0) * torch.exp(-line_integrals)).clamp(min=cfg.count_floor)
        variances = [v for v in (1.0 / counts, cfg.electronic_noise_var / counts**2) for _ in range(realisations)]
        images = self._noise_images(variances, generator)
        return images.reshape(2, realisations, *line_integrals.shape[:1], *self.projector.image_shape)

    def flux(self, clean: torch.Tensor, i0: float | torch.Tensor | None = None) -> torch.Tensor:
        """Full-dose incident photons per ray ``(B, views, channels)`` (broadcastable): ``i0`` (the
        config's, one number, or one per slice) times the bowtie and the angular modulation."""
        cfg = self.config
        level = torch.as_tensor(cfg.i0 if i0 is None else i0, dtype=clean.dtype, device=clean.device)
        if level.dim() == 1:
            if len(level) != clean.shape[0]:
                raise ValueError(f"i0: expected one value per slice ({clean.shape[0]}), got {len(level)}")
            level = level.view(-1, 1, 1)
        elif level.dim() != 0:
            raise ValueError(f"i0: expected a number or one value per slice, got shape {tuple(level.shape)}")
        if not bool(torch.all(torch.isfinite(level) & (level > 0))):
            raise ValueError(f"i0: photons per ray must be positive and finite, got {level.flatten().tolist()}")
        flux = level * self._bowtie.to(clean.device, clean.dtype)
        if cfg.tube_current_modulation:
            flux = flux * angular_modulation(clean)
        return flux

    def _noise_images(self, variances: list[torch.Tensor], generator: torch.Generator | None) -> torch.Tensor:
        """Gaussian projection noise of each per-ray variance map, reconstructed in one FBP call, in HU,
        zero outside the field of view; ``(len(variances) * B, H, W)``."""
        sinograms = torch.cat([v.sqrt() * standard_normal_like(v, generator) for v in variances])
        images = self._noise_hu(sinograms)
        return torch.where(self._fov.to(images.device), images, 0.0)[:, 0]

    def _noise_hu(self, sinogram_noise: torch.Tensor) -> torch.Tensor:
        """FBP of a projection-domain difference, in HU (FBP is linear: the noise of the scan)."""
        return 1000.0 / self.config.mu_water_per_mm * self.projector.fbp(sinogram_noise, self.config.filter_window)

    def _outside(self, out: torch.Tensor, batch: torch.Tensor, source: str) -> torch.Tensor:
        """Pixels no ray measured: air for a noise-free input; a real scan keeps its own values there,
        and its padding (below :data:`PADDING_BELOW_HU`) passes through."""
        fov = self._fov.to(batch.device)
        if source == "ndct":
            measured = fov & (batch >= PADDING_BELOW_HU) if self.keeps_input else fov
            return torch.where(measured, out, batch.float())
        if self.keeps_input:
            out = torch.where(batch >= PADDING_BELOW_HU, out, batch.float())
        return torch.where(fov, out, torch.full_like(out, AIR_HU))

    def _as_batch(self, hu: torch.Tensor) -> torch.Tensor:
        expected = tuple(self.projector.image_shape)
        ok = hu.dim() in (2, 3, 4) and tuple(hu.shape[-2:]) == expected and (hu.dim() != 4 or hu.shape[1] == 1)
        if not ok:
            raise ValueError(
                f"expected HU slices (H, W), (B, H, W) or (B, 1, H, W) with (H, W) = {expected}, got {tuple(hu.shape)}"
            )
        if not hu.is_floating_point():
            raise ValueError(f"expected floating-point HU values, got dtype {hu.dtype}")
        if not bool(torch.isfinite(hu).all()):
            raise ValueError("the HU input contains NaN or infinite values")
        return hu.reshape(-1, 1, *expected)


def dose_noise_weights(dose: float) -> tuple[float, float]:
    """``(w_q, w_e)``: the added noise of dose fraction ``dose`` is ``w_q Q + w_e E`` in the unit noise
    images of :meth:`LowDoseSimulator.noise_components` (Yu et al. 2012, split into its two terms)."""
    a = _check_dose(dose)
    return ((1.0 - a) / a) ** 0.5, ((1.0 - a) * (1.0 + a)) ** 0.5 / a


def covering_config(config: SimulationConfig, image_shape: tuple[int, int], pixel_spacing_mm: float) -> SimulationConfig:
    """``config`` with enough detector channels that the field of view covers the image's
    reconstruction circle (half its width): a real series reconstructed over 550 mm (a wide-bore
    scanner's extended field of view) is then measured everywhere, not cut at the default 500 mm."""
    radius = 0.5 * min(image_shape) * pixel_spacing_mm
    widened = config
    while widened.make_geometry().fov_radius_mm < radius:
        widened = dataclasses.replace(widened, n_detectors=widened.n_detectors + 32)
    return widened


def simulate_low_dose(
    hu: torch.Tensor,
    pixel_spacing_mm: float,
    dose: float,
    config: SimulationConfig | None = None,
    generator: torch.Generator | None = None,
    source: Source = "truth",
) -> torch.Tensor:
    """Simulate a scan of ``hu`` at dose fraction ``dose`` in (0, 1]; returns HU of the same shape.

    ``hu`` is ``(H, W)``, ``(B, H, W)`` or ``(B, 1, H, W)`` with square pixels of ``pixel_spacing_mm``;
    the reconstruction is on the same grid and device. ``generator`` makes the noise reproducible
    (``None`` uses torch's global generator). See the module docstring for ``source`` and the modes.
    """
    _check_dose(dose)
    config = SimulationConfig() if config is None else config
    simulator = LowDoseSimulator(config, tuple(hu.shape[-2:]), pixel_spacing_mm, device=hu.device)
    return simulator(hu, dose, generator=generator, source=source)
