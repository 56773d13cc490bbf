"""Training patches and evaluation slices from paired LDCT/NDCT slices.

Patch positions (slice, row, column, augmentation, pixel size) are all drawn once at construction
from a seed, so a dataset is a fixed list: the same seed gives the same patches on every machine and
an interrupted run resumes on exactly the same data.

Augmentations keep HU intact: the 8 flips and 90-degree rotations, and (``resample_mm``) resampling
each patch to a pixel size drawn log-uniformly from a range, as if the scanner had reconstructed a
smaller or larger field of view. Resampling is bilinear with an anti-aliasing filter when it shrinks,
a convex combination of pixels: a uniform region keeps its HU, and the noise keeps its power spectrum
in physical units (line pairs per mm) up to the new Nyquist frequency, as a reconstruction at that
pixel size would have it (docs/design.md, "Training across scanners").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from vagan.data.attention_target import AttentionMode, attention_target
from vagan.io.windowing import BODY_THRESHOLD_HU, NETWORK_RANGE, HURange

N_AUGMENTATIONS = 8  # identity, 3 rotations by 90 degrees, and the same four flipped


@dataclass(frozen=True)
class SlicePair:
    """One LDCT slice and its NDCT partner, in HU, float32 ``(H, W)``."""

    ldct: np.ndarray
    ndct: np.ndarray
    patient: str = ""
    index: int = 0
    pixel_mm: float | None = None  # in-plane pixel size (rows), when the source says
    noise: np.ndarray | None = None  # unit noise images (2, 2, H, W) float16 of vagan.data.noise_pool, if any

    def __post_init__(self) -> None:
        if self.ldct.shape != self.ndct.shape or self.ldct.ndim != 2:
            raise ValueError(
                f"slice pair {self.patient}#{self.index}: LDCT {self.ldct.shape} and NDCT {self.ndct.shape} "
                "must be equal 2-D shapes"
            )


def augment(image: torch.Tensor, code: int) -> torch.Tensor:
    """Apply one of the 8 dihedral transforms (rot90 by ``code % 4``, flipped if ``code >= 4``)."""
    out = torch.rot90(image, k=code % 4, dims=(-2, -1))
    return torch.flip(out, dims=(-1,)) if code >= 4 else out


def _to_unit(hu: np.ndarray, hu_range: HURange) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(hu_range.to_unit(hu), dtype=np.float32))


class PatchPairDataset(Dataset):
    """Random ``patch_size``^2 LDCT/NDCT patch pairs with their attention target (eq. 5).

    Each item is a dict of float32 tensors ``ldct``, ``ndct``, ``attention`` of shape
    ``(1, P, P)`` in network units ([0, 1] over ``hu_range``).

    With ``doses`` the LDCT patch is mixed afresh from the pair's noise pool
    (:mod:`vagan.data.noise_pool`) at a dose drawn from ``doses``: index ``i + e n`` (``n`` patches) is
    patch ``i`` in epoch ``e``, with its dose and noise drawn from ``(seed, e, i)``, so every epoch
    sees new noise and a resumed run sees exactly the same.
    """

    def __init__(
        self,
        pairs: Sequence[SlicePair],
        patch_size: int = 64,
        patches_per_slice: int = 35,
        seed: int = 0,
        augment: bool = True,
        attention_mode: AttentionMode = "signed",
        hu_range: HURange = NETWORK_RANGE,
        doses: Sequence[float] | None = None,
        resample_mm: tuple[float, float] | None = None,
    ) -> None:
        if not pairs:
            raise ValueError("no slice pairs to draw patches from")
        if resample_mm is not None:
            lo, hi = resample_mm
            if not 0 < lo <= hi:
                raise ValueError(f"resample_mm must be (smallest, largest) pixel size in mm, got {resample_mm}")
            unknown = [f"{p.patient}#{p.index}" for p in pairs if not p.pixel_mm]
            if unknown:
                raise ValueError(f"resampling to {lo:g}-{hi:g} mm pixels needs each slice's pixel size; unknown for "
                                 f"{unknown[:3]}")
        if doses is not None:
            missing = [f"{p.patient}#{p.index}" for p in pairs if p.noise is None]
            if missing or not doses or not all(0 < d <= 1 for d in doses):
                raise ValueError(f"fresh noise at doses {list(doses)} needs doses in (0, 1] and a noise pool for every "
                                 f"training slice; without one: {missing[:3]}")
        if patches_per_slice < 1:
            raise ValueError(f"patches_per_slice must be >= 1, got {patches_per_slice}")
        self.pairs = list(pairs)
        self.patch_size = patch_size
        self.resample_mm = resample_mm
        for pair in pairs:
            if min(pair.ldct.shape) < self._window_side(pair, resample_mm[1] if resample_mm else None):
                raise ValueError(f"slice {pair.patient}#{pair.index} of shape {pair.ldct.shape} is smaller than patch "
                                 f"{patch_size}" + (f" at {resample_mm[1]:g} mm pixels" if resample_mm else ""))
        self.attention_mode = attention_mode
        self.hu_range = hu_range
        self._ldct = [_to_unit(p.ldct, hu_range) for p in self.pairs]
        self._ndct = [_to_unit(p.ndct, hu_range) for p in self.pairs]
        self.positions = self._draw_positions(patches_per_slice, seed, augment)
        self.doses = tuple(float(d) for d in doses) if doses is not None else None
        self.seed = seed

    def _window_side(self, pair: SlicePair, pixel_mm: float | None) -> int:
        """Source pixels a side of a patch covers at ``pixel_mm`` (None: the slice's own)."""
        if pixel_mm is None or not pair.pixel_mm:
            return self.patch_size
        return max(4, int(round(self.patch_size * pixel_mm / pair.pixel_mm)))

    def _draw_positions(self, per_slice: int, seed: int, with_augment: bool) -> np.ndarray:
        """Rows ``(slice, top, left, augmentation, window side)``: the window of source pixels that
        becomes the patch (its side differs from ``patch_size`` where the patch is resampled)."""
        rng = np.random.default_rng(seed)
        rows = []
        for s, pair in enumerate(self.pairs):
            h, w = pair.ndct.shape
            if self.resample_mm is None:
                sides = np.full(per_slice, self.patch_size)
            else:
                lo, hi = np.log(self.resample_mm)
                sides = np.array([self._window_side(pair, float(np.exp(v))) for v in rng.uniform(lo, hi, per_slice)])
            biggest = int(sides.max())
            half = biggest // 2
            inner = pair.ndct[half : h - biggest + half + 1, half : w - biggest + half + 1]
            ys, xs = np.nonzero(inner > BODY_THRESHOLD_HU)
            if ys.size == 0:  # no body (e.g. an air slice): draw anywhere
                ys, xs = np.indices(inner.shape).reshape(2, -1)
            pick = rng.integers(0, ys.size, size=per_slice)
            codes = rng.integers(0, N_AUGMENTATIONS, size=per_slice) if with_augment else np.zeros(per_slice, int)
            # the centre is a body pixel; each window sits on it (it fits: the biggest window does)
            tops, lefts = ys[pick] + half - sides // 2, xs[pick] + half - sides // 2
            rows.append(np.stack([np.full(per_slice, s), tops, lefts, codes, sides], axis=1))
        return np.concatenate(rows).astype(np.int64)

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        epoch, index = divmod(int(index), len(self.positions))
        s, top, left, code, side = (int(v) for v in self.positions[index])
        window = (slice(top, top + side), slice(left, left + side))
        ldct = self._ldct[s][window] if self.doses is None else self._fresh_ldct(s, window, epoch, index)
        ldct = augment(self._resampled(ldct[None]), code)
        ndct = augment(self._resampled(self._ndct[s][window][None]), code)
        return {"ldct": ldct, "ndct": ndct, "attention": attention_target(ldct, ndct, self.attention_mode)}

    def _resampled(self, window: torch.Tensor) -> torch.Tensor:
        """A ``(1, side, side)`` window as a ``(1, P, P)`` patch: bilinear, anti-aliased when it shrinks."""
        if window.shape[-1] == self.patch_size:
            return window
        size = (self.patch_size, self.patch_size)
        return F.interpolate(window[None], size=size, mode="bilinear", align_corners=False,
                             antialias=window.shape[-1] > self.patch_size)[0]


    def _fresh_ldct(self, s: int, window: tuple[slice, slice], epoch: int, index: int) -> torch.Tensor:
        from vagan.data.noise_pool import mix

        rng = np.random.default_rng([self.seed, epoch, index])
        dose = self.doses[int(rng.integers(len(self.doses)))]
        pair = self.pairs[s]
        noise = mix(pair.noise[:, :, window[0], window[1]], dose, *rng.uniform(0.0, 2.0 * np.pi, 2))
        return _to_unit(pair.ndct[window] + noise, self.hu_range)


class MixedPatchDataset(Dataset):
    """Several :class:`PatchPairDataset` s as one (``data.mix``): index ``i + e n`` (``n`` patches in
    all) is patch ``i`` of epoch ``e``, and each part sees its own epoch, so fresh noise and exact
    resume hold in every part."""

    def __init__(self, parts: Sequence[PatchPairDataset]) -> None:
        if not parts:
            raise ValueError("no patch datasets to mix")
        self.parts = list(parts)
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])

    def shares(self) -> list[float]:
        """Each part's fraction of the patches."""
        return [len(p) / len(self) for p in self.parts]

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        epoch, index = divmod(int(index), len(self))
        k = int(np.searchsorted(self.offsets, index, side="right")) - 1
        part = self.parts[k]
        return part[index - int(self.offsets[k]) + epoch * len(part)]


class SlicePairDataset(Dataset):
    """Whole slices for validation and evaluation, in network units, with their HU originals."""

    def __init__(self, pairs: Sequence[SlicePair], attention_mode: AttentionMode = "signed", hu_range: HURange = NETWORK_RANGE):
        if not pairs:
            raise ValueError("no slice pairs")
        self.pairs = list(pairs)
        self.attention_mode = attention_mode
        self.hu_range = hu_range

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        pair = self.pairs[index]
        ldct = _to_unit(pair.ldct, self.hu_range)[None]
        ndct = _to_unit(pair.ndct, self.hu_range)[None]
        return {"ldct": ldct, "ndct": ndct, "attention": attention_target(ldct, ndct, self.attention_mode)}
