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

from ..config import DecoderConfig, EncoderConfig
from .attention import MultiHeadAttention
from .linear import Linear
from .recurrent import build_rnn, run_within_lengths

__all__ = ["RNNEncoder", "TransformerEncoder", "TransformerLayer", "TransformerInput", "PositionalEncoding",
           "FeedForward", "ResidualNorm", "build_encoder", "final_norm", "sinusoids"]

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "swish": nn.SiLU}  # gelu: the exact form, not tanh's


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


def sinusoids(start: int, end: int, size: int, device: torch.device | None = None,
              layout: str = "interleaved") -> Tensor:
    """Sinusoidal encodings (Vaswani et al.) of positions ``start .. end - 1``: ``[end - start, size]``, float64.

    Feature ``2i`` is ``sin(p / 10000^(2i/size))`` and ``2i + 1`` its cosine (``interleaved``), or
    the ``ceil(size/2)`` sines come first and the cosines after them (``halves``: Marian's,
    fairseq's and tensor2tensor's layout); the frequencies are the same.
    """
    position = torch.arange(start, end, dtype=torch.float64, device=device).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, size, 2, dtype=torch.float64, device=device) * (-math.log(10000.0) / size))
    sines, cosines = torch.sin(position * frequency), torch.cos(position * frequency[: size // 2])
    if layout == "halves":
        return torch.cat([sines, cosines], dim=1)
    table = torch.zeros(end - start, size, dtype=torch.float64, device=device)
    table[:, 0::2], table[:, 1::2] = sines, cosines
    return table


class PositionalEncoding(nn.Module):
    """Sinusoidal positions, added to ``x [B, T, D]`` from position ``offset`` on.

    Sinusoids have no length limit: the first ``cached`` positions come from a table, later ones
    are computed when a sequence reaches them (so no ``data.max_length`` is too long for a model).
    """

    def __init__(self, size: int, layout: str = "interleaved", cached: int = 4096):
        super().__init__()
        self.size, self.layout = size, layout
        self.register_buffer("table", sinusoids(0, cached, size, layout=layout).float(), persistent=False)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        end = offset + x.size(1)
        table = (self.table[offset:end] if end <= self.table.size(0)
                 else sinusoids(offset, end, self.size, x.device, self.layout))
        return x + table.to(x.dtype)


class TransformerInput(nn.Module):
    """Embeddings -> model size (projected when they differ), scaled by sqrt(size) (``scale``),
    plus sinusoidal positions from ``offset`` on, then dropout: the input of both transformer stacks."""

    def __init__(self, input_size: int, config: EncoderConfig | DecoderConfig):
        super().__init__()
        size = config.hidden_size
        self.projection = Linear(input_size, size) if input_size != size else nn.Identity()
        self.scale = math.sqrt(size) if config.scale_embeddings else 1.0
        self.positions = PositionalEncoding(size, config.sinusoids)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, embedded: Tensor, offset: int = 0) -> Tensor:
        return self.dropout(self.positions(self.projection(embedded) * self.scale, offset))  # [B, T, D]


class FeedForward(nn.Module):
    def __init__(self, size: int, inner_size: int, dropout: float, activation: str = "relu"):
        super().__init__()
        self.net = nn.Sequential(Linear(size, inner_size), ACTIVATIONS[activation](), nn.Dropout(dropout),
                                 Linear(inner_size, size))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ResidualNorm(nn.LayerNorm):
    """The layer norm of one residual block, where the config puts it: before the sublayer
    (pre-norm, ``x + f(LN(x))``) or after the sum (post-norm, ``LN(x + f(x))``).

        y = norm.leaving(x, dropout(sublayer(norm.entering(x))))
    """

    def __init__(self, size: int, before: bool):
        super().__init__(size)
        self.before = before

    def entering(self, x: Tensor) -> Tensor:
        """What the sublayer reads: ``x [B, T, D]`` normalised (pre-norm) or as it is (post-norm)."""
        return self(x) if self.before else x

    def leaving(self, x: Tensor, added: Tensor) -> Tensor:
        """The block's output: ``x + added``, normalised after the sum in post-norm."""
        total = x + added
        return total if self.before else self(total)


def final_norm(config: EncoderConfig | DecoderConfig) -> nn.Module:
    """A pre-norm stack's last layer norm (its layers leave the residual sum unnormalised); a
    post-norm stack's layers end normalised and need none."""
    return nn.LayerNorm(config.hidden_size) if config.normalize_before else nn.Identity()


class TransformerLayer(nn.Module):
    """Encoder layer: self-attention then feed-forward, each a residual block normalised before
    (pre-norm) or after (post-norm) as ``config.normalize_before`` says."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        size = config.hidden_size
        self.attention_norm = ResidualNorm(size, config.normalize_before)
        self.feed_forward_norm = ResidualNorm(size, config.normalize_before)
        self.attention = MultiHeadAttention(size, size, config.heads)
        self.feed_forward = FeedForward(size, config.ff_size, config.dropout, config.activation)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        normed = self.attention_norm.entering(x)
        keys, values = self.attention.precompute(normed, normed)
        attended, _ = self.attention(normed, keys, values, mask, need_weights=False)
        x = self.attention_norm.leaving(x, self.dropout(attended))
        fed = self.feed_forward(self.feed_forward_norm.entering(x))
        return self.feed_forward_norm.leaving(x, self.dropout(fed))


class TransformerEncoder(nn.Module):
    def __init__(self, input_size: int, config: EncoderConfig):
        super().__init__()
        self.input = TransformerInput(input_size, config)
        self.layers = nn.ModuleList(TransformerLayer(config) for _ in range(config.layers))
        self.final_norm = final_norm(config)
        self.output_size = config.hidden_size

    def forward(self, embedded: Tensor, lengths: Tensor, mask: Tensor | None) -> Tensor:
        x = self.input(embedded)  # [B, S, D]
        for layer in self.layers:
            x = layer(x, mask)
        return self.final_norm(x)


def build_encoder(input_size: int, config: EncoderConfig) -> nn.Module:
    return (RNNEncoder if config.type == "rnn" else TransformerEncoder)(input_size, config)
