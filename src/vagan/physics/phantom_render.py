"""Rendering of a phantom patient on a pixel grid: tissue labels, texture amplitudes and the slice painter.

:class:`_Slice` paints one axial section of a :class:`~vagan.physics.phantom_anatomy.PhantomPatient`
(body layers, organs, vessels, bone) onto a :class:`~vagan.physics.phantom_shapes.Canvas`.
"""

from __future__ import annotations

import math
from types import MappingProxyType

import numpy as np

from vagan.physics.phantom_anatomy import BowelLoop, PhantomPatient
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


def _render(patient: PhantomPatient, grid: Grid, z_mm: float) -> Canvas:
    canvas = _Slice(patient, grid, z_mm).render()
    np.maximum(canvas.hu, np.float32(-1000.0), out=canvas.hu)  # blending round-off must not undercut air
    return canvas
