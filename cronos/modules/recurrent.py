"""The recurrent cells of the RNN encoder and decoder: ``torch.nn.GRU``, and an LSTM that runs in
bfloat16 autocast on every CPU.

On the CPU, autocast sends an LSTM to oneDNN's bfloat16 kernel, which CPUs without native bfloat16
(AVX2-only, e.g. many AMD EPYCs) do not have: torch raises "could not create a primitive descriptor
for the LSTM forward propagation primitive".  There, ``LSTM`` runs its recurrence in float32 (as a
GRU always does under CPU autocast: torch has no bfloat16 GRU path on the CPU) and the rest of the
network stays in bfloat16.  Whether the kernel exists is asked of torch once per process
(``precision.cpu_runs_bf16_lstm``), which logs it when it does not.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..precision import cpu_runs_bf16_lstm

__all__ = ["LSTM", "build_rnn"]


class LSTM(nn.LSTM):
    """``nn.LSTM`` (same parameters and state dict) whose recurrence leaves CPU bfloat16 autocast for
    float32 where this CPU has no bfloat16 LSTM kernel."""

    def forward(self, input, hx=None):  # noqa: A002 - nn.LSTM's own signature
        if not _needs_float32(self.weight_ih_l0):
            return super().forward(input, hx)
        dtype = self.weight_ih_l0.dtype
        if hx is not None:
            hx = tuple(h.to(dtype) for h in hx)
        with torch.autocast("cpu", enabled=False):
            return super().forward(input.to(dtype), hx)


def _needs_float32(weight: Tensor) -> bool:
    return (weight.device.type == "cpu" and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16 and not cpu_runs_bf16_lstm())


def build_rnn(cell: str, input_size: int, hidden_size: int, layers: int, dropout: float,
              bidirectional: bool = False) -> nn.Module:
    """A batch-first GRU or LSTM (``cell``); dropout between layers only where there are several."""
    rnn = nn.GRU if cell == "gru" else LSTM
    return rnn(input_size, hidden_size, num_layers=layers, batch_first=True, bidirectional=bidirectional,
               dropout=dropout if layers > 1 else 0.0)
