"""Decoders over an encoded source, each taking the source mask explicitly.

    state = decoder.start(memory, lengths, mask)            # projections of the memory, once
    output, attention, state = decoder(embedded, state)     # embedded [B, T, E] -> output [B, T, H]

    outputs, weights, states = decoder.together(embedded, sizes, states)  # several searches' steps at once

Teacher forcing passes the whole target (``T`` steps at once); search passes one step at a time
and carries ``state``; searches run together (a server's, ``decoding/in_flight.py``) pass their
rows one after the other, each with its own state.  ``attention [B, T, S]`` is the cross-attention (transformer: last layer,
averaged over heads).  ``state.select(index)`` reorders, repeats or drops rows of the batch;
``state.repeated(beams)`` makes each input's row ``beams`` rows, its hypotheses in a beam search,
and then ``index`` keeps whole inputs, each row among its input's rows; ``state.reorder(index)``
moves only what differs between the hypotheses of one input (the decoder's own state, not the
memory and mask, which are the same for all of them).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import DecoderConfig
from . import invariance
from .masking import pad_keys
from .attention import MultiHeadAttention, build_attention
from .encoders import FeedForward, ResidualNorm, TransformerInput, final_norm
from .linear import Linear
from .recurrent import build_rnn

__all__ = ["RNNDecoder", "TransformerDecoder", "RNNDecoderState", "TransformerDecoderState", "SelfAttentionCache",
           "LayerPart", "Parts", "build_decoder", "joined"]


def _select(value, index: Tensor):
    """Index the batch axis of every tensor in ``value`` (tensors, caches, tuples, lists, None)."""
    if isinstance(value, Tensor):
        return value.index_select(0, index)
    if isinstance(value, SelfAttentionCache):
        return value.select(index)
    if isinstance(value, (tuple, list)):
        return type(value)(_select(v, index) for v in value)
    return value


@dataclass(frozen=True)
class RNNDecoderState:
    keys: Tensor                        # [B, S, *] attention-ready memory keys
    values: Tensor                      # [B, S, M]
    mask: Tensor | None                 # [B, S]
    hidden: Tensor | tuple[Tensor, Tensor]  # [L, B, H] (LSTM: (h, c)); batch on axis 1

    def select(self, index: Tensor) -> "RNNDecoderState":
        return RNNDecoderState(_select(self.keys, index), _select(self.values, index),
                               _select(self.mask, index), self._hidden_of(index))

    def reorder(self, index: Tensor) -> "RNNDecoderState":
        return dataclasses.replace(self, hidden=self._hidden_of(index))

    def repeated(self, beams: int) -> "RNNDecoderState":
        """Each row as ``beams`` rows, memory included (attention reads it per row)."""
        return self.select(torch.arange(self.keys.size(0), device=self.keys.device).repeat_interleave(beams))

    def _hidden_of(self, index: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        return _each_hidden(self.hidden, lambda h: h.index_select(1, index))

    def beside(self, other: object, rows: int, other_rows: int) -> "Parts":
        """This state's ``rows``, then ``other``'s (``Parts``)."""
        return Parts.of(self, rows).beside(other, rows, other_rows)


def _each_hidden(hidden: Tensor | tuple[Tensor, Tensor], change) -> Tensor | tuple[Tensor, Tensor]:
    """``change`` applied to each tensor of an RNN's hidden state (an LSTM's ``(h, c)``, a GRU's ``h``)."""
    return tuple(change(h) for h in hidden) if isinstance(hidden, tuple) else change(hidden)


