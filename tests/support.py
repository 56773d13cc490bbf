"""Tiny paired datasets and configs for training tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vagan.data.patches import PatchPairDataset, SlicePair
from vagan.training.config import load_config
from vagan.training.trainer import TrainData

TINY = [
    "model.generator_features=8", "model.attention_features=8", "model.discriminator_features=8",
    "data.patch_size=32", "train.perceptual=vgg19_random", "train.vgg_layer=conv2_2", "train.progress=false",
    "stages.*.batch_size=4", "train.log_every=1", "train.precision=fp32", "train.num_workers=0",
]


def tiny_pairs(n: int = 4, size: int = 48, seed: int = 0) -> list[SlicePair]:
    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(n):
        ndct = np.full((size, size), -1000.0, np.float32)
        ndct[6:-6, 6:-6] = 40.0
        ndct[14:24, 16 + i:28 + i] = 300.0
        ldct = ndct + rng.normal(0.0, 60.0, ndct.shape).astype(np.float32)
        pairs.append(SlicePair(ldct, ndct, patient=f"P{i}", index=i))
    return pairs


def tiny_batch() -> dict:
    """One fixed batch (2 patches of 32x32, no augmentation) as the training steps take it."""
    ds = PatchPairDataset(tiny_pairs(n=2, size=40), patch_size=32, patches_per_slice=1, seed=0, augment=False)
    items = [ds[i] for i in range(len(ds))]
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def tiny_data(patches_per_slice: int = 8) -> TrainData:
    pairs = tiny_pairs()
    return TrainData(PatchPairDataset(pairs, 32, patches_per_slice, seed=0), pairs[:1])


def tiny_config(preset: str, *extra: str):
    return load_config(preset, [*TINY, *extra])


def write_tiny_dataset(root: Path, patients: int = 3, slices: int = 4, size: int = 48) -> Path:
    """A paired dataset in the Mayo layout written with vagan's own DICOM writer."""
    from vagan.io.dicom import write_dicom_series

    for p in range(patients):
        pairs = tiny_pairs(slices, size, seed=p)
        pid = f"T{p:03d}"
        ndct = np.stack([pair.ndct for pair in pairs])
        ldct = np.stack([pair.ldct for pair in pairs])
        write_dicom_series(ndct, root / pid / "full_1mm", series_description="full", patient_id=pid,
                           pixel_spacing_mm=(0.7, 0.7), slice_thickness_mm=1.0)
        write_dicom_series(ldct, root / pid / "quarter_1mm", series_description="quarter", patient_id=pid,
                           pixel_spacing_mm=(0.7, 0.7), slice_thickness_mm=1.0)
    return root
