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
    s, top, left, _, side = ds.positions[0]
    assert side == 32
    hu = ds.pairs[s].ndct[top:top + 32, left:left + 32]
    assert torch.allclose(item["ndct"][0], torch.from_numpy((hu + 1024) / 4096))
    residual = item["ndct"] - item["ldct"]
    assert torch.equal(item["attention"], (residual > residual.mean()).float())


def test_patch_centres_lie_in_the_body(np_rng):
    ds = PatchPairDataset(_pairs(np_rng), patch_size=16, patches_per_slice=50, seed=1, augment=False)
    for s, top, left, _, _ in ds.positions:
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


def _ramp_pair(pixel_mm: float, size: int = 160, noise_hu: float = 0.0, seed: int = 0) -> SlicePair:
    """A body of 40 HU whose left half holds a ramp of 10 HU per mm along the columns."""
    cols = np.arange(size, dtype=np.float32) * pixel_mm
    ndct = np.full((size, size), 40.0, np.float32)
    ndct[:, : size // 2] = 10.0 * cols[: size // 2]
    ldct = ndct + np.random.default_rng(seed).normal(0, noise_hu, ndct.shape).astype(np.float32)
    return SlicePair(ldct, ndct, "R", 0, pixel_mm=pixel_mm)


def test_resampling_keeps_hu_and_the_physical_gradient_at_the_drawn_pixel_size():
    """0.5 mm pixels resampled to 1.0 mm: a uniform region keeps its HU, a 10 HU/mm ramp becomes
    10 HU per 1-mm pixel (not per 0.5 mm), every patch is P x P whatever window it came from."""
    pair = _ramp_pair(0.5)
    ds = PatchPairDataset([pair], patch_size=32, patches_per_slice=40, seed=0, augment=False, resample_mm=(1.0, 1.0))
    assert set(ds.positions[:, 4]) == {64}  # 32 pixels of 1 mm are 64 of 0.5 mm
    flat = ramps = 0
    for i, (_, _, left, _, side) in enumerate(ds.positions):
        hu = ds[i]["ndct"][0].numpy().astype(np.float64) * 4096 - 1024
        assert hu.shape == (32, 32)
        if left >= 80:  # wholly in the 40 HU half
            assert hu == pytest.approx(40.0, abs=1e-3)
            flat += 1
        elif left + side <= 80:  # wholly inside the ramp (the columns next to the window's edge are clamped)
            assert np.diff(hu[:, 1:-1], axis=1) == pytest.approx(10.0, abs=1e-2)
            ramps += 1
    assert flat and ramps


def test_resampled_noise_is_as_a_coarser_reconstruction_would_have_it():
    """White noise on 0.5 mm pixels, resampled to 1 mm with anti-aliasing: the std drops to about
    half (four pixels per new one), the mean stays; the pixel sizes drawn span the range."""
    pair = _ramp_pair(0.5, noise_hu=40.0)
    pair = SlicePair(pair.ldct - pair.ndct + 40.0, np.full_like(pair.ndct, 40.0), "W", 0, pixel_mm=0.5)
    same = PatchPairDataset([pair], patch_size=32, patches_per_slice=20, seed=1, augment=False)
    coarse = PatchPairDataset([pair], patch_size=32, patches_per_slice=20, seed=1, augment=False,
                              resample_mm=(1.0, 1.0))

    def std_and_mean(ds):
        hu = np.stack([ds[i]["ldct"][0].numpy() for i in range(len(ds))]).astype(np.float64) * 4096 - 1024
        return hu.std(), hu.mean()

    (s0, m0), (s1, m1) = std_and_mean(same), std_and_mean(coarse)
    assert s0 == pytest.approx(40.0, rel=0.05) and 0.3 < s1 / s0 < 0.6
    # 3x coarser: without the anti-aliasing filter bilinear sampling would hit single pixels and keep
    # the whole std (aliasing the noise); filtered, it falls to about a third
    coarser = PatchPairDataset([pair], patch_size=32, patches_per_slice=20, seed=1, augment=False,
                               resample_mm=(1.5, 1.5))
    assert std_and_mean(coarser)[0] / s0 < 0.5
    assert m1 == pytest.approx(40.0, abs=1.0) and m0 == pytest.approx(40.0, abs=1.0)
    spread = PatchPairDataset([pair], patch_size=32, patches_per_slice=200, seed=2, resample_mm=(0.6, 1.1))
    sides = spread.positions[:, 4] * 0.5 / 32  # the drawn pixel sizes, mm
    assert sides.min() < 0.65 and sides.max() > 1.05 and np.all((sides > 0.58) & (sides < 1.12))


def test_resampling_needs_pixel_sizes_and_room():
    pair = _ramp_pair(0.5)
    with pytest.raises(ValueError, match="needs each slice's pixel size"):
        PatchPairDataset([SlicePair(pair.ldct, pair.ndct)], patch_size=32, resample_mm=(0.6, 1.1))
    with pytest.raises(ValueError, match="smaller than patch 32 at 3 mm"):
        PatchPairDataset([pair], patch_size=32, resample_mm=(0.6, 3.0))
    with pytest.raises(ValueError, match="resample_mm"):
        PatchPairDataset([pair], patch_size=32, resample_mm=(1.1, 0.6))
