"""Greedy and beam search: batched, masked, and independent of batch mates.

    hypotheses = decode_examples(network, codec.encode(sources), config.evaluation)   # input order
    hypotheses = search(network, batch.src, batch.src_lengths, config.evaluation)     # one batch
    n_best = decode_n_best(network, examples, config.evaluation, n_best=5, beam_size=5)  # 5 per input

The encoder runs once per batch; the decoder state carries the memory projections and the source
mask, so every step attends with the mask.  Inputs that finish leave the batch, so they stop
costing compute.  Each input gets at most ``ceil(max_length_ratio * source_length) +
max_length_offset`` output tokens.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass
from typing import Callable, Sequence, TypeVar

import torch
from torch import Tensor

from .config import EvaluationConfig
from .data import Batch, Example, collate, length_batches
from .data.vocab import BOS_INDEX, EOS_INDEX
from .network import Seq2Seq, evaluating

T = TypeVar("T")

__all__ = ["Hypothesis", "Sampling", "decode_examples", "decode_n_best", "decode_samples", "greedy_search",
           "beam_search", "in_length_batches", "sample_search", "search", "search_n_best", "max_output_lengths",
           "teacher_forced"]


@dataclass(frozen=True)
class Hypothesis:
    tokens: list[int]          # output token ids, without <eos>
    score: float               # what ranks hypotheses: log_prob / length ** length_penalty (length: tokens + <eos>)
    attention: Tensor | None   # [len(tokens), S] over the batch's padded source, pad columns exactly 0
    log_prob: float            # sum of the tokens' log-probs, <eos> included when the output ended with it


def max_output_lengths(src_lengths: Tensor, ratio: float, offset: int) -> Tensor:
    """Most output tokens (``<eos>`` included) per input: ``ceil(ratio * length) + offset``, at least 1."""
    return torch.clamp(torch.ceil(src_lengths.double() * ratio).long() + offset, min=1)


def in_length_batches(network: Seq2Seq, examples: Sequence[Example], batch_size: int,
                      decode_batch: Callable[[Batch, list[int]], Sequence[T]]) -> list[T]:
    """``decode_batch(batch, positions)`` over ``examples`` collated in batches of similar length
    (``positions``: the batch's examples' places in ``examples``), in eval mode without autograd;
    the results in input order."""
    results: list = [None] * len(examples)
    with evaluating(network):
        for positions in length_batches(examples, batch_size):
            batch = collate([examples[i] for i in positions]).to(network.device)
            for position, result in zip(positions, decode_batch(batch, positions)):
                results[position] = result
    return results


def teacher_forced(network: Seq2Seq, batch: Batch, need_weights: bool = True) -> tuple[Tensor, Tensor | None]:
    """``logits [B, T, V]`` and attention ``[B, T, S]`` of ``batch``'s targets given its sources
    (and their ``readings``, for ensembles): the network's teacher-forced forward."""
    state = network.start_decoding(network.encode(batch.src, batch.src_lengths, *batch.readings))
    logits, attention, _ = network.decode(batch.tgt_in, state, need_weights)
    return logits, attention


def decode_examples(network: Seq2Seq, examples: Sequence[Example], options: EvaluationConfig,
                    beam_size: int | None = None, batch_size: int | None = None,
                    need_weights: bool = False) -> list[Hypothesis]:
    """Search every example (in eval mode, in batches of similar length); results in input order.

    ``options``: beam size, length penalty, output length limits and batch size, each of which
    ``beam_size`` and ``batch_size`` may override.
    """
    return [best for best, *_ in decode_n_best(network, examples, options, 1, beam_size, batch_size, need_weights)]


def decode_n_best(network: Seq2Seq, examples: Sequence[Example], options: EvaluationConfig, n_best: int,
                  beam_size: int | None = None, batch_size: int | None = None,
                  need_weights: bool = False) -> list[list[Hypothesis]]:
    """Up to ``n_best`` hypotheses per example, best first (``n_best <= beam_size``); in input order.
    The first of each is what ``decode_examples`` returns."""
    return in_length_batches(network, examples, batch_size or options.batch_size, lambda batch, _: search_n_best(
        network, batch.src, batch.src_lengths, options, n_best, beam_size, need_weights, batch.readings))


