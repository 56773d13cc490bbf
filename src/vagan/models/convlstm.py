"""A convolutional LSTM cell (Shi et al. 2015), the recurrent unit of the attentive block."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LSTMState = tuple[torch.Tensor, torch.Tensor]
"""``(h, c)``: hidden state and cell state, each ``(B, hidden_channels, H, W)``."""


class ConvLSTMCell(nn.Module):
    """One step of a ConvLSTM.

    The four gates come from one convolution of ``concat(input, h)`` (equivalent to four separate
    ``kernel_size`` convolutions)::

        i, f, o = sigmoid(.), sigmoid(.), sigmoid(.);  g = tanh(.)
        c' = f * c + i * g
        h' = o * tanh(c')

    ``h`` and ``c`` start at zero when no state is given. Spatial size is kept (``padding = k // 2``).
    The gate convolution may run in bf16 under autocast; the gate nonlinearities, the cell state
    ``c`` and ``h`` are float32, so the recurrence does not accumulate bf16 rounding.
    """

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd to keep the spatial size, got {kernel_size}")
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.gates = nn.Conv2d(in_channels + hidden_channels, 4 * hidden_channels, kernel_size,
                               padding=kernel_size // 2)

    def initial_state(self, x: torch.Tensor) -> LSTMState:
        """Zero float32 ``(h, c)`` matching the batch, size and device of ``x``."""
        b, _, h, w = x.shape
        zeros = x.new_zeros(b, self.hidden_channels, h, w, dtype=torch.float32)
        return zeros, zeros.clone()

    def _gate_convs(self, joint: torch.Tensor) -> list[torch.Tensor]:
        """The four gate pre-activations as four convolutions with row blocks of ``self.gates``' weight.

        The same numbers as one conv then ``chunk(4)``, but each gate is its own contiguous tensor:
        channel slices of a channels-last tensor make every pointwise op and its backward strided
        (2-3x slower on a CPU).
        """
        n = self.hidden_channels
        weight, bias = self.gates.weight, self.gates.bias
        return [F.conv2d(joint, weight[k * n:(k + 1) * n], bias[k * n:(k + 1) * n], padding=self.gates.padding)
                for k in range(4)]

    def forward(self, x: torch.Tensor, state: LSTMState | None = None) -> LSTMState:
        """Advance one step: ``x`` is ``(B, in_channels, H, W)``; returns the new ``(h, c)``."""
        h, c = self.initial_state(x) if state is None else state
        joint = torch.cat([x, h.to(x.dtype)], dim=1)
        i, f, o, g = (gate.float() for gate in self._gate_convs(joint))
        c_next = torch.addcmul(torch.sigmoid(f) * c.float(), torch.sigmoid(i), torch.tanh(g))
        o = torch.sigmoid(o)
        h_next = o * torch.tanh(c_next)
        return h_next, c_next
