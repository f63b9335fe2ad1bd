"""Attention classes. Each takes the padding mask explicitly and mutes padded keys before the softmax.

All share one protocol:

    keys, values = attention.precompute(memory, memory)    # once per source sequence
    context, weights = attention(query, keys, values, mask)  # per decoder step, or all steps at once

``query [B, T, Dq]``, ``memory [B, S, Dm]``, ``mask [B, S]`` (True = real key, or ``None`` for the
unmasked ablation) -> ``context [B, T, Dv]``, ``weights [B, T, S]`` (rows sum to 1, exactly 0 on
padded keys).  ``precompute`` applies the key/value projections, so they cost once per source,
not once per step.  Every class attends over its keys widened to a multiple of ``KEY_MULTIPLE``
(``pad_keys``; the added keys are masked), and its products of queries by keys and of weights by
values have 1-3 query rows widened to ``ROW_MULTIPLE`` (``matmul_by_rows``): so an
example's attention keeps its bits whatever its batch (``invariance``, docs/batch_invariance.md).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .invariance import matmul_by_rows
from .masking import masked_softmax, pad_keys
from .linear import Linear

__all__ = ["AdditiveAttention", "DotAttention", "GeneralAttention", "MultiHeadAttention", "build_attention"]


class DotAttention(nn.Module):
    """Luong dot: ``score = q . k``; needs ``query_size == memory_size``."""

    def __init__(self, query_size: int, memory_size: int):
        super().__init__()
        if query_size != memory_size:
            raise ValueError(f"dot attention needs equal query ({query_size}) and memory ({memory_size}) "
                             "sizes; use `general` to learn a projection")
        self.output_size = memory_size

    def precompute(self, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        return keys, values

    def forward(self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        keys, values, mask, length = pad_keys(keys, values, mask)  # [B, S', *], mask [B, S']
        weights = masked_softmax(matmul_by_rows(query, keys.transpose(1, 2)), mask)  # [B, T, S']
        return matmul_by_rows(weights, values), weights[..., :length]


class GeneralAttention(DotAttention):
    """Luong general: ``score = q W k``, with ``W k`` computed once per source."""

    def __init__(self, query_size: int, memory_size: int):
        nn.Module.__init__(self)
        self.key_projection = Linear(memory_size, query_size, bias=False)
        self.output_size = memory_size

    def precompute(self, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        return self.key_projection(keys), values  # [B, S, Dq]


class AdditiveAttention(nn.Module):
    """Bahdanau: ``score = v . tanh(W_q q + W_k k)``, with ``W_k k`` computed once per source."""

    def __init__(self, query_size: int, memory_size: int, attention_size: int | None = None):
        super().__init__()
        attention_size = attention_size or query_size
        self.key_projection = Linear(memory_size, attention_size, bias=False)
        self.query_projection = Linear(query_size, attention_size, bias=True)
        self.energy = Linear(attention_size, 1, bias=False)
        self.output_size = memory_size

    def precompute(self, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        return self.key_projection(keys), values  # [B, S, A]

    def forward(self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        keys, values, mask, length = pad_keys(keys, values, mask)  # [B, S', *], mask [B, S']
        # Energies of the real width only: each is its own dot product, the same bits whatever the
        # width, so only the softmax and the weighted sum need the widened keys (tanh over the
        # added ones would be most of this class's work for nothing).
        hidden = torch.tanh(self.query_projection(query).unsqueeze(2) + keys[:, None, :length])  # [B, T, S, A]
        scores = F.pad(self.energy(hidden).squeeze(-1), (0, keys.size(1) - length))  # [B, T, S']
        weights = masked_softmax(scores, mask)  # [B, T, S']
        return matmul_by_rows(weights, values), weights[..., :length]


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention over ``heads`` heads; ``weights`` are the head-averaged
    probabilities.

    Computed explicitly (scores, masked softmax, weighted values) rather than by
    ``F.scaled_dot_product_attention``, whose blocking over queries makes an example's bits depend
    on its batch mates; on the CPU the explicit form was also as fast (docs/batch_invariance.md).
    """

    def __init__(self, query_size: int, memory_size: int, heads: int, model_size: int | None = None):
        super().__init__()
        model_size = model_size or query_size
        if model_size % heads:
            raise ValueError(f"model size {model_size} is not divisible by {heads} heads")
        self.heads, self.head_size = heads, model_size // heads
        self.query_projection = Linear(query_size, model_size)
        self.key_projection = Linear(memory_size, model_size)
        self.value_projection = Linear(memory_size, model_size)
        self.output_projection = Linear(model_size, model_size)
        self.output_size = model_size

    def _split(self, x: Tensor) -> Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.heads, self.head_size).transpose(1, 2)  # [B, h, L, d]

    def precompute(self, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        return self._split(self.key_projection(keys)), self._split(self.value_projection(values))

    def forward(self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None,
                causal: bool = False, need_weights: bool = True) -> tuple[Tensor, Tensor | None]:
        """``keys, values [B, h, S, d]`` from ``precompute``; ``causal`` masks future keys (self-attention).

        Weights are for cross-attention (what explanations show): ``causal`` with ``need_weights``
        is refused.
        """
        context, weights = self.attend(self.queries(query), keys, values, mask, causal, need_weights)
        return self.merge(context), weights

    def queries(self, query: Tensor) -> Tensor:
        """``query [B, T, Dq]`` -> the heads' queries ``[B, h, T, d]``: a product per row, which
        searches run together may share (``attend`` and ``attend_step`` take each one's rows)."""
        return self._split(self.query_projection(query))

    def attend(self, q: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None, causal: bool = False,
               need_weights: bool = True) -> tuple[Tensor, Tensor | None]:
        """``q [B, h, T, d]`` over ``keys, values [B, h, S, d]`` -> context ``[B, h, T, d]`` and the
        head-averaged weights ``[B, T, S]`` (or None)."""
        if causal and need_weights:
            raise ValueError("attention weights are computed for cross-attention only; pass need_weights=False")
        keys, values, mask, length = pad_keys(keys, values, mask)  # [B, h, S', d], mask [B, S']
        allowed = mask[:, None, None, :]  # [B, 1, 1, S']
        if causal:
            allowed = allowed & self._causal(q.size(2), length, keys.size(2), q.device)  # [B, 1, T, S']
        scores = matmul_by_rows(q, keys.transpose(-1, -2)) / math.sqrt(self.head_size)  # [B, h, T, S']
        weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
        context = matmul_by_rows(weights, values)  # [B, h, T, d]
        return context, weights.mean(dim=1)[..., :length] if need_weights else None

    def attend_step(self, q: Tensor, keys: Tensor, values: Tensor) -> Tensor:
        """A search step's ``q [B, h, 1, d]`` over ``keys, values [B, h, t, d]`` of every position
        so far -> context ``[B, h, 1, d]``.

        Every row has the same ``t`` keys, none of them padding, alone as in any batch, so neither
        the keys nor the query rows are widened (``attend`` widens both): the bits are the same
        without it (docs/batch_invariance.md), and a beam's steps do not pay for it."""
        weights = torch.softmax(torch.matmul(q, keys.transpose(-1, -2)) / math.sqrt(self.head_size), dim=-1)
        return torch.matmul(weights, values)  # [B, h, 1, d]

    def merge(self, context: Tensor) -> Tensor:
        """``context [B, h, T, d]`` -> the heads concatenated and projected, ``[B, T, D]``."""
        batch, _, queries, _ = context.shape
        return self.output_projection(context.transpose(1, 2).reshape(batch, queries, -1))

    @staticmethod
    def _causal(queries: int, keys: int, width: int, device: torch.device) -> Tensor:
        """``[T, S']``: query ``t`` may see keys up to its own position (the last ``T`` of the
        ``keys`` real ones are the queries' own), none of the ``width - keys`` added ones."""
        allowed = torch.zeros(queries, width, dtype=torch.bool, device=device)
        allowed[:, :keys] = torch.ones(queries, keys, dtype=torch.bool, device=device).tril(diagonal=keys - queries)
        return allowed


def build_attention(kind: str, query_size: int, memory_size: int, heads: int) -> nn.Module:
    if kind == "additive":
        return AdditiveAttention(query_size, memory_size)
    if kind == "dot":
        return DotAttention(query_size, memory_size)
    if kind == "general":
        return GeneralAttention(query_size, memory_size)
    if kind == "multihead":
        return MultiHeadAttention(query_size, memory_size, heads)
    raise ValueError(f"unknown attention {kind!r}")