def search_n_best(network: Seq2Seq, src: Tensor, src_lengths: Tensor, options: EvaluationConfig, n_best: int,
                  beam_size: int | None = None, need_weights: bool = False,
                  readings: Sequence[tuple[Tensor, Tensor]] = ()) -> list[list[Hypothesis]]:
    """``search``, keeping up to ``n_best`` hypotheses per input (at most the beam size), best first."""
    beam_size = beam_size or options.beam_size
    if not 1 <= n_best <= beam_size:
        raise ValueError(f"n_best must be between 1 and the beam size ({beam_size}), got {n_best}")
    max_lengths = max_output_lengths(src_lengths, options.max_length_ratio, options.max_length_offset)
    if beam_size == 1:
        return [[h] for h in greedy_search(network, src, src_lengths, max_lengths, need_weights, readings,
                                           options.length_penalty)]
    candidates = _beam_candidates(network, src, src_lengths, max_lengths, beam_size, options.length_penalty,
                                  need_weights, readings)
    return [c[:n_best] for c in candidates]


def search(network: Seq2Seq, src: Tensor, src_lengths: Tensor, options: EvaluationConfig,
           beam_size: int | None = None, need_weights: bool = False,
           readings: Sequence[tuple[Tensor, Tensor]] = ()) -> list[Hypothesis]:
    """Greedy search for a beam of 1, beam search otherwise (``beam_size``, default
    ``options.beam_size``); one hypothesis per input, its length limited per ``options``.
    ``readings``: the batch's ``Batch.readings``, for ensembles whose members read the source
    differently (here and below)."""
    return [best for best, *_ in search_n_best(network, src, src_lengths, options, 1, beam_size, need_weights,
                                               readings)]


def greedy_search(network: Seq2Seq, src: Tensor, src_lengths: Tensor, max_lengths: Tensor,
                  need_weights: bool = False, readings: Sequence[tuple[Tensor, Tensor]] = (),
                  length_penalty: float = 1.0) -> list[Hypothesis]:
    """Each input's most likely next token, step by step, until ``<eos>`` or its length limit."""
    return _token_by_token(network, src, src_lengths, max_lengths, _most_likely, need_weights, readings,
                           length_penalty)


def _most_likely(log_probs: Tensor, logits: Tensor, inputs: list[int]) -> tuple[Tensor, Tensor]:
    best_log_probs, best = log_probs.max(dim=-1)
    return best, best_log_probs


@torch.no_grad()
def _token_by_token(network: Seq2Seq, src: Tensor, src_lengths: Tensor, max_lengths: Tensor,
                    choose: Callable[[Tensor, Tensor, list[int]], tuple[Tensor, Tensor]],
                    need_weights: bool, readings: Sequence[tuple[Tensor, Tensor]] = (),
                    length_penalty: float = 1.0) -> list[Hypothesis]:
    """Decode one chosen token a step per input until ``<eos>`` or its length limit (greedy search,
    sampling): ``choose(log_probs [b, V], logits [b, V], inputs) -> (tokens [b], their log-probs [b])``,
    ``inputs`` being the input index of each row.  Inputs that finish leave the batch; ``log_prob`` is
    the summed log-probs of the chosen tokens, ``score`` that over the steps taken ** ``length_penalty``
    (as beam search scores)."""
    batch, max_lengths = src.size(0), max_lengths.cpu()
    state = network.start_decoding(network.encode(src, src_lengths, *readings))
    alive = torch.arange(batch)                      # input index of each row still decoding
    previous = torch.full((batch,), BOS_INDEX, dtype=torch.long, device=src.device)
    tokens: list[list[int]] = [[] for _ in range(batch)]
    attentions: list[list[Tensor]] = [[] for _ in range(batch)]
    scores = [0.0] * batch
    for step in range(int(max_lengths.max())):
        logits, attention, state = network.decode(previous[:, None], state, need_weights)
        log_probs = torch.log_softmax(logits[:, 0].float(), dim=-1)  # [b, V]
        inputs = alive.tolist()
        chosen, chosen_scores = choose(log_probs, logits[:, 0], inputs)  # [b], [b]
        for row, (index, token, score) in enumerate(zip(inputs, chosen.tolist(), chosen_scores.tolist())):
            scores[index] += score
            if token != EOS_INDEX:
                tokens[index].append(token)
                if need_weights:
                    attentions[index].append(attention[row, 0].float().cpu())
        done = (chosen == EOS_INDEX).cpu() | (max_lengths[alive] <= step + 1)
        if done.all():
            break
        if done.any():
            keep = (~done).nonzero().flatten()
            alive, state = alive[keep], state.select(keep.to(src.device))
            chosen = chosen[keep.to(src.device)]
        previous = chosen
    steps = [len(tokens[i]) + (len(tokens[i]) < int(max_lengths[i])) for i in range(batch)]  # + <eos> if chosen
    return [Hypothesis(tokens[i], scores[i] / steps[i] ** length_penalty,
                       _stack(attentions[i], src.size(1)) if need_weights else None, scores[i]) for i in range(batch)]


