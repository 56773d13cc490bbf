"""ConvLSTMCell: gate arithmetic against a hand computation, zero initial state, shapes."""

from __future__ import annotations

import math

import pytest
import torch

from vagan.models.convlstm import ConvLSTMCell


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def test_one_by_one_cell_matches_hand_computed_gates() -> None:
    cell = ConvLSTMCell(1, 1, kernel_size=1)
    with torch.no_grad():
        # gate order in the conv output: i, f, o, g; input channels: (x, h)
        cell.gates.weight.copy_(torch.tensor([[1.0, 0.5], [1.0, 0.5], [1.0, 0.5], [1.0, 0.5]]).view(4, 2, 1, 1))
        cell.gates.bias.copy_(torch.tensor([0.0, 1.0, -1.0, 0.5]))
    x = torch.ones(1, 1, 1, 1)

    h1, c1 = cell(x)
    # step 1: h = c = 0, so every pre-activation is 1 * x + bias
    i, f, o, g = _sigmoid(1.0), _sigmoid(2.0), _sigmoid(0.0), math.tanh(1.5)
    c_expected = f * 0.0 + i * g
    h_expected = o * math.tanh(c_expected)
    assert c1.item() == pytest.approx(c_expected, rel=1e-6)
    assert h1.item() == pytest.approx(h_expected, rel=1e-6)

    h2, c2 = cell(x, (h1, c1))
    # step 2: pre-activations get + 0.5 * h1
    s = 1.0 + 0.5 * h_expected
    i, f, o, g = _sigmoid(s), _sigmoid(s + 1.0), _sigmoid(s - 1.0), math.tanh(s + 0.5)
    c2_expected = f * c_expected + i * g
    assert c2.item() == pytest.approx(c2_expected, rel=1e-6)
    assert h2.item() == pytest.approx(o * math.tanh(c2_expected), rel=1e-6)


def test_missing_state_is_zero_state_and_shape_is_kept(rng: torch.Generator) -> None:
    cell = ConvLSTMCell(3, 5)
    x = torch.rand(2, 3, 9, 7, generator=rng)
    h, c = cell(x)
    assert h.shape == c.shape == (2, 5, 9, 7)
    zeros = torch.zeros(2, 5, 9, 7)
    h0, c0 = cell(x, (zeros, zeros))
    torch.testing.assert_close(h, h0)
    torch.testing.assert_close(c, c0)
    assert h.abs().max() < 1.0  # h = o * tanh(c) is bounded by 1


def test_even_kernel_is_refused() -> None:
    with pytest.raises(ValueError, match="odd"):
        ConvLSTMCell(1, 1, kernel_size=2)


def test_gate_convolutions_equal_one_convolution_chunked(rng):
    """The four per-gate convolutions are the one gate convolution of the cell, split by rows."""
    cell = ConvLSTMCell(3, 5)
    joint = torch.randn(2, 8, 9, 7, generator=rng)
    expected = cell.gates(joint).chunk(4, dim=1)
    for got, want in zip(cell._gate_convs(joint), expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
