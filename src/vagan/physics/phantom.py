"""A procedural, seeded 2-D/3-D abdomen phantom in HU: the embedded default data.

Image axes follow the radiological convention: columns run to the patient's left (x, mm), rows
run posterior (y, mm, anterior at the top), both centred on the isocentre; ``z`` (mm) runs
cranial. Anatomy is sized in mm, so changing the image size or pixel spacing keeps the body
physically sized (about 320-340 mm wide and 230-250 mm deep).

A :class:`PhantomPatient` holds one "patient's" random anatomy (body habitus, organ placement,
tissue HU, lesions, texture seed). :func:`make_phantom_slice` renders it at any ``z``; organs are
ellipsoid-like in z, so consecutive slices change smoothly, organs grow and shrink, and
spherical lesions appear and disappear. ``z = 0`` lies near the renal hila (L1-L2); the liver,
spleen and lung bases lie above, bowel loops and psoas muscles grow below. The anatomy is meant
for ``-130 <= z <= 90`` mm (lower lumbar spine to lung bases); beyond it, it is merely plausible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, overload

import numpy as np

from vagan.physics.phantom_shapes import (
    Canvas,
    Grid,
    Harmonics,
    Region,
    bounding_radius,
    capsule_region,
    capsule_sdf,
    ellipse_sdf,
    resample_field,
    smooth_field,
)

FIELD_OF_VIEW_MM = 358.4  # 512 px x 0.7 mm: the default reconstruction field
MIN_SIZE = 64

TISSUES: MappingProxyType[str, int] = MappingProxyType(
    {
        name: i
        for i, name in enumerate(
            (
                "air", "skin", "fat", "muscle", "liver", "spleen", "kidney_cortex", "kidney_medulla",
                "vessel", "cortical_bone", "trabecular_bone", "disc", "csf", "bowel_wall", "bowel_fluid",
                "gas", "stool", "lung", "pancreas", "gallbladder", "cartilage", "urine",
                "liver_lesion", "spleen_lesion",
            )
        )
    }
)
"""Label of each tissue class in the map returned with ``return_labels=True``."""

# Texture standard deviation (HU) of each tissue: smooth band-limited fields, not noise.
_TEXTURE_HU = {
    "skin": 4.0, "fat": 5.0, "muscle": 6.0, "liver": 4.0, "spleen": 4.0, "kidney": 6.0, "vessel": 3.0,
    "disc": 5.0, "bowel_wall": 5.0, "bowel_fluid": 3.0, "lung": 12.0, "pancreas": 9.0, "fluid": 2.0,
}

_LUT_SIZE = 4096
_TEXTURE_KNOT_MM = 4.0


# --------------------------------------------------------------------------------------------
# Anatomy parameters
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


class _Slice:
    """Paints one axial slice of a patient at height z onto a canvas."""

    def __init__(self, patient: PhantomPatient, grid: Grid, z: float) -> None:
        self.p, self.grid, self.z = patient, grid, z
        seed = patient.texture_seed
        fine = smooth_field(seed, 0, z, 1.0, _TEXTURE_KNOT_MM)
        coarse = smooth_field(seed, 1, z, 3.5, 2 * _TEXTURE_KNOT_MM)
        self.coarse = resample_field(coarse, grid)  # unit variance, ~5 mm blobs
        self.texture = 0.6 * resample_field(fine, grid) + 0.8 * self.coarse
        self.grain = resample_field(smooth_field(seed, 2, z, 0.8, _TEXTURE_KNOT_MM), grid)
        self.c = Canvas(grid, self.texture)
        self.T = TISSUES
        a = patient.aorta
        self.aorta_xy = (a.x + a.dxdz * (z - a.z), a.y + a.dydz * (z - a.z))

    # -- helpers ---------------------------------------------------------------------------
    def ellipse(self, cx: float, cy: float, ax: float, ay: float, angle: float = 0.0,
                harmonics: Harmonics = ()) -> tuple[Region, np.ndarray] | None:
        if min(ax, ay) <= 0.2:
            return None
        reg = self.grid.region(cx, cy, bounding_radius(ax, ay, harmonics))
        if reg is None:
            return None
        return reg, self.grid.soft(ellipse_sdf(reg, cx, cy, ax, ay, angle, harmonics))

    def tube(self, points: tuple[tuple[float, float], ...], radius: float) -> tuple[Region, np.ndarray] | None:
        reg = capsule_region(self.grid, points, radius)
        if reg is None or radius <= 0.2:
            return None
        return reg, self.grid.soft(capsule_sdf(reg, points, radius))

    def paint(self, shape: tuple[Region, np.ndarray] | None, hu: float | np.ndarray, tissue: str,
              texture: str | None = None, clip: np.ndarray | None = None) -> tuple[Region, np.ndarray] | None:
        """Paint a shape, multiplied by the full-image mask ``clip``; returns the shape as painted."""
        if shape is None:
            return None
        reg, m = shape
        if clip is not None:
            m = m * clip[reg.sl]
        self.c.paint(reg, m, hu, self.T[tissue], _TEXTURE_HU.get(texture or tissue, 0.0))
        return reg, m

    def bone(self, cx: float, cy: float, ax: float, ay: float, angle: float = 0.0, cortex: float = 1.5) -> None:
        """Cortical shell with a trabecular (grainy) core."""
        shape = self.ellipse(cx, cy, ax, ay, angle)
        if shape is None:
            return
        reg, m = shape
        hu = self.p.hu
        self.c.paint(reg, m, hu.cortical + 40.0 * self.grain[reg.sl], self.T["cortical_bone"])
        inner = self.ellipse(cx, cy, ax - cortex, ay - cortex, angle)
        if inner is not None:
            reg, m = inner
            self.c.paint(reg, m, hu.trabecular + 30.0 * self.grain[reg.sl], self.T["trabecular_bone"])

    # -- anatomy ---------------------------------------------------------------------------
    def render(self) -> Canvas:
        self.body_layers()
        self.psoas()
        for loop in self.p.bowel:
            self.bowel_loop(loop)
        self.bowel_loop(self.p.stomach, stomach=True)
        self.mesenteric_root()
        self.liver()
        self.spleen()
        self.pancreas()
        self.lungs()
        self.kidneys()
        self.great_vessels()
        self.spine()
        self.ribs()
        return self.c

    def body_layers(self) -> None:
        b, hu, g = self.p.body, self.p.hu, self.grid
        full = g.full()
        dx, dy = full.x - np.float32(b.cx), full.y - np.float32(b.cy)
        rho = np.sqrt(dx * dx + dy * dy)
        theta = np.arctan2(dy, dx)
        lut_theta = -math.pi + (np.arange(_LUT_SIZE) + 0.5) * (2 * math.pi / _LUT_SIZE)
        r_lut, fat_lut, mus_lut = (a.astype(np.float32) for a in b.profiles(lut_theta, self.z))
        idx = ((theta + np.float32(math.pi)) * np.float32(_LUT_SIZE / (2 * math.pi))).astype(np.int32) % _LUT_SIZE
        d = rho - r_lut[idx]
        self.c.paint(full, g.soft(d), hu.skin, self.T["skin"], _TEXTURE_HU["skin"])
        d += np.float32(b.skin_mm)
        self.c.paint(full, g.soft(d), hu.subcut_fat, self.T["fat"], _TEXTURE_HU["fat"])
        d += fat_lut[idx]
        self.c.paint(full, g.soft(d), hu.muscle, self.T["muscle"], _TEXTURE_HU["muscle"])
        d += mus_lut[idx]
        self.cavity = g.soft(d)
        self.c.paint(full, self.cavity, hu.fat, self.T["fat"], _TEXTURE_HU["fat"])
        self.cavity_inner = g.soft(d + np.float32(2.0))  # keeps bowel off the wall
        # organs clipped by the wall reach half an edge under it, so the blend leaves no dark seam
        self.cavity_wide = g.soft(d - np.float32(0.5 * g.edge_mm))
        self.d_cavity, self.theta = d, theta
        # retroperitoneal space around spine and great vessels, kept free of bowel and organs
        s = self.p.spine
        retro = self.ellipse(s.x + 5, s.y - 10, 48, 42)
        self.free = np.ones_like(d)
        if retro is not None:
            self.free[retro[0].sl] -= retro[1]
        self.bowel_clip = self.cavity_inner * self.free
        self.organ_clip = self.cavity_wide * self.free

    def psoas(self) -> None:
        s, p = self.p.spine, self.p
        r = min(5.0 + (p.psoas_start_z - self.z) * 0.14, 26.0)
        if r < 4.0:
            return
        for side in (1, -1):
            cx = s.x + side * (s.body_ax + 0.75 * r)
            self.paint(self.ellipse(cx, s.y - 0.35 * r, 0.9 * r, r, side * 15), p.hu.muscle, "muscle")

    def bowel_loop(self, loop: BowelLoop, stomach: bool = False) -> None:
        sec = loop.shape.section(self.z)
        if sec is None:
            return
        cx, cy, ax, ay = sec
        clip = self.cavity_inner if stomach else self.bowel_clip
        sh = loop.shape
        wall = self.paint(self.ellipse(cx, cy, ax, ay, sh.angle, sh.harmonics), self.p.hu.muscle - 5, "bowel_wall",
                           clip=clip)
        if wall is None:
            return
        inner = self.ellipse(cx, cy, ax - loop.wall_mm, ay - loop.wall_mm, sh.angle, sh.harmonics)
        if inner is None:
            return
        reg, m = inner
        m = m * clip[reg.sl]
        hu = self.p.hu
        if loop.content == "stool":
            self.c.paint(reg, m, hu.stool + 20.0 * self.coarse[reg.sl] + 8.0 * self.grain[reg.sl], self.T["stool"])
            bubbles = np.clip((self.coarse[reg.sl] - 0.9) / 0.25, 0.0, 1.0)
            self.c.paint(reg, m * bubbles, -1000.0, self.T["gas"])
        else:
            self.c.paint(reg, m, hu.bowel_fluid, self.T["bowel_fluid"], _TEXTURE_HU["bowel_fluid"])
        if loop.gas_fraction > 0:
            extent = max(ax, ay) - loop.wall_mm
            level = cy - extent + 2 * extent * loop.gas_fraction
            self.c.paint(reg, m * self.grid.soft(reg.y - np.float32(level)), -1000.0, self.T["gas"])

    def mesenteric_root(self) -> None:
        """Fat around the superior mesenteric vessels below their origin (clears bowel there)."""
        if self.z > self.p.sma_origin_z:
            return
        dy = min(10 + 0.25 * (self.p.sma_origin_z - self.z), 35)
        self.sma_xy = (self.aorta_xy[0] - 1, self.aorta_xy[1] - self.p.aorta.ax - dy)
        self.paint(self.ellipse(self.sma_xy[0] - 6, self.sma_xy[1], 17, 13), self.p.hu.fat, "fat")

    def liver(self) -> None:
        p, hu = self.p, self.p.hu
        host = np.zeros_like(self.cavity)
        for lobe in p.liver:
            sec = lobe.section(self.z)
            if sec is None:
                continue
            painted = self.paint(self.ellipse(*sec, lobe.angle, lobe.harmonics), hu.liver, "liver",
                                 clip=self.organ_clip)
            if painted is not None:
                reg, m = painted
                np.maximum(host[reg.sl], m, out=host[reg.sl])
        right = p.liver[0].section(self.z)
        if right is None:
            return
        self.lesions("liver", right, host)
        cx, cy, ax, ay = right
        t = math.radians(p.liver[0].angle)
        for v in p.hepatic_vessels:
            if not v.z_lo <= self.z <= v.z_hi:
                continue
            uu, vv = v.u + v.dudz * (self.z - v.z_lo), v.v + v.dvdz * (self.z - v.z_lo)
            x = cx + uu * ax * math.cos(t) - vv * ay * math.sin(t)
            y = cy + uu * ax * math.sin(t) + vv * ay * math.cos(t)
            self.paint(self.ellipse(x, y, v.radius, v.radius), hu.portal - 10, "vessel", clip=host)
        gb = p.gallbladder.section(self.z)
        if gb is not None:
            self.paint(self.ellipse(*gb, p.gallbladder.angle), 12.0, "gallbladder", "fluid", clip=self.cavity_wide)

    def lesions(self, organ: str, host_sec: tuple[float, float, float, float], host: np.ndarray) -> None:
        label = self.T[f"{organ}_lesion"]
        for les in self.p.lesions:
            r = les.radius_at(self.z)
            if les.organ != organ or r <= 0.3:
                continue
            shape = self.ellipse(host_sec[0] + les.dx, host_sec[1] + les.dy, r, r)
            if shape is not None:
                reg, m = shape
                self.c.add(reg, m * host[reg.sl], les.contrast_hu, label)

    def spleen(self) -> None:
        sp, hu = self.p.spleen, self.p.hu
        sec = sp.section(self.z)
        if sec is None:
            return
        painted = self.paint(self.ellipse(*sec, sp.angle, sp.harmonics), hu.spleen, "spleen", clip=self.organ_clip)
        if painted is None:
            return
        host = np.zeros_like(self.cavity)
        host[painted[0].sl] = painted[1]
        self.lesions("spleen", sec, host)

    def pancreas(self) -> None:
        p = self.p
        r = p.pancreas.section(self.z)
        if r is not None:
            self.paint(self.tube(p.pancreas.points, r), p.hu.pancreas, "pancreas")
        for vein in (p.splenic_vein, p.portal_vein):
            r = vein.section(self.z)
            if r is not None:
                self.paint(self.tube(vein.points, max(r, 2.0)), p.hu.portal, "vessel")

    def lungs(self) -> None:
        """Posterior costophrenic recesses: a band along the cavity wall that deepens cranially."""
        p = self.p
        depth = min((self.z - p.lung_start_z) * p.lung_growth, 80.0)
        if depth <= 1.0:
            return
        width = 0.35 + 0.01 * depth
        lung_depth = np.float32(depth) * _lung_profile(self.theta, width)
        m = self.cavity * self.grid.soft(-(self.d_cavity + lung_depth))
        full = self.grid.full()
        self.c.paint(full, m, p.hu.lung, self.T["lung"], _TEXTURE_HU["lung"])
        b = p.body
        for v in p.lung_vessels:
            t = math.radians(v.theta_deg + v.dtheta_dz * (self.z - p.lung_start_z))
            local = depth * float(_lung_profile(np.array([t], dtype=np.float32), width)[0])
            if local < 5.0:
                continue
            rho = b.cavity_radius(t, self.z) - v.depth_frac * local
            x, y = b.cx + rho * math.cos(t), b.cy + rho * math.sin(t)
            self.paint(self.ellipse(x, y, v.radius, v.radius), 40.0, "vessel", clip=m)

    def kidneys(self) -> None:
        hu = self.p.hu
        for k in self.p.kidneys:
            sec = k.section(self.z)
            if sec is None:
                continue
            cx, cy, ax, ay = sec
            self.paint(self.ellipse(cx, cy, ax + 4, ay + 4, k.angle), hu.fat, "fat")  # perirenal fat
            self.paint(self.ellipse(cx, cy, ax, ay, k.angle), hu.kidney_cortex, "kidney_cortex", "kidney")
            t = math.radians(k.angle)
            side = 1.0 if k.x > self.p.spine.x else -1.0
            hilum_phi = math.pi if side > 0 else 0.0
            for j in range(7):  # medullary pyramids, pointing at the sinus; none at the hilum
                phi = hilum_phi + math.radians(55 + j * 250 / 6)
                pu, pv = 0.55 * ax * math.cos(phi), 0.55 * ay * math.sin(phi)
                px, py = cx + pu * math.cos(t) - pv * math.sin(t), cy + pu * math.sin(t) + pv * math.cos(t)
                size = 0.42 * min(ax, ay)
                self.paint(self.ellipse(px, py, size, 0.55 * size, math.degrees(math.atan2(py - cy, px - cx))),
                           hu.kidney_medulla, "kidney_medulla", "kidney")
            mx, my = -side * math.cos(t), -side * math.sin(t)  # medial end of the long axis (hilum)
            s_hilum = 1.0 - abs(self.z - k.z) / (0.5 * k.hz)
            if s_hilum > 0:
                hx, hy = cx + 0.7 * ax * mx, cy + 0.7 * ax * my
                self.paint(self.ellipse(hx, hy, 0.55 * ax * s_hilum, 0.4 * ay * s_hilum, k.angle), hu.fat, "fat")
                self.paint(self.ellipse(hx - 0.15 * ax * mx, hy - 0.15 * ax * my, 0.3 * ax * s_hilum,
                                        0.2 * ay * s_hilum, k.angle), 10.0, "urine", "fluid")
            if abs(self.z - k.z) < 7:  # renal vein to the IVC (the left one passes in front of the aorta)
                (ox, oy), ivc = self.aorta_xy, self.p.ivc
                hilum = (cx + ax * mx, cy + ax * my)
                pts = (hilum, (ox, oy - self.p.aorta.ax - 5.0), (ivc.x, ivc.y)) if side > 0 else (hilum, (ivc.x, ivc.y))
                self.paint(self.tube(pts, 4.5), hu.ivc, "vessel")

    def great_vessels(self) -> None:
        p, hu, z = self.p, self.p.hu, self.z
        a, s = p.aorta, p.spine
        ax_, ay_ = self.aorta_xy
        if z > 5:  # diaphragmatic crura hugging the aorta
            w = min(2.5 + 0.05 * (z - 5), 5.0)
            for side in (1, -1):
                pts = ((s.x + side * 0.6 * s.body_ax, s.y - 0.6 * s.body_ay), (ax_ + side * (a.ax + w + 1), ay_),
                       (ax_ + side * 4.0, ay_ - a.ax - 8.0))
                self.paint(self.tube(pts, w), hu.muscle, "muscle")
        if z > p.aortic_bifurcation_z:
            self.paint(self.ellipse(ax_, ay_, a.ax, a.ay), hu.aorta, "vessel", "vessel")
        else:
            off = min(4 + 0.4 * (p.aortic_bifurcation_z - z), 40)
            for side in (1, -1):  # common iliac arteries
                iliac = self.ellipse(ax_ - 4 + side * off, ay_, 0.65 * a.ax, 0.65 * a.ax)
                self.paint(iliac, hu.aorta, "vessel", "vessel")
        self.paint(self.ellipse(p.ivc.x, p.ivc.y, p.ivc.ax, p.ivc.ay, p.ivc.angle), hu.ivc, "vessel", "vessel")
        if z <= p.sma_origin_z:
            x, y = self.sma_xy
            self.paint(self.ellipse(x, y, 3.5, 3.5), hu.aorta, "vessel")
            self.paint(self.ellipse(x - 12, y - 1, 5.5, 5.0), hu.portal, "vessel")

    def spine(self) -> None:
        s, hu = self.p.spine, self.p.hu
        height = s.period_mm - s.disc_mm
        phase = (self.z - s.phase_mm) % s.period_mm
        to_end = min(phase, height - phase)  # mm to the nearest end plate (negative: disc)
        self.paint(self.ellipse(s.x, s.y, s.body_ax, s.body_ay), 90.0, "disc")
        bone = float(np.clip(0.5 + to_end / 1.0, 0.0, 1.0))
        if bone > 0:
            core = float(np.clip(to_end / 1.5, 0.0, 1.0))  # end plates are compact bone
            shape = self.ellipse(s.x, s.y, s.body_ax, s.body_ay)
            if shape is not None:
                reg, m = shape
                self.c.paint(reg, m * bone, hu.cortical + 40.0 * self.grain[reg.sl], self.T["cortical_bone"])
                inner = self.ellipse(s.x, s.y, s.body_ax - s.cortex_mm, s.body_ay - s.cortex_mm)
                if inner is not None and core > 0:
                    reg, m = inner
                    self.c.paint(reg, m * core * bone, hu.trabecular + 30.0 * self.grain[reg.sl],
                                 self.T["trabecular_bone"])
        cy = s.y + s.body_ay + s.canal_radius + 1.0
        f = phase / s.period_mm
        if 0.1 < f < 0.75:  # pedicles and laminae ring the canal
            self.bone(s.x, cy + 1.5, s.canal_radius + 6.5, s.canal_radius + 6.0, cortex=1.5)
        else:  # facet joints at the disc level
            for side in (1, -1):
                self.bone(s.x + side * (s.canal_radius + 4), cy + 5, 5.0, 7.0, side * 30, cortex=1.2)
        if 0.25 < f < 0.55:
            for side in (1, -1):
                self.bone(s.x + side * (s.body_ax + 8), cy - 4, 16.0, 4.5, side * 12, cortex=1.2)
        if 0.35 < f < 0.95:
            self.bone(s.x, cy + s.canal_radius + 20, 4.0, 17.0, cortex=1.2)
        self.paint(self.ellipse(s.x, cy, s.canal_radius, 0.85 * s.canal_radius), 15.0, "csf", "fluid")

    def ribs(self) -> None:
        b = self.p.body
        for rib, cartilage in [(r, False) for r in self.p.ribs] + [(c, True) for c in self.p.cartilages]:
            if not rib.z_lo <= self.z <= rib.z_hi:
                continue
            taper = min(1.0, (self.z - rib.z_lo) / 4.0, (rib.z_hi - self.z) / 4.0)
            t = math.radians(rib.theta_deg + rib.slope_deg_per_mm * (self.z - rib.z_lo))
            rho = b.cavity_radius(t, self.z) + rib.depth_mm
            x, y = b.cx + rho * math.cos(t), b.cy + rho * math.sin(t)
            ax, ay = rib.ax * (0.5 + 0.5 * taper), rib.ay * (0.5 + 0.5 * taper)
            angle = math.degrees(t) + 90.0
            if cartilage:
                shape = self.ellipse(x, y, ax, ay, angle)
                if shape is not None:
                    self.paint(shape, 130.0 + 25.0 * self.grain[shape[0].sl], "cartilage")
            else:
                self.bone(x, y, ax, ay, angle, cortex=1.3)


def _lung_profile(theta: np.ndarray, width: float) -> np.ndarray:
    """Relative depth of the lung bases against the wall: two posterolateral lobes (angles wrapped)."""
    out = np.zeros(theta.shape, dtype=np.float32)
    for centre in (math.pi / 2 + 0.8, math.pi / 2 - 0.8):
        diff = (theta - np.float32(centre) + np.float32(math.pi)) % np.float32(2 * math.pi) - np.float32(math.pi)
        out += np.exp(-0.5 * (diff / np.float32(width)) ** 2)
    return out


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < MIN_SIZE:
        raise ValueError(f"phantom size must be an integer >= {MIN_SIZE} pixels, got {size!r}; try 256 or 512")
    return int(size)


def _check_grid(size: int, pixel_spacing_mm: float) -> Grid:
    size = _check_size(size)
    try:
        spacing = float(pixel_spacing_mm)
    except (TypeError, ValueError):
        spacing = math.nan
    if not (math.isfinite(spacing) and spacing > 0):
        raise ValueError(
            f"pixel_spacing_mm must be a finite number > 0, got {pixel_spacing_mm!r}; "
            f"e.g. {FIELD_OF_VIEW_MM / size:.2f} mm fits the default {FIELD_OF_VIEW_MM} mm field at {size} px"
        )
    return Grid(size, spacing, edge_mm=math.hypot(spacing, 0.6))


def _render(patient: PhantomPatient, grid: Grid, z_mm: float) -> Canvas:
    canvas = _Slice(patient, grid, z_mm).render()
    np.maximum(canvas.hu, np.float32(-1000.0), out=canvas.hu)  # blending round-off must not undercut air
    return canvas


@overload
def make_phantom_slice(size: int, pixel_spacing_mm: float, rng: np.random.Generator | None, z_mm: float = ...,
                       patient: PhantomPatient | None = ..., *, return_labels: Literal[False] = ...) -> np.ndarray: ...
@overload
def make_phantom_slice(size: int, pixel_spacing_mm: float, rng: np.random.Generator | None, z_mm: float = ...,
                       patient: PhantomPatient | None = ..., *,
                       return_labels: Literal[True]) -> tuple[np.ndarray, np.ndarray]: ...


def make_phantom_slice(
    size: int,
    pixel_spacing_mm: float,
    rng: np.random.Generator | None,
    z_mm: float = 0.0,
    patient: PhantomPatient | None = None,
    *,
    return_labels: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """One axial abdomen slice in HU, ``(size, size)`` float32.

    Args:
        size: pixels per side (>= 64).
        pixel_spacing_mm: pixel size in mm (0.7 mm at 512 px covers the default 358.4 mm field).
        rng: draws the patient when ``patient`` is None; unused otherwise (may then be None).
        z_mm: height of the slice (cranial positive; 0 is near the renal hila).
        patient: the anatomy to render; by default a new one drawn from ``rng``.
        return_labels: also return a ``uint8`` label map with the values of :data:`TISSUES`.

    >>> hu = make_phantom_slice(64, 5.6, np.random.default_rng(0))
    >>> hu.shape, hu.dtype.name, bool(hu.min() >= -1000)
    ((64, 64), 'float32', True)
    """
    grid = _check_grid(size, pixel_spacing_mm)
    if not math.isfinite(z_mm):
        raise ValueError(f"z_mm must be a finite height in mm, got {z_mm!r}")
    if patient is None:
        if rng is None:
            raise ValueError("make_phantom_slice needs an rng (numpy Generator) or a patient")
        patient = PhantomPatient.random(rng)
    canvas = _render(patient, grid, float(z_mm))
    return (canvas.hu, canvas.labels) if return_labels else canvas.hu


def slice_positions(n_slices: int, slice_spacing_mm: float = 1.0, z_center_mm: float = 0.0) -> np.ndarray:
    """Heights (mm) of the slices of :func:`make_phantom_volume`: contiguous, centred, increasing."""
    if isinstance(n_slices, bool) or not isinstance(n_slices, (int, np.integer)) or n_slices < 1:
        raise ValueError(f"n_slices must be an integer >= 1, got {n_slices!r}")
    if not (math.isfinite(slice_spacing_mm) and slice_spacing_mm > 0):
        raise ValueError(f"slice_spacing_mm must be a finite number > 0, got {slice_spacing_mm!r}")
    return z_center_mm + (np.arange(n_slices) - (n_slices - 1) / 2) * slice_spacing_mm


def make_phantom_volume(
    n_slices: int,
    size: int = 512,
    pixel_spacing_mm: float | None = None,
    slice_spacing_mm: float = 1.0,
    seed: int = 0,
    *,
    z_center_mm: float = 0.0,
    patient: PhantomPatient | None = None,
) -> np.ndarray:
    """``n_slices`` contiguous slices of one patient, ``(Z, H, W)`` float32 HU, z increasing.

    ``pixel_spacing_mm=None`` fits the default 358.4 mm field (0.7 mm at 512 px). Slices lie at
    :func:`slice_positions`; the patient is ``PhantomPatient.random(default_rng(seed))`` unless given.
    """
    size = _check_size(size)
    grid = _check_grid(size, FIELD_OF_VIEW_MM / size if pixel_spacing_mm is None else pixel_spacing_mm)
    zs = slice_positions(n_slices, slice_spacing_mm, z_center_mm)
    if patient is None:
        patient = PhantomPatient.random(np.random.default_rng(seed))
    out = np.empty((len(zs), grid.size, grid.size), dtype=np.float32)
    for k, z in enumerate(zs):
        out[k] = _render(patient, grid, float(z)).hu
    return out