def beam_search(network: Seq2Seq, src: Tensor, src_lengths: Tensor, max_lengths: Tensor, beam_size: int,
                length_penalty: float = 1.0, need_weights: bool = False,
                readings: Sequence[tuple[Tensor, Tensor]] = ()) -> list[Hypothesis]:
    """Beam search with ``beam_size`` beams per input: the best hypothesis of each (``_beam_candidates``)."""
    return [candidates[0] for candidates in _beam_candidates(network, src, src_lengths, max_lengths, beam_size,
                                                             length_penalty, need_weights, readings)]


@torch.no_grad()
def _beam_candidates(network: Seq2Seq, src: Tensor, src_lengths: Tensor, max_lengths: Tensor, beam_size: int,
                     length_penalty: float = 1.0, need_weights: bool = False,
                     readings: Sequence[tuple[Tensor, Tensor]] = ()) -> list[list[Hypothesis]]:
    """Beam search with ``beam_size`` beams per input; every finished hypothesis of each, best first.

    Each step takes the best ``2 * beam_size`` continuations of an input: ``<eos>`` ones within the
    top ``beam_size`` become finished hypotheses (score divided by ``length ** length_penalty``,
    ``<eos>`` counted), the best ``beam_size`` others continue.  An input is done once it has
    ``beam_size`` finished hypotheses or reaches its length limit (its open beams are then finished).
    """
    batch, k, device = src.size(0), beam_size, src.device
    source_length = src.size(1)
    state = network.start_decoding(network.encode(src, src_lengths, *readings))
    state = state.select(torch.arange(batch, device=device).repeat_interleave(k))
    alive = torch.arange(batch)                                          # input index per beam group
    beam_scores = torch.full((batch, k), float("-inf"), device=device)
    beam_scores[:, 0] = 0.0
    history = torch.empty(batch * k, 0, dtype=torch.long, device=device)  # [b*k, t]
    attention_history = torch.empty(batch * k, 0, source_length, device=device)
    previous = torch.full((batch * k,), BOS_INDEX, dtype=torch.long, device=device)
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]

    for step in range(int(max_lengths.max())):
        groups = alive.numel()
        logits, attention, state = network.decode(previous[:, None], state, need_weights)
        log_probs = torch.log_softmax(logits[:, 0].float(), dim=-1)              # [b*k, V]
        vocab = log_probs.size(-1)
        totals = (beam_scores.view(-1, 1) + log_probs).view(groups, k * vocab)
        top_scores, top_index = totals.topk(min(2 * k, k * vocab), dim=1)       # [b, 2k]
        origin = torch.div(top_index, vocab, rounding_mode="floor")
        token = top_index % vocab
        parent = origin + torch.arange(groups, device=device)[:, None] * k    # flat row of the parent
        is_eos = (token == EOS_INDEX) & torch.isfinite(top_scores)
        if need_weights:
            step_attention = attention[:, 0].float()                            # [b*k, S]

        # <eos> among the top k: a finished hypothesis
        ranks = torch.arange(top_scores.size(1), device=device)
        for g, j in (is_eos & (ranks < k)).nonzero().tolist():
            row, total = int(parent[g, j]), float(top_scores[g, j])
            finished[int(alive[g])].append(Hypothesis(history[row].tolist(), total / (step + 1) ** length_penalty,
                                                      attention_history[row] if need_weights else None, total))
        # the best k that are not <eos> continue (there are always k: each beam adds at most one <eos>)
        continuing = (~is_eos) & (torch.cumsum((~is_eos).long(), dim=1) <= k)
        select = continuing.nonzero()[:, 1].view(groups, k)                    # [b, k] candidate columns
        rows = parent.gather(1, select).flatten()
        beam_scores = top_scores.gather(1, select)
        previous = token.gather(1, select).flatten()
        history = torch.cat([history[rows], previous[:, None]], dim=1)
        if need_weights:
            attention_history = torch.cat([attention_history[rows], step_attention[rows][:, None]], dim=1)
        state = state.reorder(rows)  # rows stay within their input's beams: memory and mask need not move

        # inputs at their length limit: open beams become finished as they are
        at_limit = (max_lengths[alive] <= step + 1).tolist()
        for g, limited in enumerate(at_limit):
            if limited:
                for b in range(k):
                    row = g * k + b
                    total = float(beam_scores[g, b])
                    if math.isfinite(total):
                        finished[int(alive[g])].append(Hypothesis(
                            history[row].tolist(), total / (step + 1) ** length_penalty,
                            attention_history[row] if need_weights else None, total))
        done = torch.tensor([limited or len(finished[int(i)]) >= k for i, limited in zip(alive, at_limit)])
        if done.all():
            break
        if done.any():
            keep_groups = (~done).nonzero().flatten()
            keep_rows = (keep_groups[:, None] * k + torch.arange(k)).flatten().to(device)
            alive, beam_scores = alive[keep_groups], beam_scores[keep_groups.to(device)]
            history, previous, state = history[keep_rows], previous[keep_rows], state.select(keep_rows)
            if need_weights:
                attention_history = attention_history[keep_rows]

    ranked = []
    for options in finished:  # stable: of equal scores, the one finished first
        ranked.append([dataclasses.replace(h, attention=h.attention.cpu() if h.attention is not None else None)
                       for h in sorted(options, key=lambda h: -h.score)])
    return ranked


