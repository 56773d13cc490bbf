"""The low-dose simulator: noise-free reproduction, 1/sqrt(dose) noise, no bias, determinism, errors."""

from __future__ import annotations

import math

import pytest
import torch

from vagan.errors import ConfigError
from vagan.physics.simulate import LowDoseSimulator, SimulationConfig, simulate_low_dose

# A scaled-down Siemens-like fan (4x coarser channels, 1/4 of the views) keeps every test fast.
SMALL = {"n_views": 288, "n_detectors": 184, "detector_spacing_mm": 4 * 1.2858}
SHAPE, PIXEL = (96, 96), 3.5


def _xy(shape: tuple[int, int] = SHAPE, pixel: float = PIXEL) -> tuple[torch.Tensor, torch.Tensor]:
    h, w = shape
    ys = (torch.arange(h, dtype=torch.float32) - (h - 1) / 2) * pixel
    xs = (torch.arange(w, dtype=torch.float32) - (w - 1) / 2) * pixel
    return torch.meshgrid(xs, ys, indexing="xy")


def body_phantom() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """HU (water ellipse 300 x 220 mm with a bone and a fat insert), the uniform water region and the
    body interior, both farther than 3 pixels from every edge."""
    x, y = _xy()
    hu = torch.full(SHAPE, -1000.0)
    body = (x / 150) ** 2 + (y / 110) ** 2 <= 1
    hu[body] = 0.0
    hu[(x - 80) ** 2 + y**2 <= 25**2] = 800.0
    hu[(x + 80) ** 2 + y**2 <= 25**2] = -100.0
    edges = torch.zeros(SHAPE, dtype=torch.bool)
    edges[:, 1:] |= hu[:, 1:] != hu[:, :-1]
    edges[1:, :] |= hu[1:, :] != hu[:-1, :]
    near = torch.nn.functional.max_pool2d(edges[None, None].float(), 7, stride=1, padding=3)[0, 0] > 0
    interior = body & ~near
    return hu, interior & (hu == 0), interior


def config(**kwargs) -> SimulationConfig:
    return SimulationConfig(**{**SMALL, **kwargs})


@pytest.mark.parametrize("geometry", ["fan", "parallel"])
def test_noise_free_path_reproduces_the_input(geometry: str) -> None:
    hu, _, interior = body_phantom()
    exact = simulate_low_dose(hu, PIXEL, 0.25, config(noise=False, geometry=geometry))
    assert torch.equal(exact, hu)
    full = simulate_low_dose(hu, PIXEL, 0.25, config(noise=False, geometry=geometry, reconstruction="full"))
    assert (full - hu)[interior].pow(2).mean().sqrt() <= 10.0
    assert full[interior & (hu == 0)].mean().abs() <= 3.0


def test_quantum_noise_scales_as_one_over_sqrt_dose(rng: torch.Generator) -> None:
    hu, roi, _ = body_phantom()
    sim = LowDoseSimulator(config(electronic_noise_var=0.0), SHAPE, PIXEL)
    batch = hu.expand(4, *SHAPE)
    std_full = (sim(batch, 1.0, rng) - hu)[:, roi].std()
    std_quarter = (sim(batch, 0.25, rng) - hu)[:, roi].std()
    assert std_quarter / std_full == pytest.approx(2.0, abs=0.2)


def test_quarter_dose_mean_is_unbiased(rng: torch.Generator) -> None:
    hu, roi, _ = body_phantom()
    for reconstruction in ("noise_only", "full"):
        out = simulate_low_dose(hu.expand(2, *SHAPE), PIXEL, 0.25, config(reconstruction=reconstruction), rng)
        assert out[:, roi].mean().abs() <= 5.0  # water is 0 HU


def test_ndct_insertion_adds_the_missing_noise(rng: torch.Generator) -> None:
    """Quarter dose made from a full-dose scan: the difference has sqrt(1/a - 1) = sqrt(3) x the full-dose noise."""
    hu, roi, _ = body_phantom()
    sim = LowDoseSimulator(config(electronic_noise_var=0.0), SHAPE, PIXEL)
    full = sim(hu.expand(4, *SHAPE), 1.0, rng, source="truth")
    quarter = sim(full, 0.25, rng, source="ndct")
    ratio = (quarter - full)[:, roi].std() / (full - hu)[:, roi].std()
    assert ratio == pytest.approx(math.sqrt(3.0), abs=0.2)
    assert torch.equal(sim(full, 1.0, rng, source="ndct"), full)  # full dose: nothing to add