class RNNDecoder(nn.Module):
    """GRU/LSTM decoder with attention after the RNN (Luong), so teacher forcing runs in one call.

    Per step: ``h_t = RNN(y_{t-1}, h_{t-1})``; ``c_t = attention(h_t, memory, mask)``;
    ``output_t = tanh(W [h_t; c_t])``.  The initial state is a projection of the mean of the real
    (unpadded) memory positions.
    """

    def __init__(self, input_size: int, memory_size: int, config: DecoderConfig):
        super().__init__()
        self.layers, self.is_lstm = config.layers, config.cell == "lstm"
        self.rnn = build_rnn(config.cell, input_size, config.hidden_size, config.layers, config.dropout)
        self.bridge = Linear(memory_size, config.hidden_size)
        self.attention = build_attention(config.attention, config.hidden_size, memory_size, config.heads)
        self.combine = Linear(config.hidden_size + self.attention.output_size, config.hidden_size)
        self.dropout = nn.Dropout(config.dropout)
        self.output_size = config.hidden_size

    def start(self, memory: Tensor, lengths: Tensor, mask: Tensor | None) -> RNNDecoderState:
        pooled = real_mean(memory, lengths)  # [B, M]
        hidden = torch.tanh(self.bridge(pooled)).unsqueeze(0).repeat(self.layers, 1, 1)  # [L, B, H]
        if self.is_lstm:
            hidden = (hidden, torch.zeros_like(hidden))
        keys, values = widened(*self.attention.precompute(memory, memory), mask)
        return RNNDecoderState(keys, values, mask, hidden)

    def forward(self, embedded: Tensor, state: RNNDecoderState,
                need_weights: bool = True) -> tuple[Tensor, Tensor, RNNDecoderState]:
        outputs, hidden = self._recur(embedded, state.hidden)  # [B, T, H]
        context, weights = self.attention(outputs, state.keys, state.values, state.mask)  # [B, T, M], [B, T, S]
        combined = self.dropout(torch.tanh(self.combine(torch.cat([outputs, context], dim=-1))))
        return combined, weights, dataclasses.replace(state, hidden=hidden)

    def _recur(self, embedded: Tensor, hidden: Tensor | tuple[Tensor, Tensor]):
        """The RNN over ``embedded [B, T, E]`` from ``hidden``; but in a training step, 1-3 rows widened
        with zeros to ``invariance.ROW_MULTIPLE`` and cut back after it (its products
        give 1-3 rows other bits, as ``linear.linear_by_rows`` says): so a row's bits do not depend
        on how many rows its step has."""
        rows = embedded.size(0)
        extra = 0 if self.training and torch.is_grad_enabled() else invariance.rows_short(rows)
        if not extra:
            return self.rnn(embedded, hidden)
        outputs, hidden = self.rnn(F.pad(embedded, (0, 0, 0, 0, 0, extra)),
                                   _each_hidden(hidden, lambda h: F.pad(h, (0, 0, 0, extra))))  # [B', T, H], [L, B', H]
        return outputs[:rows], _each_hidden(hidden, lambda h: h[:, :rows])

    def together(self, embedded: Tensor, sizes: list[int], states: Sequence[RNNDecoderState],
                 need_weights: bool) -> tuple[Tensor, list[Tensor], list[RNNDecoderState]]:
        """The step of several searches, each on its own rows (``TransformerDecoder.together``'s
        protocol): one after the other, as a recurrent step is a few products per search."""
        results = [self(part, state, need_weights) for part, state in zip(split(embedded, sizes), states)]
        return joined([outputs for outputs, _, _ in results]), [w for _, w, _ in results], [s for _, _, s in results]


