import numpy as np
import pytest
import torch

from vagan.data.patches import PatchPairDataset, SlicePair, SlicePairDataset, augment


def _pairs(np_rng, n=3, size=80):
    pairs = []
    for i in range(n):
        ndct = np.full((size, size), -1000.0, np.float32)
        ndct[10:-10, 10:-10] = 40.0
        ldct = ndct + np_rng.normal(0, 50, ndct.shape).astype(np.float32)
        pairs.append(SlicePair(ldct, ndct, patient="P1", index=i))
    return pairs


def test_patches_are_deterministic_given_seed(np_rng):
    pairs = _pairs(np_rng)
    a = PatchPairDataset(pairs, patch_size=32, patches_per_slice=5, seed=3)
    b = PatchPairDataset(pairs, patch_size=32, patches_per_slice=5, seed=3)
    c = PatchPairDataset(pairs, patch_size=32, patches_per_slice=5, seed=4)
    assert len(a) == 15
    assert np.array_equal(a.positions, b.positions)
    assert not np.array_equal(a.positions, c.positions)
    assert torch.equal(a[7]["ldct"], b[7]["ldct"])


def test_patch_values_normalised_and_target_follows_eq5(np_rng):
    ds = PatchPairDataset(_pairs(np_rng), patch_size=32, patches_per_slice=4, seed=0, augment=False)
    item = ds[0]
    for key in ("ldct", "ndct", "attention"):
        assert item[key].shape == (1, 32, 32) and item[key].dtype == torch.float32
    assert 0.0 <= item["ldct"].min() and item["ldct"].max() <= 1.0
    s, top, left, _ = ds.positions[0]
    hu = ds.pairs[s].ndct[top:top + 32, left:left + 32]
    assert torch.allclose(item["ndct"][0], torch.from_numpy((hu + 1024) / 4096))
    residual = item["ndct"] - item["ldct"]
    assert torch.equal(item["attention"], (residual > residual.mean()).float())


def test_patch_centres_lie_in_the_body(np_rng):
    ds = PatchPairDataset(_pairs(np_rng), patch_size=16, patches_per_slice=50, seed=1, augment=False)
    for s, top, left, _ in ds.positions:
        assert ds.pairs[s].ndct[top + 8, left + 8] > -500


def test_augment_covers_the_eight_dihedral_transforms():
    image = torch.arange(9.0).reshape(1, 3, 3)
    outs = {tuple(augment(image, code).flatten().tolist()) for code in range(8)}
    assert len(outs) == 8
    assert torch.equal(augment(image, 0), image)


def test_slice_dataset_and_bad_pairs(np_rng):
    ds = SlicePairDataset(_pairs(np_rng, n=2))
    assert ds[1]["ldct"].shape == (1, 80, 80)
    with pytest.raises(ValueError, match="must be equal 2-D shapes"):
        SlicePair(np.zeros((4, 4), np.float32), np.zeros((4, 5), np.float32))
    with pytest.raises(ValueError, match="smaller than patch"):
        PatchPairDataset(_pairs(np_rng, size=20), patch_size=32)
