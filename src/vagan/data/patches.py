"""Training patches and evaluation slices from paired LDCT/NDCT slices.

Patch positions (slice, row, column, augmentation) are all drawn once at construction from a
seed, so a dataset is a fixed list: the same seed gives the same patches on every machine and
an interrupted run resumes on exactly the same data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
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
    ) -> None:
        if not pairs:
            raise ValueError("no slice pairs to draw patches from")
        if doses is not None:
            missing = [f"{p.patient}#{p.index}" for p in pairs if p.noise is None]
            if missing or not doses or not all(0 < d <= 1 for d in doses):
                raise ValueError(f"fresh noise at doses {list(doses)} needs doses in (0, 1] and a noise pool for every "
                                 f"training slice; without one: {missing[:3]}")
        if patches_per_slice < 1:
            raise ValueError(f"patches_per_slice must be >= 1, got {patches_per_slice}")
        for pair in pairs:
            if min(pair.ldct.shape) < patch_size:
                raise ValueError(f"slice {pair.patient}#{pair.index} of shape {pair.ldct.shape} is smaller than patch {patch_size}")
        self.pairs = list(pairs)
        self.patch_size = patch_size
        self.attention_mode = attention_mode
        self.hu_range = hu_range
        self._ldct = [_to_unit(p.ldct, hu_range) for p in self.pairs]
        self._ndct = [_to_unit(p.ndct, hu_range) for p in self.pairs]
        self.positions = self._draw_positions(patches_per_slice, seed, augment)
        self.doses = tuple(float(d) for d in doses) if doses is not None else None
        self.seed = seed

    def _draw_positions(self, per_slice: int, seed: int, with_augment: bool) -> np.ndarray:
        rng = np.random.default_rng(seed)
        half = self.patch_size // 2
        rows = []
        for s, pair in enumerate(self.pairs):
            h, w = pair.ndct.shape
            inner = pair.ndct[half : h - self.patch_size + half + 1, half : w - self.patch_size + half + 1]
            ys, xs = np.nonzero(inner > BODY_THRESHOLD_HU)
            if ys.size == 0:  # no body (e.g. an air slice): draw anywhere
                ys, xs = np.indices(inner.shape).reshape(2, -1)
            pick = rng.integers(0, ys.size, size=per_slice)
            codes = rng.integers(0, N_AUGMENTATIONS, size=per_slice) if with_augment else np.zeros(per_slice, int)
            rows.append(np.stack([np.full(per_slice, s), ys[pick], xs[pick], codes], axis=1))
        return np.concatenate(rows).astype(np.int64)

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        epoch, index = divmod(int(index), len(self.positions))
        s, top, left, code = (int(v) for v in self.positions[index])
        window = (slice(top, top + self.patch_size), slice(left, left + self.patch_size))
        if self.doses is None:
            ldct = augment(self._ldct[s][window][None], code)
        else:
            ldct = augment(self._fresh_ldct(s, window, epoch, index)[None], code)
        ndct = augment(self._ndct[s][window][None], code)
        return {"ldct": ldct, "ndct": ndct, "attention": attention_target(ldct, ndct, self.attention_mode)}


    def _fresh_ldct(self, s: int, window: tuple[slice, slice], epoch: int, index: int) -> torch.Tensor:
        from vagan.data.noise_pool import mix

        rng = np.random.default_rng([self.seed, epoch, index])
        dose = self.doses[int(rng.integers(len(self.doses)))]
        pair = self.pairs[s]
        noise = mix(pair.noise[:, :, window[0], window[1]], dose, *rng.uniform(0.0, 2.0 * np.pi, 2))
        return _to_unit(pair.ndct[window] + noise, self.hu_range)


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