def widened(keys: Tensor, values: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """The memory's attention keys and values widened once per source to the width attention pads
    them to (``pad_keys``), so search steps do not copy them again; as they are without a mask
    (the unmasked ablation attends to exactly the batch's positions)."""
    return (keys, values) if mask is None else pad_keys(keys, values, mask)[:2]


def real_mean(memory: Tensor, lengths: Tensor) -> Tensor:
    """The mean of each row's first ``lengths`` positions of ``memory [B, S, M]`` -> ``[B, M]``.

    A running sum read at the row's last real position: it adds exactly those positions, one
    after the other, so padding is skipped and the result has the same bits in any batch (a sum
    over the padded axis is split differently for other widths)."""
    last = (lengths.to(memory.device) - 1)[:, None, None].expand(-1, 1, memory.size(2))  # [B, 1, M]
    return memory.cumsum(1).gather(1, last).squeeze(1) / lengths.to(memory.device, memory.dtype)[:, None]


@dataclass(frozen=True)
class SelfAttentionCache:
    """One decoder layer's self-attention keys and values of the positions decoded so far.

    Stored time-major, ``[capacity, B, h, d]``, so that the first ``length`` positions are one
    contiguous block: a search step writes its position in place (no copy of the earlier ones),
    a beam's reorder copies that block once, and attention reads it as ``[B, h, length, d]``
    without a copy.  Capacity doubles when full.  A state is stepped once: the step after it
    writes into the same storage, past the positions this cache holds.
    """

    keys: Tensor    # [capacity, B, h, d]; the first `length` positions are real
    values: Tensor  # [capacity, B, h, d]
    length: int

    @staticmethod
    def of(keys: Tensor, values: Tensor) -> "SelfAttentionCache":
        """The cache of ``keys, values [B, h, T, d]`` (a view: the first step that adds a position copies them)."""
        return SelfAttentionCache(keys.permute(2, 0, 1, 3), values.permute(2, 0, 1, 3), keys.size(2))

    def appended(self, keys: Tensor, values: Tensor) -> "SelfAttentionCache":
        """This cache and the positions ``keys, values [B, h, T, d]`` after its own."""
        end = self.length + keys.size(2)
        stored = self if end <= self.keys.size(0) and self.keys.is_contiguous() else self._moved(None, 2 * end)
        stored.keys[self.length:end] = keys.permute(2, 0, 1, 3)
        stored.values[self.length:end] = values.permute(2, 0, 1, 3)
        return SelfAttentionCache(stored.keys, stored.values, end)

    def select(self, index: Tensor) -> "SelfAttentionCache":
        """The rows ``index [B']`` of the batch (a beam's reorder, inputs leaving), in storage of the same capacity."""
        return self._moved(index, self.keys.size(0))

    def attended(self) -> tuple[Tensor, Tensor]:
        """``keys, values [B, h, length, d]``: views of the positions so far."""
        return self.keys[: self.length].permute(1, 2, 0, 3), self.values[: self.length].permute(1, 2, 0, 3)

    def _moved(self, index: Tensor | None, capacity: int) -> "SelfAttentionCache":
        """The rows ``index`` (None: all) copied into new contiguous storage of ``capacity`` positions."""
        rows = self.keys.size(1) if index is None else index.numel()
        moved = []
        for stored in (self.keys, self.values):
            new = stored.new_empty((capacity, rows, *stored.shape[2:]))
            if index is None:
                new[: self.length] = stored[: self.length]
            elif stored.requires_grad and torch.is_grad_enabled():  # autograd records no out= writes
                new[: self.length] = stored[: self.length].index_select(1, index)
            else:  # written straight into the new storage: one pass over the positions so far
                torch.index_select(stored[: self.length], 1, index, out=new[: self.length])
            moved.append(new)
        return SelfAttentionCache(moved[0], moved[1], self.length)


@dataclass(frozen=True)
class TransformerDecoderState:
    cross: tuple[tuple[Tensor, Tensor], ...]     # per layer: memory keys, values [B, h, S, d], one per input
    mask: Tensor | None                          # [B, S]
    cache: tuple[SelfAttentionCache, ...] | None  # per layer: self-attention keys, values of the steps so far, per row
    length: int                                  # positions decoded so far
    beams: int = 1                               # rows per input (B * beams rows): its hypotheses share its memory

    def select(self, index: Tensor) -> "TransformerDecoderState":
        """The rows ``index [R']``; with ``beams``, whole inputs (each input's rows among its own)."""
        inputs = index if self.beams == 1 else index[:: self.beams] // self.beams  # [R' / beams]
        return TransformerDecoderState(_select(self.cross, inputs), _select(self.mask, inputs),
                                       _select(self.cache, index), self.length, self.beams)

    def reorder(self, index: Tensor) -> "TransformerDecoderState":
        return dataclasses.replace(self, cache=_select(self.cache, index))

    def repeated(self, beams: int) -> "TransformerDecoderState":
        """Each input's row as ``beams`` rows; the memory stays one per input (attention reads it
        for all of an input's rows in one product, ``TransformerDecoderLayer``)."""
        if self.beams != 1:
            raise ValueError("the rows of this state are already repeated")
        rows = self.cross[0][0].size(0)
        cache = _select(self.cache, torch.arange(rows, device=self.cross[0][0].device).repeat_interleave(beams))
        return dataclasses.replace(self, cache=cache, beams=beams)

    def beside(self, other: object, rows: int, other_rows: int) -> "Parts":
        """This state's ``rows``, then ``other``'s (``Parts``)."""
        return Parts.of(self, rows).beside(other, rows, other_rows)


@dataclass(frozen=True)
class Parts:
    """Decoder states whose rows follow each other in one batch: the inputs of a search that joined
    it at different steps, each part's rows at one step, with its own memory, mask, positions and
    cache.  A step runs all their rows together (``Seq2Seq.run_decoder_together``: the per-row
    layers over all rows, attention over each part's own); ``select`` and ``reorder`` take rows of
    the whole, each part its own (``index`` keeps the parts' order, as a search's does)."""

    states: tuple
    sizes: tuple[int, ...]  # each part's rows

    @staticmethod
    def of(state: object, rows: int) -> "Parts":
        return state if isinstance(state, Parts) else Parts((state,), (rows,))

    def beside(self, other: object, rows: int, other_rows: int) -> "Parts":
        """These parts, then ``other``'s ``other_rows`` rows."""
        more = Parts.of(other, other_rows)
        return Parts(self.states + more.states, self.sizes + more.sizes)

    def select(self, index: Tensor) -> "Parts | object":
        """The rows ``index [R']`` of the whole (a part left with none goes; one left is itself)."""
        return self._each(index, lambda state, rows: state.select(rows))

    def reorder(self, index: Tensor) -> "Parts | object":
        return self._each(index, lambda state, rows: state.reorder(rows))

    def _each(self, index: Tensor, take) -> "Parts | object":
        ends = torch.tensor(self.sizes).cumsum(0)
        counts = torch.bincount(torch.bucketize(index.cpu(), ends, right=True), minlength=len(self.sizes)).tolist()
        states, sizes, start, offset = [], [], 0, 0
        for state, size, count in zip(self.states, self.sizes, counts):
            if count:
                states.append(take(state, index[start:start + count] - offset))
                sizes.append(count)
            start, offset = start + count, offset + size
        return states[0] if len(states) == 1 else Parts(tuple(states), tuple(sizes))


class TransformerDecoderLayer(nn.Module):
    """Causal self-attention, masked cross-attention, feed-forward: each a residual block,
    normalised before (pre-norm) or after (post-norm) as ``config.normalize_before`` says."""

    def __init__(self, config: DecoderConfig):
        super().__init__()
        size = config.hidden_size
        self.self_norm, self.cross_norm, self.feed_forward_norm = (
            ResidualNorm(size, config.normalize_before) for _ in range(3))
        self.self_attention = MultiHeadAttention(size, size, config.heads)
        self.cross_attention = MultiHeadAttention(size, size, config.heads)
        self.feed_forward = FeedForward(size, config.ff_size, config.dropout, config.activation)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, sizes: list[int], parts: Sequence[LayerPart],
                need_weights: bool) -> tuple[Tensor, list[Tensor | None], list[SelfAttentionCache]]:
        """The layer over the rows of one search or several at once: ``x [N, T, D]``, ``sizes`` each
        one's rows in order, ``parts`` each one's memory, mask and cache.  The norms, projections
        and feed-forward run over all rows (a row's bits do not depend on the rows beside it),
        attention over each one's own cache and memory -> ``x``, each one's weights and cache."""
        normed = self.self_norm.entering(x)
        attention = self.self_attention
        q, (keys, values) = attention.queries(normed), attention.precompute(normed, normed)  # [N, h, T, d]
        contexts, caches = [], []
        for part, part_q, part_keys, part_values in zip(parts, split(q, sizes), split(keys, sizes), split(values, sizes)):
            if part.cache is None:  # the whole target at once (or a search's first step)
                context, _ = attention.attend(part_q, part_keys, part_values, None, causal=True, need_weights=False)
                cache = SelfAttentionCache.of(part_keys, part_values)
            else:  # a search step: one new position over every position so far
                cache = part.cache.appended(part_keys, part_values)
                context = attention.attend_step(part_q, *cache.attended())
            contexts.append(context)
            caches.append(cache)
        x = self.self_norm.leaving(x, self.dropout(attention.merge(joined(contexts))))
        q = self.cross_attention.queries(self.cross_norm.entering(x))  # [N, h, T, d]
        contexts, weights = zip(*(self._attend_memory(part_q, part, need_weights)
                                  for part, part_q in zip(parts, split(q, sizes))))
        x = self.cross_norm.leaving(x, self.dropout(self.cross_attention.merge(joined(contexts))))
        fed = self.feed_forward(self.feed_forward_norm.entering(x))
        return self.feed_forward_norm.leaving(x, self.dropout(fed)), list(weights), caches

    def _attend_memory(self, q: Tensor, part: LayerPart, need_weights: bool) -> tuple[Tensor, Tensor | None]:
        """Cross-attention of ``q [R, h, T, d]``, ``part.beams`` rows per input, over each input's
        memory: an input's rows in one product (``[B, h, beams * T, d]``), which reads its memory
        once, not once per row -> context ``[R, h, T, d]``, weights ``[R, T, S]`` (or None)."""
        beams = part.beams
        if beams == 1:
            return self.cross_attention.attend(q, *part.cross, part.mask, need_weights=need_weights)
        rows, heads, steps, size = q.shape
        by_input = q.view(rows // beams, beams, heads, steps, size).transpose(1, 2).reshape(
            rows // beams, heads, beams * steps, size)  # [B, h, beams * T, d]
        context, weights = self.cross_attention.attend(by_input, *part.cross, part.mask, need_weights=need_weights)
        context = context.view(rows // beams, heads, beams, steps, size).transpose(1, 2).reshape(
            rows, heads, steps, size)  # [R, h, T, d]
        return context, None if weights is None else weights.reshape(rows, steps, -1)  # [B, beams * T, S] -> [R, T, S]


class LayerPart(NamedTuple):
    """One search's share of a decoder layer's step: its memory's keys and values, mask and cache,
    and its rows per input (``TransformerDecoderState.beams``)."""

    cross: tuple[Tensor, Tensor]
    mask: Tensor | None
    cache: SelfAttentionCache | None
    beams: int


def split(rows: Tensor, sizes: list[int]) -> Sequence[Tensor]:
    """``rows`` cut on the batch axis into parts of ``sizes`` (one part: the tensor itself)."""
    return (rows,) if len(sizes) == 1 else rows.split(sizes)


def joined(parts: Sequence[Tensor]) -> Tensor:
    """``parts`` one after the other on the batch axis (one part as it is, not copied)."""
    return parts[0] if len(parts) == 1 else torch.cat(list(parts))


class TransformerDecoder(nn.Module):
    def __init__(self, input_size: int, memory_size: int, config: DecoderConfig):
        super().__init__()
        size = config.hidden_size
        self.input = TransformerInput(input_size, config)
        self.memory_projection = Linear(memory_size, size) if memory_size != size else nn.Identity()
        self.layers = nn.ModuleList(TransformerDecoderLayer(config) for _ in range(config.layers))
        self.final_norm = final_norm(config)
        self.output_size = size

    def start(self, memory: Tensor, lengths: Tensor, mask: Tensor | None) -> TransformerDecoderState:
        memory = self.memory_projection(memory)
        cross = tuple(widened(*layer.cross_attention.precompute(memory, memory), mask) for layer in self.layers)
        return TransformerDecoderState(cross, mask, None, 0)

    def forward(self, embedded: Tensor, state: TransformerDecoderState,
                need_weights: bool = True) -> tuple[Tensor, Tensor | None, TransformerDecoderState]:
        outputs, weights, states = self.together(embedded, [embedded.size(0)], [state], need_weights)
        return outputs, weights[0], states[0]

    def together(self, embedded: Tensor, sizes: list[int], states: Sequence[TransformerDecoderState],
                 need_weights: bool) -> tuple[Tensor, list[Tensor | None], list[TransformerDecoderState]]:
        """The step of several searches at once: ``embedded [N, T, E]``, the rows of each of
        ``states`` in turn (``sizes``) -> outputs ``[N, T, H]``, each one's attention and state;
        each one's rows get the bits they would alone (``TransformerDecoderLayer.forward``)."""
        x = joined([self.input(part, offset=state.length) for part, state in zip(split(embedded, sizes), states)])
        caches: list[list[SelfAttentionCache]] = [[] for _ in states]
        weights: list[Tensor | None] = [None] * len(states)
        for i, layer in enumerate(self.layers):
            last = i == len(self.layers) - 1
            parts = [LayerPart(state.cross[i], state.mask, None if state.cache is None else state.cache[i], state.beams)
                     for state in states]
            x, layer_weights, layer_caches = layer(x, sizes, parts, need_weights and last)
            for kept, cache in zip(caches, layer_caches):
                kept.append(cache)
            weights = layer_weights if last else weights
        after = [dataclasses.replace(state, cache=tuple(kept), length=state.length + embedded.size(1))
                 for state, kept in zip(states, caches)]
        return self.final_norm(x), weights, after


def build_decoder(input_size: int, memory_size: int, config: DecoderConfig) -> nn.Module:
    return (RNNDecoder if config.type == "rnn" else TransformerDecoder)(input_size, memory_size, config)
