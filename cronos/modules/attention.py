"""Attention classes. Each takes the padding mask explicitly and mutes padded keys before the softmax.

All share one protocol:

    keys, values = attention.precompute(memory, memory)    # once per source sequence
    context, weights = attention(query, keys, values, mask)  # per decoder step, or all steps at once

``query [B, T, Dq]``, ``memory [B, S, Dm]``, ``mask [B, S]`` (True = real key, or ``None`` for the
unmasked ablation) -> ``context [B, T, Dv]``, ``weights [B, T, S]`` (rows sum to 1, exactly 0 on
padded keys).  ``precompute`` applies the key/value projections, so they cost once per source,
not once per step.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..masking import masked_softmax

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
        weights = masked_softmax(torch.bmm(query, keys.transpose(1, 2)), mask)  # [B, T, S]
        return torch.bmm(weights, values), weights


class GeneralAttention(DotAttention):
    """Luong general: ``score = q W k``, with ``W k`` computed once per source."""

    def __init__(self, query_size: int, memory_size: int):
        nn.Module.__init__(self)
        self.key_projection = nn.Linear(memory_size, query_size, bias=False)
        self.output_size = memory_size

    def precompute(self, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        return self.key_projection(keys), values  # [B, S, Dq]


class AdditiveAttention(nn.Module):
    """Bahdanau: ``score = v . tanh(W_q q + W_k k)``, with ``W_k k`` computed once per source."""

    def __init__(self, query_size: int, memory_size: int, attention_size: int | None = None):
        super().__init__()
        attention_size = attention_size or query_size
        self.key_projection = nn.Linear(memory_size, attention_size, bias=False)
        self.query_projection = nn.Linear(query_size, attention_size, bias=True)
        self.energy = nn.Linear(attention_size, 1, bias=False)
        self.output_size = memory_size

    def precompute(self, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        return self.key_projection(keys), values  # [B, S, A]

    def forward(self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        hidden = torch.tanh(self.query_projection(query).unsqueeze(2) + keys.unsqueeze(1))  # [B, T, S, A]
        weights = masked_softmax(self.energy(hidden).squeeze(-1), mask)  # [B, T, S]
        return torch.bmm(weights, values), weights


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention over ``heads`` heads, computed by ``F.scaled_dot_product_attention``.

    ``weights`` are the head-averaged attention probabilities; they are computed (by a second,
    explicit softmax) only when ``need_weights`` is true, so training does not pay for them.
    """

    def __init__(self, query_size: int, memory_size: int, heads: int, model_size: int | None = None):
        super().__init__()
        model_size = model_size or query_size
        if model_size % heads:
            raise ValueError(f"model size {model_size} is not divisible by {heads} heads")
        self.heads, self.head_size = heads, model_size // heads
        self.query_projection = nn.Linear(query_size, model_size)
        self.key_projection = nn.Linear(memory_size, model_size)
        self.value_projection = nn.Linear(memory_size, model_size)
        self.output_projection = nn.Linear(model_size, model_size)
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
        if causal and need_weights:
            raise ValueError("attention weights are computed for cross-attention only; pass need_weights=False")
        q = self._split(self.query_projection(query))  # [B, h, T, d]
        # SDPA's boolean attn_mask means True = takes part: the same polarity as cronos's mask.
        attn_mask = self._causal(q.size(2), keys.size(2), q.device) if causal else None  # [T, S]
        if mask is not None:
            real_keys = mask[:, None, None, :]  # [B, 1, 1, S]
            attn_mask = real_keys if attn_mask is None else attn_mask & real_keys
        context = F.scaled_dot_product_attention(q, keys, values, attn_mask=attn_mask)  # [B, h, T, d]
        batch, _, length, _ = context.shape
        output = self.output_projection(context.transpose(1, 2).reshape(batch, length, -1))
        return output, self._weights(q, keys, mask) if need_weights else None

    @staticmethod
    def _causal(queries: int, keys: int, device: torch.device) -> Tensor:
        """``[T, S]``: query ``t`` may see keys up to its own position; earlier keys come from the cache."""
        past = keys - queries
        return torch.ones(queries, keys, dtype=torch.bool, device=device).tril(diagonal=past)

    def _weights(self, q: Tensor, keys: Tensor, mask: Tensor | None) -> Tensor:
        """The head-averaged probabilities SDPA used, by an explicit softmax: ``[B, T, S]``."""
        scores = torch.matmul(q, keys.transpose(-1, -2)) / math.sqrt(self.head_size)  # [B, h, T, S]
        return masked_softmax(scores, mask).mean(dim=1)


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