@dataclass(frozen=True)
class Sampling:
    """Sampling instead of search: each next token drawn from the model's distribution divided by
    ``temperature``, kept to the ``top_k`` most likely tokens or to the smallest set whose
    probability reaches ``top_p`` (nucleus), or neither; reproducible for ``seed``."""

    top_k: int | None = None
    top_p: float | None = None
    temperature: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.top_k is not None and self.top_p is not None:
            raise ValueError("sample with top_k or with top_p, not both")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {self.top_k}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not (self.temperature > 0.0 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature must be a positive number, got {self.temperature}")

    def generator(self, source: Sequence[int]) -> torch.Generator:
        """The random stream of one input: a function of the seed and the source's token ids only, so
        an input samples the same whatever its batch, position or batch mates."""
        digest = hashlib.sha256(f"{self.seed}:{','.join(map(str, source))}".encode()).digest()
        return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)

    def probabilities(self, logits: Tensor) -> Tensor:
        """``logits [b, V]`` -> the distribution to draw from, ``[b, V]`` float32."""
        # in float64, the largest logit as 0 before dividing: a tiny temperature (any positive float)
        # then sends the others to -inf (probability 0), never the largest to +inf or 0/0 (NaN)
        logits = logits.double()
        logits = (logits - logits.max(dim=-1, keepdim=True).values) / self.temperature
        if self.top_k is not None:
            kth = logits.topk(min(self.top_k, logits.size(-1)), dim=-1).values[:, -1:]  # [b, 1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        if self.top_p is not None:
            sorted_probs, order = probs.sort(dim=-1, descending=True)
            before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass of the more likely tokens
            keep = torch.zeros_like(probs, dtype=torch.bool).scatter(-1, order, before < self.top_p)
            probs = probs.masked_fill(~keep, 0.0)
        return probs.float()


def decode_samples(network: Seq2Seq, examples: Sequence[Example], options: EvaluationConfig, sampling: Sampling,
                   batch_size: int | None = None) -> list[Hypothesis]:
    """One sampled output per example (length limits per ``options``), in input order."""
    def sample_batch(batch: Batch, positions: list[int]) -> list[Hypothesis]:
        max_lengths = max_output_lengths(batch.src_lengths, options.max_length_ratio, options.max_length_offset)
        generators = [sampling.generator(examples[i].src) for i in positions]
        return sample_search(network, batch.src, batch.src_lengths, max_lengths, sampling, generators,
                             batch.readings, options.length_penalty)
    return in_length_batches(network, examples, batch_size or options.batch_size, sample_batch)


def sample_search(network: Seq2Seq, src: Tensor, src_lengths: Tensor, max_lengths: Tensor, sampling: Sampling,
                  generators: Sequence[torch.Generator], readings: Sequence[tuple[Tensor, Tensor]] = (),
                  length_penalty: float = 1.0) -> list[Hypothesis]:
    """Greedy search's loop with each next token drawn (``sampling``) from the input's own
    ``generators[i]``; ``log_prob``: the summed log-probs of the drawn tokens under the model,
    ``score``: as greedy search gives it."""
    def draw(log_probs: Tensor, logits: Tensor, inputs: list[int]) -> tuple[Tensor, Tensor]:
        probs = sampling.probabilities(logits).cpu()
        drawn = [int(torch.multinomial(probs[row], 1, generator=generators[index])) for row, index in enumerate(inputs)]
        tokens = torch.tensor(drawn, device=logits.device)
        return tokens, log_probs.gather(1, tokens[:, None]).squeeze(1)
    return _token_by_token(network, src, src_lengths, max_lengths, draw, False, readings, length_penalty)


def _stack(rows: list[Tensor], width: int) -> Tensor:
    return torch.stack(rows) if rows else torch.zeros(0, width)
