"""Anatomy of the abdomen phantom: frozen organ and shape parameters (mm) and the random patient.

Coordinates follow :mod:`vagan.physics.phantom`: x to the patient's left, y posterior, z cranial, in mm
from the isocentre. Organs are ellipsoid-like in z, so consecutive slices change smoothly, organs grow and
shrink, and spherical lesions appear and disappear. ``z = 0`` lies near the renal hila (L1-L2); the liver,
spleen and lung bases lie above, bowel loops and psoas muscles grow below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from vagan.physics.phantom_shapes import Harmonics


@dataclass(frozen=True)
class Ellipsoid:
    """An organ whose axial sections are ellipses that shrink towards the ends of its z extent.

    Section scale at height z is ``(1 - |t|^p)^(1/p)`` with ``t = (z - z0) / hz``: ``p = 2`` is an
    ellipsoid, larger ``p`` a flatter-ended body. The centre drifts by ``(dxdz, dydz)`` per mm.
    """

    x: float
    y: float
    z: float
    ax: float
    ay: float
    hz: float
    angle: float = 0.0
    dxdz: float = 0.0
    dydz: float = 0.0
    power: float = 2.0
    harmonics: Harmonics = ()

    def section(self, z: float) -> tuple[float, float, float, float] | None:
        """``(cx, cy, ax, ay)`` in mm at height ``z``, or None outside the organ."""
        t = abs(z - self.z) / self.hz
        if t >= 1.0:
            return None
        s = (1.0 - t**self.power) ** (1.0 / self.power)
        dz = z - self.z
        return self.x + self.dxdz * dz, self.y + self.dydz * dz, self.ax * s, self.ay * s


@dataclass(frozen=True)
class BowelLoop:
    """A bowel segment (ellipsoid) with wall, content, and gas floating anteriorly."""

    shape: Ellipsoid
    content: Literal["fluid", "stool"]
    gas_fraction: float  # fraction of the lumen depth (from the anterior side) holding gas
    wall_mm: float = 2.5


@dataclass(frozen=True)
class Tube:
    """A tubular structure lying in the axial plane along a polyline (pancreas, vessels)."""

    points: tuple[tuple[float, float], ...]
    radius: float
    z: float
    hz: float
    power: float = 4.0

    def section(self, z: float) -> float | None:
        t = abs(z - self.z) / self.hz
        if t >= 1.0:
            return None
        return self.radius * (1.0 - t**self.power) ** (1.0 / self.power)


@dataclass(frozen=True)
class Rib:
    """A rib (or costal cartilage) crossing the slice just outside the peritoneal cavity."""

    theta_deg: float  # polar angle about the body centre at z_lo (0 = patient's left, 90 = posterior)
    slope_deg_per_mm: float
    z_lo: float
    z_hi: float
    depth_mm: float  # radial position outside the cavity wall
    ax: float
    ay: float


@dataclass(frozen=True)
class InnerVessel:
    """A vessel inside an organ, placed in the organ's normalised frame (u, v in [-1, 1])."""

    u: float
    v: float
    dudz: float
    dvdz: float
    z_lo: float
    z_hi: float
    radius: float


@dataclass(frozen=True)
class LungVessel:
    """A pulmonary vessel in the lung base: polar angle and fractional depth inside the lung band."""

    theta_deg: float
    depth_frac: float
    dtheta_dz: float
    radius: float


@dataclass(frozen=True)
class Lesion:
    """A spherical low-contrast lesion in the liver or spleen."""

    organ: Literal["liver", "spleen"]
    dx: float  # offset (mm) from the host's section centre
    dy: float
    z: float
    diameter_mm: float
    contrast_hu: float  # HU added to the host organ (negative: hypodense)

    def radius_at(self, z: float) -> float:
        r = self.diameter_mm / 2
        return math.sqrt(max(r * r - (z - self.z) ** 2, 0.0))