@pytest.mark.parametrize("reconstruction", ["noise_only", "full"])
def test_scan_pair_has_the_noise_of_two_separate_scans(rng: torch.Generator, reconstruction: str) -> None:
    """One projection for both doses: NDCT noise as a full-dose scan of the truth, LDCT - NDCT as the
    insertion into a full-dose scan (sqrt(3) x at quarter dose), no bias, air outside the field of view."""
    hu, roi, _ = body_phantom()
    sim = LowDoseSimulator(config(electronic_noise_var=0.0, reconstruction=reconstruction), SHAPE, PIXEL)
    batch = hu.expand(6, *SHAPE)
    ndct, ldct = sim.scan_pair(batch, 0.25, rng)
    assert ndct.shape == ldct.shape == batch.shape
    reference = sim(batch, 1.0, rng)
    assert (ndct - hu)[:, roi].std() / (reference - hu)[:, roi].std() == pytest.approx(1.0, abs=0.12)
    assert (ldct - ndct)[:, roi].std() / (ndct - hu)[:, roi].std() == pytest.approx(math.sqrt(3.0), abs=0.2)
    assert ndct[:, roi].mean().abs() <= 5.0 and ldct[:, roi].mean().abs() <= 5.0
    outside = ~sim.projector.fov_mask()
    if outside.any():
        assert bool((ldct[:, outside] == -1000.0).all())
    clean, same = LowDoseSimulator(config(noise=False), SHAPE, PIXEL).scan_pair(batch, 0.25, rng)
    assert torch.equal(clean, batch) and torch.equal(same, batch)


def test_repeated_scans_match_scans_of_the_repeated_slice(rng: torch.Generator) -> None:
    """Projecting the slice once changes nothing: the same numbers as scanning a stack of copies with
    the same generator state, whatever the batch size."""
    hu, roi, _ = body_phantom()
    sim = LowDoseSimulator(config(), SHAPE, PIXEL)
    seen: list[int] = []
    once = sim.repeated_scans(hu, 0.25, 5, torch.Generator().manual_seed(9), batch_size=5, progress=seen.append)
    stacked = sim(hu.expand(5, *SHAPE).contiguous(), 0.25, torch.Generator().manual_seed(9))
    assert seen == [5]
    assert torch.allclose(once, stacked, atol=1e-3)
    chunked = sim.repeated_scans(hu, 0.25, 5, rng, batch_size=2, progress=seen.append)
    assert seen == [5, 2, 2, 1] and chunked.shape == (5, *SHAPE)
    assert (chunked - hu)[:, roi].std() == pytest.approx(float((once - hu)[:, roi].std()), rel=0.15)
    with pytest.raises(ValueError, match="one slice"):
        sim.repeated_scans(hu.expand(2, *SHAPE), 0.25, 2)


def test_fixed_generator_is_deterministic() -> None:
    hu, _, _ = body_phantom()
    cfg = config()
    a = simulate_low_dose(hu, PIXEL, 0.25, cfg, torch.Generator().manual_seed(3))
    b = simulate_low_dose(hu, PIXEL, 0.25, cfg, torch.Generator().manual_seed(3))
    c = simulate_low_dose(hu, PIXEL, 0.25, cfg, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("dose", [0.0, -0.25, 1.5, float("nan"), True])
def test_bad_dose_raises_with_the_value(dose: float) -> None:
    with pytest.raises(ValueError, match=r"dose .*\(0, 1\].*" + repr(dose)):
        simulate_low_dose(torch.zeros(SHAPE), PIXEL, dose, config())


def test_shapes_dtypes_and_field_of_view(rng: torch.Generator) -> None:
    cfg = config()
    for shape in [SHAPE, (2, *SHAPE), (2, 1, *SHAPE)]:
        out = simulate_low_dose(torch.zeros(shape, dtype=torch.float64), PIXEL, 0.5, cfg, rng)
        assert out.shape == shape and out.dtype == torch.float64
    # 4.5 mm pixels: the image corners (305 mm from the centre) lie outside the 251 mm field of view
    big = torch.full(SHAPE, 500.0)
    out = simulate_low_dose(big, 4.5, 1.0, config(noise=False))
    assert out[0, 0] == -1000.0 and out[48, 48] == 500.0


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="source"):
        simulate_low_dose(torch.zeros(SHAPE), PIXEL, 0.5, config(), source="ldct")
    with pytest.raises(ValueError, match="NaN"):
        simulate_low_dose(torch.full(SHAPE, float("nan")), PIXEL, 0.5, config())
    with pytest.raises(ValueError, match="HU slices"):
        LowDoseSimulator(config(), SHAPE, PIXEL)(torch.zeros(3, 2, *SHAPE), 0.5)


def test_config_from_dict() -> None:
    cfg = SimulationConfig.from_dict({"geometry": "parallel", "i0": 200000, "filter_window": "shepp-logan"})
    assert cfg.i0 == 200000.0 and isinstance(cfg.i0, float) and cfg.make_geometry().kind == "parallel"
    assert SimulationConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match=r"simulation.n_view'.*did you mean 'n_views'"):
        SimulationConfig.from_dict({"n_view": 100})
    with pytest.raises(ConfigError, match=r"simulation\.i0"):
        SimulationConfig.from_dict({"i0": -5.0})
    with pytest.raises(ConfigError, match=r"simulation\.geometry"):
        SimulationConfig.from_dict({"geometry": "cone"})
    with pytest.raises(ConfigError, match="n_views"):
        SimulationConfig.from_dict({"n_views": 0})
