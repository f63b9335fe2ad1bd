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
import torch.nn.functional as F
from torch import Tensor, nn

from ..precision import cpu_runs_bf16_lstm
from . import invariance

__all__ = ["LSTM", "build_rnn", "run_within_lengths"]


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


def run_within_lengths(rnn: nn.GRU | nn.LSTM, inputs: Tensor, lengths: Tensor) -> Tensor:
    """The batch-first ``rnn`` over right-padded ``inputs [B, S, I]`` whose rows are ``lengths [B]``
    (CPU) long, from a zero state: outputs ``[B, S, H * directions]``, finite past a row's length
    and read by no one.

    Each layer and direction runs on its own over the whole padded batch; the backward direction
    reads each row reversed within its length, so it starts at the row's last real token and
    padding only ever follows a row's real steps.  A packed sequence would give the same numbers
    up to the last bits, but its steps have as many rows as sequences still running there, and a
    product's bits depend on its row count: here every step has the batch's rows, so a row's
    outputs are the same in any batch (docs/batch_invariance.md).
    """
    if _needs_float32(rnn.weight_ih_l0):
        with torch.autocast("cpu", enabled=False):
            return run_within_lengths(rnn, inputs.to(rnn.weight_ih_l0.dtype), lengths)
    rows = inputs.size(0)
    extra = invariance.rows_short(rows)
    if extra:  # 1-3 rows: widened with zero rows of length 1 for the recurrence's products, cut after them
        widened = F.pad(inputs, (0, 0, 0, 0, 0, extra))  # [4, S, I]
        return run_within_lengths(rnn, widened, torch.cat([lengths, lengths.new_ones(extra)]))[:rows]
    reversal = _reversal(lengths, inputs.size(1)).to(inputs.device)  # [B, S]
    x = inputs
    for layer in range(rnn.num_layers):
        if layer:
            x = nn.functional.dropout(x, rnn.dropout, rnn.training)
        outputs = [_one_direction(rnn, f"_l{layer}", x)]  # [B, S, H]
        if rnn.bidirectional:
            outputs.append(_reorder(_one_direction(rnn, f"_l{layer}_reverse", _reorder(x, reversal)), reversal))
        x = torch.cat(outputs, dim=-1)
    return x


def _reversal(lengths: Tensor, width: int) -> Tensor:
    """``[B, S]``: for each row, the position each step reads when the row runs backwards within its
    length (padding stays where it is); its own inverse."""
    positions = torch.arange(width)[None, :]
    lengths = lengths[:, None]
    return torch.where(positions < lengths, lengths - 1 - positions, positions)


def _reorder(x: Tensor, order: Tensor) -> Tensor:
    return x.gather(1, order[:, :, None].expand(-1, -1, x.size(2)))  # [B, S, *]


def _one_direction(rnn: nn.GRU | nn.LSTM, suffix: str, x: Tensor) -> Tensor:
    """One layer, one direction (``suffix``: its parameters' suffix) over ``x [B, S, I]`` -> ``[B, S, H]``,
    by the same functional op that ``nn.GRU``/``nn.LSTM`` call."""
    weights = [getattr(rnn, name + suffix) for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    zeros = x.new_zeros(1, x.size(0), rnn.hidden_size)
    if isinstance(rnn, nn.LSTM):
        return torch.lstm(x, (zeros, zeros), weights, True, 1, 0.0, rnn.training, False, True)[0]
    return torch.gru(x, zeros, weights, True, 1, 0.0, rnn.training, False, True)[0]


def _needs_float32(weight: Tensor) -> bool:
    return (weight.device.type == "cpu" and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16 and not cpu_runs_bf16_lstm())


def build_rnn(cell: str, input_size: int, hidden_size: int, layers: int, dropout: float,
              bidirectional: bool = False) -> nn.Module:
    """A batch-first GRU or LSTM (``cell``); dropout between layers only where there are several."""
    rnn = nn.GRU if cell == "gru" else LSTM
    return rnn(input_size, hidden_size, num_layers=layers, batch_first=True, bidirectional=bidirectional,
               dropout=dropout if layers > 1 else 0.0)
