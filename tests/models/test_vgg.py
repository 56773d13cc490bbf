"""VGG19Features: torchvision key names, layer selection, frozen, safe loading and the missing-file message."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from vagan.errors import ConfigError, VaganError
from vagan.models import vgg
from vagan.models.vgg import LAYERS, VGG19Features, load_vgg19_weights

CONV_INDICES = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]  # torchvision's vgg19.features


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    """Random VGG19 weights, drawn once per module (20 M numbers)."""
    return VGG19Features.random_init(torch.Generator().manual_seed(19)).state_dict()


@pytest.fixture
def net(state: dict[str, torch.Tensor]) -> VGG19Features:
    return VGG19Features(state, layer="conv3_4")


def test_state_dict_keys_are_torchvision_names(net: VGG19Features) -> None:
    keys = list(net.state_dict())
    assert len(keys) == 32  # 16 convs x (weight, bias)
    assert keys == [f"features.{i}.{kind}" for i in CONV_INDICES for kind in ("weight", "bias")]
    for literal in ("features.0.weight", "features.0.bias", "features.2.weight", "features.34.weight"):
        assert literal in keys
    assert net.state_dict()["features.0.weight"].shape == (64, 3, 3, 3)
    assert net.state_dict()["features.34.weight"].shape == (512, 512, 3, 3)


def test_layer_indices_and_output_shapes(state: dict[str, torch.Tensor], rng: torch.Generator) -> None:
    assert LAYERS["conv5_4"] == 35 and LAYERS["conv4_4"] == 26 and LAYERS["conv3_4"] == 17 and LAYERS["conv1_1"] == 1
    x = torch.rand(2, 1, 32, 32, generator=rng)
    assert VGG19Features(state).layer == "conv5_4"
    assert VGG19Features(state, "conv5_4")(x).shape == (2, 512, 2, 2)
    assert VGG19Features(state, "conv3_4")(x).shape == (2, 256, 8, 8)
    out = VGG19Features(state, "conv1_2")(x)
    assert out.shape == (2, 64, 32, 32) and out.min() >= 0  # after the ReLU


def test_input_is_repeated_to_rgb_and_imagenet_normalised(net: VGG19Features) -> None:
    x = torch.full((1, 1, 4, 4), 0.5)
    first_conv = net.features[0]
    normalised = (x.expand(-1, 3, -1, -1) - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) \
        / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    captured = {}
    first_conv.register_forward_hook(lambda _m, inputs, _o: captured.update(x=inputs[0]) or None)
    net(x)
    torch.testing.assert_close(captured["x"], normalised)


def test_frozen_but_differentiable_in_the_input(net: VGG19Features, rng: torch.Generator) -> None:
    assert not any(p.requires_grad for p in net.parameters())
    net.train()
    assert not net.training
    x = torch.rand(1, 1, 16, 16, generator=rng, requires_grad=True)
    net(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_unknown_layer_suggests_the_closest(state: dict[str, torch.Tensor]) -> None:
    with pytest.raises(ConfigError, match="did you mean 'conv5_4'"):
        VGG19Features(state, layer="conv5_5")


def test_missing_weights_message_names_cache_path_and_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    expected = tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
    assert vgg.hub_cache_path() == expected
    with pytest.raises(VaganError) as info:
        load_vgg19_weights(None)
    assert str(expected) in str(info.value) and "--vgg-weights" in str(info.value)
    with pytest.raises(VaganError, match="does not exist"):
        load_vgg19_weights(tmp_path / "nowhere.pth")


def test_hub_cache_file_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, net: VGG19Features) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    torch.save(net.state_dict(), tmp_path / "checkpoints" / "vgg19-dcbb9e9d.pth")
    loaded = load_vgg19_weights(None)
    torch.testing.assert_close(loaded["features.16.weight"], net.state_dict()["features.16.weight"])


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_saved_weights_round_trip(suffix: str, tmp_path: Path, net: VGG19Features, rng: torch.Generator) -> None:
    state = {k: v.clone() for k, v in net.state_dict().items()}
    state["classifier.6.bias"] = torch.zeros(1000)  # a full torchvision file also holds the classifier
    path = tmp_path / f"vgg19{suffix}"
    if suffix == ".pth":
        torch.save(state, path)
    else:
        save_file(state, str(path))
    reloaded = VGG19Features.from_pretrained(path, layer="conv3_4")
    x = torch.rand(1, 1, 16, 16, generator=rng)
    torch.testing.assert_close(reloaded(x), net(x))


class _Payload:
    def __reduce__(self):  # would run code if unpickled without weights_only
        return (print, ("code executed",))


def test_loading_never_executes_code(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    with path.open("wb") as f:
        pickle.dump({"features.0.weight": _Payload()}, f, protocol=2)
    with pytest.raises(VaganError, match="cannot read"):
        load_vgg19_weights(path)


def test_incomplete_or_misshaped_files_are_refused(tmp_path: Path, net: VGG19Features) -> None:
    state = {k: v.clone() for k, v in net.state_dict().items()}
    del state["features.34.bias"]
    torch.save(state, tmp_path / "short.pth")
    with pytest.raises(VaganError, match="features.34.bias"):
        load_vgg19_weights(tmp_path / "short.pth")
    state["features.34.bias"] = torch.zeros(3)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(VaganError, match="shape"):
        load_vgg19_weights(tmp_path / "bad.pth")
