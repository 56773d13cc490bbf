"""The system operator: known line integrals, exact adjoint, FBP accuracy on a clean phantom."""

from __future__ import annotations

import pytest
import torch

from vagan.physics.attenuation import hu_to_mu, mu_to_hu
from vagan.physics.filters import WINDOWS, filter_response, window_response
from vagan.physics.geometry import FanBeamGeometry, ParallelBeamGeometry
from vagan.physics.projector import CTProjector

# A scaled-down Siemens-like fan (same distances, 4x coarser channels, 1/4 of the views): cheap
# and still a real equiangular fan of about 50 deg.
SMALL_FAN = FanBeamGeometry(n_detectors=184, detector_spacing_mm=4 * 1.2858, n_views=288)
SMALL_PARALLEL = ParallelBeamGeometry(n_views=180, n_detectors=130, detector_spacing_mm=2.8, arc_deg=180.0)
GEOMETRIES = {"fan": SMALL_FAN, "parallel": SMALL_PARALLEL}


def _centres(shape: tuple[int, int], pixel_mm: float) -> tuple[torch.Tensor, torch.Tensor]:
    h, w = shape
    ys = (torch.arange(h, dtype=torch.float64) - (h - 1) / 2) * pixel_mm
    xs = (torch.arange(w, dtype=torch.float64) - (w - 1) / 2) * pixel_mm
    return torch.meshgrid(xs, ys, indexing="xy")


def ellipse_phantom(shape: tuple[int, int], pixel_mm: float) -> tuple[torch.Tensor, torch.Tensor]:
    """HU image (water body 300x220 mm with fat, a vessel, a bone and a low-contrast lesion) and the
    mask of pixels farther than 3 pixels from every edge."""
    x, y = _centres(shape, pixel_mm)
    hu = torch.full(shape, -1000.0, dtype=torch.float64)

    def put(cx: float, cy: float, ax: float, ay: float, value: float) -> None:
        hu[((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 <= 1] = value

    put(0, 0, 150, 110, 0.0)  # water body
    put(-70, 10, 40, 30, -100.0)  # fat
    put(60, -30, 25, 25, 200.0)  # contrast vessel
    put(0, 70, 22, 18, 700.0)  # bone
    put(40, 40, 18, 18, 20.0)  # low-contrast lesion
    edges = torch.zeros(shape, dtype=torch.bool)
    edges[:, 1:] |= hu[:, 1:] != hu[:, :-1]
    edges[1:, :] |= hu[1:, :] != hu[:-1, :]
    near = torch.nn.functional.max_pool2d(edges[None, None].double(), 7, stride=1, padding=3)[0, 0] > 0
    body = ((x / 150) ** 2 + (y / 110) ** 2) <= 1
    return hu.float(), body & ~near


@pytest.mark.parametrize("kind", ["fan", "parallel"])
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-9), (torch.float32, 1e-3)])
def test_adjointness(kind: str, dtype: torch.dtype, tol: float, rng: torch.Generator) -> None:
    proj = CTProjector(GEOMETRIES[kind], (37, 31), 7.0)  # odd, non-square on purpose
    x = torch.rand(2, 1, 37, 31, generator=rng, dtype=dtype)
    y = torch.rand(2, *proj.sinogram_shape, generator=rng, dtype=dtype)
    lhs = (proj(x) * y).sum()
    rhs = (x * proj.adjoint(y)).sum()
    assert abs(lhs - rhs) <= tol * abs(lhs)


def test_autograd_of_forward_is_the_adjoint(rng: torch.Generator) -> None:
    proj = CTProjector(SMALL_PARALLEL, (24, 24), 8.0)
    x = torch.rand(1, 1, 24, 24, generator=rng, dtype=torch.float64, requires_grad=True)
    y = torch.rand(1, *proj.sinogram_shape, generator=rng, dtype=torch.float64)
    (proj(x) * y).sum().backward()
    assert torch.allclose(x.grad, proj.adjoint(y))
    assert torch.autograd.gradcheck(
        lambda t: proj(t), (x.detach()[..., :24, :24].clone().requires_grad_(),), eps=1e-6, atol=1e-6, fast_mode=True
    )


@pytest.mark.parametrize("kind", ["fan", "parallel"])
def test_line_integrals_of_a_disk(kind: str) -> None:
    """A uniform disk of radius r: every ray at distance s from the centre sees 2 sqrt(r^2 - s^2) mu."""
    geo = GEOMETRIES[kind]
    proj = CTProjector(geo, (96, 96), 3.5)
    x, y = _centres((96, 96), 3.5)
    radius, mu = 120.0, 0.02
    disk = ((x**2 + y**2) <= radius**2).float() * mu
    sino = proj(disk[None])[0]
    if kind == "fan":
        s = geo.source_isocenter_mm * torch.sin(geo.detector_coordinates())
    else:
        s = geo.detector_coordinates()
    expected = 2 * torch.sqrt((radius**2 - s**2).clamp(min=0)) * mu
    inner = s.abs() < radius - 10  # away from the rim, where pixelisation dominates
    error = (sino[:, inner] - expected[inner].float()).abs() / (2 * radius * mu)
    assert error.mean() < 0.01
    spread = (sino[:, inner] - sino[:, inner].mean(0)).abs().max()
    assert spread < 0.02 * (2 * radius * mu)  # a rotationally symmetric object looks the same from every view


