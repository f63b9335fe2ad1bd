"""Encoders: ``forward(embedded [B, S, E], lengths [B], mask [B, S] | None) -> memory [B, S, M]``.

``lengths`` say how much of each row is real; ``mask`` is the attention mask (``None`` only in the
unmasked ablation).  Positions past a row's length hold finite values that no one may read:
attention mutes them and pooling skips them.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..config import EncoderConfig
from .attention import MultiHeadAttention
from .linear import Linear
from .recurrent import build_rnn, run_within_lengths

__all__ = ["RNNEncoder", "TransformerEncoder", "TransformerLayer", "TransformerInput", "PositionalEncoding",
           "FeedForward", "build_encoder", "sinusoids"]


class RNNEncoder(nn.Module):
    """GRU/LSTM over the real steps of each sequence: padding never enters the recurrence.

    In inference on the CPU each direction runs over the padded batch, the backward one reversed
    within each length (``run_within_lengths``), so a sequence's memory has the same bits in any
    batch.  Training, and a GPU, run over packed sequences: one fused call for both directions,
    about 6% faster per training step on the CPU (docs/batch_invariance.md), and cuDNN's fastest
    path on a GPU, where bitwise invariance is not promised.
    """

    def __init__(self, input_size: int, config: EncoderConfig):
        super().__init__()
        self.rnn = build_rnn(config.cell, input_size, config.hidden_size, config.layers, config.dropout,
                             bidirectional=config.bidirectional)
        self.dropout = nn.Dropout(config.dropout)
        self.output_size = config.hidden_size * (2 if config.bidirectional else 1)

    def forward(self, embedded: Tensor, lengths: Tensor, mask: Tensor | None) -> Tensor:
        if embedded.device.type == "cpu" and not self.training:
            return self.dropout(run_within_lengths(self.rnn, embedded, lengths))  # [B, S, M]
        return self.dropout(packed_outputs(self.rnn, embedded, lengths))


def packed_outputs(rnn: nn.Module, embedded: Tensor, lengths: Tensor) -> Tensor:
    """``rnn`` over the packed rows of ``embedded [B, S, E]`` (``lengths [B]``, CPU) -> ``[B, S, M]``."""
    if bool((lengths == embedded.size(1)).all()):  # no padding at all (common in bucketed batches):
        return rnn(embedded)[0]                     # the unpacked path is faster and means the same
    # pack_padded_sequence wants CPU lengths; enforce_sorted=False keeps the batch order.
    packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)
    outputs, _ = rnn(packed)
    return pad_packed_sequence(outputs, batch_first=True, total_length=embedded.size(1))[0]


def sinusoids(start: int, end: int, size: int, device: torch.device | None = None) -> Tensor:
    """Sinusoidal encodings (Vaswani et al.) of positions ``start .. end - 1``: ``[end - start, size]``, float64."""
    position = torch.arange(start, end, dtype=torch.float64, device=device).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, size, 2, dtype=torch.float64, device=device) * (-math.log(10000.0) / size))
    table = torch.zeros(end - start, size, dtype=torch.float64, device=device)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: size // 2])
    return table


class PositionalEncoding(nn.Module):
    """Sinusoidal positions, added to ``x [B, T, D]`` from position ``offset`` on.

    Sinusoids have no length limit: the first ``cached`` positions come from a table, later ones
    are computed when a sequence reaches them (so no ``data.max_length`` is too long for a model).
    """

    def __init__(self, size: int, cached: int = 4096):
        super().__init__()
        self.size = size
        self.register_buffer("table", sinusoids(0, cached, size).float(), persistent=False)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        end = offset + x.size(1)
        table = self.table[offset:end] if end <= self.table.size(0) else sinusoids(offset, end, self.size, x.device)
        return x + table.to(x.dtype)


class TransformerInput(nn.Module):
    """Embeddings -> model size (projected when they differ), scaled by sqrt(size), plus sinusoidal
    positions from ``offset`` on, then dropout: the input of both transformer stacks."""

    def __init__(self, input_size: int, size: int, dropout: float):
        super().__init__()
        self.projection = Linear(input_size, size) if input_size != size else nn.Identity()
        self.scale = math.sqrt(size)
        self.positions = PositionalEncoding(size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, embedded: Tensor, offset: int = 0) -> Tensor:
        return self.dropout(self.positions(self.projection(embedded) * self.scale, offset))  # [B, T, D]


class FeedForward(nn.Module):
    def __init__(self, size: int, inner_size: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(Linear(size, inner_size), nn.ReLU(), nn.Dropout(dropout),
                                 Linear(inner_size, size))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class TransformerLayer(nn.Module):
    """Pre-LayerNorm encoder layer: ``x + SelfAttn(LN(x), mask)``, then ``x + FF(LN(x))``."""

    def __init__(self, size: int, heads: int, ff_size: int, dropout: float):
        super().__init__()
        self.attention_norm, self.feed_forward_norm = nn.LayerNorm(size), nn.LayerNorm(size)
        self.attention = MultiHeadAttention(size, size, heads)
        self.feed_forward = FeedForward(size, ff_size, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        normed = self.attention_norm(x)
        keys, values = self.attention.precompute(normed, normed)
        attended, _ = self.attention(normed, keys, values, mask, need_weights=False)
        x = x + self.dropout(attended)
        return x + self.dropout(self.feed_forward(self.feed_forward_norm(x)))


class TransformerEncoder(nn.Module):
    def __init__(self, input_size: int, config: EncoderConfig):
        super().__init__()
        size = config.hidden_size
        self.input = TransformerInput(input_size, size, config.dropout)
        self.layers = nn.ModuleList(TransformerLayer(size, config.heads, config.ff_size, config.dropout)
                                    for _ in range(config.layers))
        self.final_norm = nn.LayerNorm(size)
        self.output_size = size

    def forward(self, embedded: Tensor, lengths: Tensor, mask: Tensor | None) -> Tensor:
        x = self.input(embedded)  # [B, S, D]
        for layer in self.layers:
            x = layer(x, mask)
        return self.final_norm(x)


def build_encoder(input_size: int, config: EncoderConfig) -> nn.Module:
    return (RNNEncoder if config.type == "rnn" else TransformerEncoder)(input_size, config)