@dataclass(frozen=True)
class Body:
    """The body outline (super-ellipse with a flatter back and smooth irregularity) and its layers."""

    cx: float
    cy: float
    half_width_mm: float
    half_ap_mm: float
    exponent_anterior: float
    exponent_posterior: float
    outline: Harmonics
    groove_mm: float  # midline dip over the spinous processes
    size_slope_per_mm: float
    skin_mm: float
    fat_mm: float
    fat_outline: Harmonics
    muscle_mm: float
    paraspinal_mm: float  # muscle depth behind the vertebral body centre

    def profiles(self, theta: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Outer radius, fat and muscle thickness (mm) at polar angles ``theta`` (rad, 0 = +x)."""
        c, s = np.abs(np.cos(theta)), np.sin(theta)
        p = np.where(s > 0, self.exponent_posterior, self.exponent_anterior)
        r = ((c / self.half_width_mm) ** p + (np.abs(s) / self.half_ap_mm) ** p) ** (-1.0 / p)
        r = r * (1.0 + _fourier(theta, self.outline)) * (1.0 + self.size_slope_per_mm * float(np.clip(z, -100, 100)))
        r -= self.groove_mm * np.exp(-0.5 * ((theta - math.pi / 2) / 0.08) ** 2)
        fat = self.fat_mm * (0.78 - 0.33 * s) * (1.0 + _fourier(theta, self.fat_outline))
        post = np.exp(-0.5 * ((theta - math.pi / 2) / 0.55) ** 2)
        rectus = np.exp(-0.5 * ((theta + math.pi / 2) / 0.22) ** 2) - np.exp(-0.5 * ((theta + math.pi / 2) / 0.03) ** 2)
        muscle = self.muscle_mm + (self.paraspinal_mm - self.muscle_mm) * post + 4.0 * rectus
        return r, fat, muscle

    def cavity_radius(self, theta: float, z: float) -> float:
        r, fat, mus = self.profiles(np.array([theta]), z)
        return float(r[0] - self.skin_mm - fat[0] - mus[0])


@dataclass(frozen=True)
class Spine:
    """Lumbar vertebrae: body (cortical shell, trabecular core) or disc, arch, processes, canal."""

    x: float
    y: float
    body_ax: float
    body_ay: float
    canal_radius: float
    period_mm: float
    disc_mm: float
    phase_mm: float
    cortex_mm: float


@dataclass(frozen=True)
class TissueHU:
    """One patient's tissue values in HU (contrast-enhanced, portal-venous-like phase)."""

    subcut_fat: float
    fat: float
    skin: float
    muscle: float
    liver: float
    spleen: float
    kidney_cortex: float
    kidney_medulla: float
    aorta: float
    ivc: float
    portal: float
    cortical: float
    trabecular: float
    pancreas: float
    bowel_fluid: float
    stool: float
    lung: float


@dataclass(frozen=True)
class PhantomPatient:
    """All random anatomy of one phantom "patient"; slices of one patient are consistent."""

    texture_seed: int
    body: Body
    hu: TissueHU
    spine: Spine
    ribs: tuple[Rib, ...]
    cartilages: tuple[Rib, ...]
    liver: tuple[Ellipsoid, ...]  # right lobe first (its frame hosts lesions and vessels)
    spleen: Ellipsoid
    kidneys: tuple[Ellipsoid, Ellipsoid]  # left (x > 0), right
    stomach: BowelLoop
    gallbladder: Ellipsoid
    pancreas: Tube
    portal_vein: Tube
    splenic_vein: Tube
    aorta: Ellipsoid
    ivc: Ellipsoid
    aortic_bifurcation_z: float
    sma_origin_z: float
    psoas_start_z: float
    lung_start_z: float
    lung_growth: float
    hepatic_vessels: tuple[InnerVessel, ...]
    lung_vessels: tuple[LungVessel, ...]
    bowel: tuple[BowelLoop, ...]
    lesions: tuple[Lesion, ...]

    @classmethod
    def random(cls, rng: np.random.Generator) -> PhantomPatient:
        """Draw a patient: habitus, organ placement, tissue HU and 1-8 lesions."""
        return _random_patient(rng)


def _fourier(theta: np.ndarray, harmonics: Harmonics) -> np.ndarray:
    out = np.zeros_like(theta, dtype=np.float64)
    for k, a, b in harmonics:
        out += a * np.cos(k * theta) + b * np.sin(k * theta)
    return out


def _harmonics(rng: np.random.Generator, amps: dict[int, float]) -> Harmonics:
    return tuple((k, float(rng.uniform(-a, a)), float(rng.uniform(-a, a))) for k, a in amps.items())


def _random_patient(rng: np.random.Generator) -> PhantomPatient:
    def u(lo: float, hi: float) -> float:
        return float(rng.uniform(lo, hi))

    fat_mm = u(12.0, 32.0)
    body = Body(
        cx=u(-4, 4), cy=u(-4, 6), half_width_mm=u(160, 170), half_ap_mm=u(114, 126),
        exponent_anterior=u(2.0, 2.3), exponent_posterior=u(2.6, 3.2),
        outline=_harmonics(rng, {2: 0.01, 3: 0.01, 4: 0.008, 5: 0.006, 6: 0.005}),
        groove_mm=u(2, 5), size_slope_per_mm=u(-1.5e-4, 1.5e-4), skin_mm=u(1.5, 2.2), fat_mm=fat_mm,
        fat_outline=_harmonics(rng, {1: 0.1, 2: 0.2, 3: 0.12, 4: 0.1, 5: 0.06}),
        muscle_mm=u(8, 12), paraspinal_mm=u(50, 60),
    )
    bx, by = body.cx, body.cy
    ca = body.half_width_mm - body.skin_mm - 0.78 * fat_mm - body.muscle_mm  # cavity half-width
    cb = body.half_ap_mm - body.skin_mm - 1.1 * fat_mm - body.muscle_mm  # cavity anterior depth
    r_post, fat_post, mus_post = (float(v[0]) for v in body.profiles(np.array([math.pi / 2]), 0.0))
    yv = by + r_post - body.skin_mm - fat_post - mus_post  # vertebral body centre, on the cavity wall

    vbx, vby = u(20, 25), u(15, 18)
    spine = Spine(
        x=bx, y=yv, body_ax=vbx, body_ay=vby, canal_radius=u(7, 9), period_mm=u(32, 36), disc_mm=u(7, 10),
        phase_mm=u(0, 36), cortex_mm=u(1.4, 2.0),
    )
    tissue = TissueHU(
        subcut_fat=u(-100, -82), fat=u(-105, -88), skin=u(30, 50), muscle=u(42, 58), liver=u(52, 68),
        spleen=u(44, 56), kidney_cortex=u(140, 175), kidney_medulla=u(95, 120), aorta=u(170, 250),
        ivc=u(120, 165), portal=u(150, 200), cortical=u(1000, 1250), trabecular=u(200, 300),
        pancreas=u(35, 50), bowel_fluid=u(5, 25), stool=u(-20, 30), lung=u(-870, -830),
    )

    ao_r = u(9, 12.5)
    aorta = Ellipsoid(bx + u(8, 16), yv - vby - ao_r - u(1, 4), 0.0, ao_r, ao_r, 1e4, dydz=u(-0.03, 0.03))
    ivc = Ellipsoid(bx - u(20, 28), yv - vby - u(8, 14), 0.0, u(11, 15), u(8, 11), 1e4, angle=u(0, 25))

    kz = u(-10, 10)
    kidneys = (
        Ellipsoid(bx + u(64, 76), yv + u(-8, 4), kz, u(26, 31), u(18, 23), u(50, 60), angle=u(20, 40),
                  dxdz=u(-0.1, 0.0), power=2.2),
        Ellipsoid(bx - u(62, 74), yv + u(-6, 6), kz - u(5, 20), u(26, 31), u(18, 23), u(50, 60), angle=-u(20, 40),
                  dxdz=u(0.0, 0.1), power=2.2),
    )
    liver = (
        Ellipsoid(bx - 0.40 * ca + u(-8, 8), by - 0.12 * cb + u(-8, 8), u(50, 65), 0.72 * ca, 0.85 * cb, u(95, 110),
                  angle=u(-15, 5), dxdz=0.2, dydz=u(-0.05, 0.05), power=2.2,
                  harmonics=_harmonics(rng, {2: 0.05, 3: 0.04, 4: 0.02})),
        Ellipsoid(bx + 0.12 * ca, by - 0.55 * cb, u(45, 60), 0.45 * ca, 0.32 * cb, u(40, 55), angle=u(-20, 0),
                  harmonics=_harmonics(rng, {2: 0.05, 3: 0.04})),
    )
    spleen = Ellipsoid(bx + 0.80 * ca, by + 0.30 * cb, u(30, 45), u(20, 26), u(45, 60), u(45, 60),
                       angle=-50 + u(-10, 10), dydz=u(-0.1, 0.1), power=2.2,
                       harmonics=_harmonics(rng, {2: 0.06, 3: 0.06}))
    stomach = BowelLoop(
        Ellipsoid(bx + 0.32 * ca, by - 0.38 * cb, u(40, 55), u(35, 50), u(25, 35), u(45, 60), angle=u(10, 35),
                  dxdz=u(-0.2, 0.0), harmonics=_harmonics(rng, {2: 0.05, 3: 0.04})),
        content="fluid", gas_fraction=u(0.15, 0.5), wall_mm=u(3.5, 5.0),
    )
    gallbladder = Ellipsoid(bx - 0.30 * ca, by - 0.45 * cb, u(-20, 0), u(11, 16), u(16, 24), u(30, 45),
                            angle=u(-50, -20))
    axo, ayo = aorta.x, aorta.y
    pz = u(0, 15)
    pancreas = Tube(
        ((axo - 38, ayo - 25), (axo - 8, ayo - 40), (axo + 35, ayo - 33), (bx + 0.6 * ca, ayo - 5)),
        u(9, 12), pz, u(25, 35),
    )
    splenic_vein = Tube(
        ((axo - 12, ayo - 32), (axo + 10, ayo - 30), (axo + 35, ayo - 24), (axo + 55, ayo - 15),
         (bx + 0.6 * ca, ayo + 3)), u(3.0, 4.0), pz + 8, 11,
    )
    portal_vein = Tube(((axo - 14, ayo - 35), (axo - 30, ayo - 45), (axo - 48, ayo - 50)), u(5.5, 7), u(20, 30),
                       u(14, 20))

    ribs: list[Rib] = []
    for side in (1, -1):
        for i in range(7):
            th = -55 + i * 19 + u(-5, 5)
            z_lo = 70 - i * 14 + u(-8, 8)
            ribs.append(Rib(th if side > 0 else 180 - th, side * u(0.1, 0.25), z_lo, z_lo + u(60, 110),
                            u(2, 5), u(6, 7.5), u(3.5, 4.5)))
    cartilages = tuple(
        Rib(th if side > 0 else 180 - th, side * u(0.1, 0.2), u(35, 60), 200.0, u(1, 4), u(7, 10), u(4, 5))
        for side in (1, -1) for th in (-120 + u(-5, 5), -100 + u(-5, 5), -80 + u(-5, 5))
    )
    hepatic = tuple(
        InnerVessel(u(-0.6, 0.6), u(-0.6, 0.6), u(-0.006, 0.006), u(-0.006, 0.006), zl, zl + u(20, 80), u(1.5, 5))
        for zl in rng.uniform(-40, 90, size=int(rng.integers(14, 22)))
    )
    lung_vessels = tuple(
        LungVessel(90 + s * u(10, 90), u(0.15, 0.85), u(-0.3, 0.3), u(0.6, 2.0))
        for s in rng.choice([-1, 1], size=40)
    )

    bowel: list[BowelLoop] = []
    for _ in range(int(rng.integers(110, 140))):  # small bowel, packed in the lower abdomen
        r = u(9, 17)
        zl = -150 + 175 * float(rng.uniform()) ** 0.7
        deep = min(max((20 - zl) / 80, 0.0), 1.0)  # lower down, loops also fill the flanks and pelvis
        bowel.append(BowelLoop(
            Ellipsoid(bx + u(-0.6 - 0.25 * deep, 0.6 + 0.25 * deep) * ca, by + u(-0.9 * cb, 0.1 * cb + 0.3 * deep * cb),
                      zl, r, r * u(1.0, 1.8), u(12, 30), angle=u(0, 180), dxdz=u(-0.3, 0.3), dydz=u(-0.3, 0.3)),
            content="fluid", gas_fraction=float(rng.choice([0.0, 0.0, 0.0, 0.0, u(0.1, 0.6), u(0.1, 0.6), 1.0])),
            wall_mm=u(1.8, 3.0),
        ))
    for side, z_top in ((-1, u(5, 20)), (1, u(30, 50))):  # ascending / descending colon
        r = u(18, 25)
        bowel.append(BowelLoop(
            Ellipsoid(bx + side * (ca - r - u(0, 8)), by + u(-0.2, 0.2) * cb, z_top - 90, r, r * u(0.8, 1.1), 90,
                      dxdz=u(-0.05, 0.05), power=8),
            content="stool", gas_fraction=u(0.0, 0.5),
        ))
    tz = u(-5, 20)  # transverse colon: a chain of segments across the anterior abdomen
    for f in np.linspace(-0.6, 0.6, 5):
        r = u(17, 23)
        bowel.append(BowelLoop(
            Ellipsoid(bx + f * ca, by - (0.72 - 0.3 * f * f) * cb, tz + u(-5, 5), r * 1.5, r, u(18, 25),
                      angle=-25 * f + u(-10, 10)),
            content="stool", gas_fraction=u(0.2, 0.7),
        ))

    lesions: list[Lesion] = []
    for organ, host, n in (("liver", liver[0], int(rng.integers(1, 6))), ("spleen", spleen, int(rng.integers(0, 3)))):
        for _ in range(n):
            zl = host.z + u(-0.75, 0.4) * host.hz
            sec = host.section(zl)
            if sec is None:  # cannot happen: |zl - z| < hz
                continue
            _, _, sax, say = sec
            uu, vv = u(-0.5, 0.5), u(-0.6, 0.3)
            t = math.radians(host.angle)
            dx = uu * sax * math.cos(t) - vv * say * math.sin(t)
            dy = uu * sax * math.sin(t) + vv * say * math.cos(t)
            contrast = u(10, 30) * (-1.0 if rng.uniform() < 0.75 else 1.0)
            lesions.append(Lesion(organ, dx, dy, zl, u(3, 20), contrast))

    return PhantomPatient(
        texture_seed=int(rng.integers(0, 2**31 - 1)), body=body, hu=tissue, spine=spine, ribs=tuple(ribs),
        cartilages=cartilages, liver=liver, spleen=spleen, kidneys=kidneys, stomach=stomach,
        gallbladder=gallbladder, pancreas=pancreas, portal_vein=portal_vein, splenic_vein=splenic_vein,
        aorta=aorta, ivc=ivc, aortic_bifurcation_z=u(-130, -100), sma_origin_z=u(0, 15),
        psoas_start_z=u(20, 45), lung_start_z=u(25, 40), lung_growth=u(0.6, 1.0), hepatic_vessels=hepatic,
        lung_vessels=lung_vessels, bowel=tuple(bowel), lesions=tuple(lesions),
    )
