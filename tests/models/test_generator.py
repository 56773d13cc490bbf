"""RED generator and AttentiveGenerator: 14 blocks, shapes at any size, residual heads, gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vagan.models.generator import REDGenerator
from vagan.models.outputs import GeneratorOutput
from vagan.models.vagan_generator import AttentiveGenerator


def test_fourteen_conv_blocks_plus_three_heads() -> None:
    g = REDGenerator(features=8)
    convs = [m for m in g.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    heads = [g.head_quarter, g.head_half, g.head_full]
    assert len(convs) == 14 + 3
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in convs) == 5
    assert [m.stride[0] for m in convs if isinstance(m, nn.Conv2d) and m not in heads].count(2) == 2
    assert [m.dilation[0] for m in g.middle] == [2, 4, 8, 4]
    assert all(h.out_channels == 1 for h in heads)


@pytest.mark.parametrize("size", [(64, 64), (37, 31), (3, 6)])
def test_output_shapes_at_any_size(size: tuple[int, int], rng: torch.Generator) -> None:
    h, w = size
    out = REDGenerator(features=8)(torch.rand(2, 1, h, w, generator=rng))
    assert isinstance(out, GeneratorOutput)
    assert out.image.shape == (2, 1, h, w)
    assert [tuple(m.shape[-2:]) for m in out.multiscale] == [
        (math.ceil(h / 4), math.ceil(w / 4)), (math.ceil(h / 2), math.ceil(w / 2)), (h, w)]
    assert out.multiscale[-1] is out.image
    assert out.attention == ()


def test_zero_heads_give_the_input_at_every_scale(rng: torch.Generator) -> None:
    g = REDGenerator(features=8)
    with torch.no_grad():
        for head in (g.head_quarter, g.head_half, g.head_full):
            head.weight.zero_()
            head.bias.zero_()
    x = torch.rand(2, 1, 32, 24, generator=rng)
    out = g(x)
    torch.testing.assert_close(out.image, x)  # global residual: y_hat = x + residual
    torch.testing.assert_close(out.multiscale[0], F.avg_pool2d(x, 4))
    torch.testing.assert_close(out.multiscale[1], F.avg_pool2d(x, 2))


def test_residual_is_added_to_the_ldct_channel_only(rng: torch.Generator) -> None:
    g = REDGenerator(in_channels=2, features=4)
    with torch.no_grad():
        g.head_full.weight.zero_()
        g.head_full.bias.zero_()
    x = torch.rand(1, 2, 16, 16, generator=rng)
    torch.testing.assert_close(g(x).image, x[:, :1])


def test_attentive_generator_with_and_without_attention(rng: torch.Generator) -> None:
    x = torch.rand(2, 1, 37, 31, generator=rng)
    with_attention = AttentiveGenerator(True, attention_features=4, attention_steps=4, generator_features=4)
    out = with_attention(x)
    assert with_attention.generator.in_channels == 2
    assert len(out.attention) == 4 and all(m.shape == (2, 1, 37, 31) for m in out.attention)
    assert out.final_attention is out.attention[-1]
    plain = AttentiveGenerator(False, generator_features=4)
    assert plain.attention is None and plain.generator.in_channels == 1
    assert not any("attention" in name for name, _ in plain.named_parameters())
    out = plain(x)
    assert out.attention == () and out.final_attention is None and out.image.shape == x.shape


def test_whole_slice_512(rng: torch.Generator) -> None:
    g = AttentiveGenerator(True, attention_features=4, attention_steps=2, generator_features=4)
    with torch.no_grad():
        out = g(torch.rand(1, 1, 512, 512, generator=rng))
    assert out.image.shape == (1, 1, 512, 512)
    assert [tuple(m.shape[-2:]) for m in out.multiscale] == [(128, 128), (256, 256), (512, 512)]
    assert out.attention[-1].shape == (1, 1, 512, 512)
    assert torch.isfinite(out.image).all()


def test_gradients_reach_every_parameter(rng: torch.Generator) -> None:
    g = AttentiveGenerator(True, attention_features=4, attention_steps=4, generator_features=4)
    out = g(torch.rand(2, 1, 16, 16, generator=rng))
    loss = sum(m.square().mean() for m in out.multiscale) + sum(m.mean() for m in out.attention)
    loss.backward()
    grads = {name: p.grad for name, p in g.named_parameters()}
    assert all(v is not None for v in grads.values()), [k for k, v in grads.items() if v is None]
    assert all(torch.isfinite(v).all() for v in grads.values())
    assert any(v.abs().sum() > 0 for k, v in grads.items() if k.startswith("attention."))
    assert any(v.abs().sum() > 0 for k, v in grads.items() if k.startswith("generator."))


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="dilations"):
        REDGenerator(dilations=(2, 4, 8))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        AttentiveGenerator(False, generator_features=4)(torch.zeros(1, 2, 8, 8))
