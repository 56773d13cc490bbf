"""FID: closed forms for Gaussians, identity, streaming, torchmetrics agreement, feature nets."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from vagan.errors import ConfigError, VaganError
from vagan.evaluation.feature_nets import (
    FeatureNet,
    RandomCTNet,
    build_feature_net,
    extract_features,
    pool_features,
    random_ct_net,
)
from vagan.evaluation.fid import (
    FeatureMoments,
    fid_from_features,
    frechet_distance,
)


def test_diagonal_gaussians_closed_form(np_rng: np.random.Generator) -> None:
    d = 6
    mu1, mu2 = np_rng.normal(size=d), np_rng.normal(size=d)
    s1, s2 = np_rng.uniform(0.1, 3.0, d), np_rng.uniform(0.1, 3.0, d)
    a, b = FeatureMoments(mu1, np.diag(s1), 100), FeatureMoments(mu2, np.diag(s2), 100)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-12)
    assert frechet_distance(b, a) == pytest.approx(expected, rel=1e-12)


def test_full_covariances_match_scipy_sqrtm(np_rng: np.random.Generator) -> None:
    d = 8
    l1, l2 = np_rng.normal(size=(d, d)), np_rng.normal(size=(d, d))
    c1, c2 = l1 @ l1.T + 0.1 * np.eye(d), l2 @ l2.T + 0.1 * np.eye(d)
    mu1, mu2 = np_rng.normal(size=d), np_rng.normal(size=d)
    ref = np.sum((mu1 - mu2) ** 2) + np.trace(c1 + c2 - 2 * scipy.linalg.sqrtm(c1 @ c2).real)
    ours = frechet_distance(FeatureMoments(mu1, c1, 10), FeatureMoments(mu2, c2, 10))
    assert ours == pytest.approx(ref, rel=1e-9)


def test_identical_feature_sets_give_zero(np_rng: np.random.Generator) -> None:
    feats = np_rng.normal(size=(50, 10))
    result = fid_from_features(feats, feats.copy(), "test-net")
    assert result.value == pytest.approx(0.0, abs=1e-9)
    assert result.feature_net == "test-net" and result.n_real == result.n_fake == 50 and result.dim == 10


def test_sampled_gaussians_approach_closed_form(np_rng: np.random.Generator) -> None:
    mu2 = np.array([1.0, 0.0, -0.5])
    s2 = np.array([4.0, 1.0, 0.25])
    real = np_rng.normal(size=(20000, 3))
    fake = mu2 + np.sqrt(s2) * np_rng.normal(size=(20000, 3))
    expected = np.sum(mu2**2) + np.sum(1 + s2 - 2 * np.sqrt(s2))  # 1.25 + 1.25 = 2.5
    result = fid_from_features(torch.from_numpy(real), fake, "gauss")
    assert result.value == pytest.approx(expected, abs=0.08)
    assert not result.small_sample


def test_small_sample_singular_covariance(np_rng: np.random.Generator) -> None:
    """Fewer samples than dimensions: singular covariances still give a finite, non-negative FID."""
    a, b = np_rng.normal(size=(5, 40)), np_rng.normal(size=(5, 40)) + 0.5
    result = fid_from_features(a, b, "x")
    assert np.isfinite(result.value) and result.value > 0
    assert result.small_sample
    with pytest.raises(ValueError, match="at least 2"):
        fid_from_features(a[:1], b, "x")
    with pytest.raises(ValueError, match="dimensions differ"):
        fid_from_features(a, b[:, :39], "x")


def test_random_ct_net_is_deterministic_and_named() -> None:
    x = torch.linspace(0, 1, 2 * 40 * 36).reshape(2, 1, 40, 36)
    a, b = random_ct_net(seed=3), random_ct_net(seed=3)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    fa = a(x)
    assert fa.shape == (2, 240)
    assert torch.equal(fa, b(x))
    assert not torch.equal(fa, random_ct_net(seed=4)(x))
    assert a.name == "random-ct-untrained(seed=3)"
    assert not any(p.requires_grad for p in a.parameters())
    a.train()
    assert not a.training


def test_fid_from_images_matches_torchmetrics(rng: torch.Generator) -> None:
    net = random_ct_net(seed=0)
    real = 40 + 30 * torch.randn(24, 32, 32, generator=rng)
    fake = 40 + 60 * torch.randn(24, 32, 32, generator=rng)
    ours = fid_from_features(extract_features(net, real, 10), extract_features(net, fake, 10), net.name)
    assert ours.feature_net == net.name and ours.n_real == 24
    twin = random_ct_net(seed=0)  # an equal, separate instance: torchmetrics may change it
    metric = FrechetInceptionDistance(feature=twin, normalize=True, input_img_size=(1, 32, 32))
    metric.update(twin.window.to_unit(real)[:, None], real=True)
    metric.update(twin.window.to_unit(fake)[:, None], real=False)
    assert ours.value == pytest.approx(float(metric.compute()), rel=1e-4)
    assert ours.value > 0
    same = extract_features(net, real, 10)
    assert fid_from_features(same, same, net.name).value == pytest.approx(0.0, abs=1e-9)


def test_extract_features_batching_and_inputs(rng: torch.Generator) -> None:
    net = random_ct_net(seed=1)
    images = 100 * torch.randn(7, 1, 24, 24, generator=rng)
    whole = extract_features(net, images, batch_size=7)
    assert whole.shape == (7, 240) and whole.dtype == torch.float64
    torch.testing.assert_close(extract_features(net, images.numpy(), batch_size=2), whole, rtol=1e-5, atol=1e-6)
    mixed = [images[0, 0].numpy(), 100 * torch.randn(30, 20, generator=rng), images[1]]
    assert extract_features(net, mixed).shape == (3, 240)
    bad = images.clone()
    bad[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or infinite"):
        extract_features(net, bad)


class _MapNet(nn.Module):
    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_vgg19_kind_wraps_a_given_module(rng: torch.Generator) -> None:
    net = build_feature_net("vgg19", module=_MapNet(3), in_channels=3, name="vgg19-test")
    assert isinstance(net, FeatureNet) and net.name == "vgg19-test"
    x = torch.rand(2, 1, 16, 16, generator=rng)
    out = net(x)
    assert out.shape == (2, 5)
    torch.testing.assert_close(out, net.module(x.repeat(1, 3, 1, 1)).mean(dim=(2, 3)))
    with pytest.raises(ConfigError, match="VGG19"):
        build_feature_net("vgg19")


def test_pool_features_shapes() -> None:
    t = torch.ones(2, 3, 4, 4)
    assert pool_features(t).shape == (2, 3)
    assert pool_features({"a": t, "b": torch.ones(2, 6)}).shape == (2, 9)
    with pytest.raises(TypeError):
        pool_features("features")


def test_unknown_and_unavailable_feature_nets(tmp_path) -> None:
    with pytest.raises(ConfigError, match="did you mean 'random-ct'"):
        build_feature_net("random_ct")
    with pytest.raises(VaganError, match="torch-fidelity|weights not found"):
        build_feature_net("inception", weights_path=tmp_path / "missing.pth")
    assert build_feature_net("random-ct", seed=5).name == "random-ct-untrained(seed=5)"
    assert isinstance(build_feature_net("random-ct").module, RandomCTNet)
