"""Discriminator: 8 convs to a 32x4x4 = 512 vector, the D_map branch really gates the features."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vagan.models.discriminator import Discriminator
from vagan.models.outputs import DiscriminatorOutput


def test_eight_convs_and_512_features_for_64_patches(rng: torch.Generator) -> None:
    d = Discriminator(attentive=True, features=8)
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d) and m is not d.attention]
    assert len(convs) == 8 and all(c.kernel_size == (3, 3) for c in convs)
    assert d.fc.in_features == 512
    seen: dict[str, torch.Size] = {}

    def record(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        seen["back"] = output.shape

    d.back.register_forward_hook(record)
    out = d(torch.rand(3, 1, 64, 64, generator=rng))
    assert isinstance(out, DiscriminatorOutput)
    assert seen["back"] == (3, 32, 4, 4)
    assert out.logit.shape == (3, 1)
    assert out.attention_map is not None and out.attention_map.shape == (3, 1, 16, 16)


@pytest.mark.parametrize("size", [(48, 40), (128, 128), (16, 16)])
def test_other_sizes_are_pooled(size: tuple[int, int], rng: torch.Generator) -> None:
    out = Discriminator(attentive=True, features=8)(torch.rand(2, 1, *size, generator=rng))
    assert out.logit.shape == (2, 1)
    assert out.attention_map.shape[-2:] == ((size[0] + 3) // 4, (size[1] + 3) // 4)


def test_plain_discriminator_has_no_map(rng: torch.Generator) -> None:
    d = Discriminator(attentive=False, features=8)
    assert d.attention is None and not any(n.startswith("attention") for n, _ in d.named_parameters())
    assert d(torch.rand(2, 1, 64, 64, generator=rng)).attention_map is None


def test_attention_map_multiplies_the_features(rng: torch.Generator) -> None:
    attentive = Discriminator(attentive=True, features=8)
    plain = Discriminator(attentive=False, features=8)
    plain.load_state_dict({k: v for k, v in attentive.state_dict().items() if not k.startswith("attention.")})
    x = torch.rand(2, 1, 64, 64, generator=rng)
    before = attentive(x).logit
    with torch.no_grad():
        attentive.attention.weight.mul_(3.0)
    assert not torch.allclose(attentive(x).logit, before)  # changing D_map changes the decision
    with torch.no_grad():  # D_map == 1 everywhere: the same as no attention
        attentive.attention.weight.zero_()
        attentive.attention.bias.fill_(1.0)
    torch.testing.assert_close(attentive(x).logit, plain(x).logit)
    with torch.no_grad():  # D_map == 0 everywhere: the input no longer matters
        attentive.attention.bias.fill_(0.0)
    torch.testing.assert_close(attentive(x).logit, attentive(torch.rand(2, 1, 64, 64, generator=rng)).logit)


def test_gradients_reach_every_parameter(rng: torch.Generator) -> None:
    d = Discriminator(attentive=True, features=8)
    out = d(torch.rand(2, 1, 64, 64, generator=rng))
    (out.logit.sum() + out.attention_map.square().mean()).backward()
    grads = {n: p.grad for n, p in d.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values()), grads.keys()
    assert grads["attention.weight"].abs().sum() > 0 and grads["fc.weight"].abs().sum() > 0