def test_full_siemens_geometry_line_integral_and_water_value() -> None:
    proj = CTProjector(FanBeamGeometry(), (48, 48), 6.5)
    x, y = _centres((48, 48), 6.5)
    water = torch.where((x**2 + y**2) <= 140.0**2, 0.0, -1000.0).float()
    sino = proj(hu_to_mu(water)[None])
    centre = FanBeamGeometry().n_detectors // 2  # channels 367/368 straddle the centre
    assert sino[0, :, centre].mean().item() == pytest.approx(280 * 0.0192, rel=0.01)
    rec = mu_to_hu(proj.fbp(sino))[0, 0]
    assert rec[(x**2 + y**2) <= 120.0**2].mean().abs() < 3.0


@pytest.mark.parametrize("kind", ["fan", "parallel"])
@pytest.mark.parametrize("window", ["hann", "ram-lak"])
def test_fbp_of_a_clean_phantom(kind: str, window: str) -> None:
    shape, pixel = (112, 112), 3.0
    proj = CTProjector(GEOMETRIES[kind], shape, pixel)
    hu, interior = ellipse_phantom(shape, pixel)
    rec = mu_to_hu(proj.fbp(proj(hu_to_mu(hu)[None]), window=window))[0, 0]
    rmse = (rec - hu)[interior].pow(2).mean().sqrt()
    assert rmse <= 10.0
    water = interior & (hu == 0)
    assert rec[water].mean().abs() <= 3.0
    assert rec.shape == hu.shape


def test_batches_are_independent(rng: torch.Generator) -> None:
    proj = CTProjector(SMALL_FAN, (32, 32), 8.0, max_chunk_elements=50_000)  # many small chunks
    x = torch.rand(3, 32, 32, generator=rng)
    batch = proj(x)
    assert batch.shape == (3, 288, 184)
    assert torch.allclose(batch[1], proj(x[1:2])[0], atol=1e-5)
    assert torch.allclose(proj.fbp(batch)[2], proj.fbp(batch[2:3])[0], atol=1e-5)


def test_fov_mask_and_buffers() -> None:
    proj = CTProjector(SMALL_FAN, (64, 64), 10.0)
    mask = proj.fov_mask()
    assert mask[32, 32] and not mask[0, 0]
    assert proj.angles.shape == (288,) and "angles" in dict(proj.named_buffers())


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="image_shape"):
        CTProjector(SMALL_FAN, (1, 64), 1.0)
    with pytest.raises(ValueError, match="pixel_spacing_mm"):
        CTProjector(SMALL_FAN, (64, 64), 0.0)
    with pytest.raises(ValueError, match="source orbit"):
        CTProjector(SMALL_FAN, (512, 512), 3.0)
    proj = CTProjector(SMALL_PARALLEL, (16, 16), 5.0)
    with pytest.raises(ValueError, match="expected an image batch"):
        proj(torch.zeros(1, 16, 15))
    with pytest.raises(ValueError, match="expected a sinogram"):
        proj.fbp(torch.zeros(1, 10, 10))
    with pytest.raises(ValueError, match="window"):
        proj.fbp(torch.zeros(1, *proj.sinogram_shape), window="hanning")


@pytest.mark.parametrize("window", WINDOWS)
def test_filter_is_a_ramp(window: str) -> None:
    response = filter_response(64, 1.0, window)
    freqs = torch.fft.rfftfreq(128, dtype=torch.float64)
    middle = (freqs > 0.05) & (freqs < 0.2)
    ramp = response[middle] / (freqs[middle] * window_response(window, freqs[middle]))
    assert torch.allclose(ramp, torch.ones_like(ramp), atol=0.03)  # |f| / tau^2, apodised
    assert response[0].abs() < 0.05 * response[middle].max()  # next to nothing at DC
    if window in ("hann", "cosine"):
        assert response[-1].abs() < 1e-6


@pytest.mark.parametrize("kind", ["fan", "parallel"])
def test_zero_padding_does_not_change_projections(kind: str, rng: torch.Generator) -> None:
    """A non-square image and the same image centred in a larger square of air project alike."""
    small = torch.rand(1, 1, 37, 51, generator=rng, dtype=torch.float64)
    padded = torch.nn.functional.pad(small, (0, 0, 7, 7))  # 51 x 51, same centre
    a = CTProjector(GEOMETRIES[kind], (37, 51), 6.0)(small)
    b = CTProjector(GEOMETRIES[kind], (51, 51), 6.0)(padded)
    assert torch.allclose(a, b, atol=1e-9)
