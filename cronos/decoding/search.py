"""Search (greedy, beam with n-best lists) and sampling: batched, masked, and independent of batch mates.

    hypotheses = decode(network, codec.encode(sources), Beam(5, n_best=3), config.decoding)  # input order
    hypotheses = decode(network, examples, Greedy(), options)          # one list of one per example
    hypotheses = decode(network, examples, Sampling(top_k=10), options)
    found = search_batch(network, batch, Beam(5), options)              # one collated batch

Every strategy returns a list of hypotheses per input, best first.  The encoder runs once per
batch; the decoder state carries the memory projections and the source mask, so every step
attends with the mask.  Inputs that finish leave the batch, four at a time (those between are
filler rows, whose results are not read), so they stop costing compute; the decoder's products
keep their own rows to at least 4, so an example's bits do not depend on how many rows are left
(docs/batch_invariance.md).  Each input gets at most ``ceil(max_length_ratio * source_length) +
max_length_offset`` output tokens (``options``: the config's ``decoding`` section, which also holds
the length penalty and the batch size).  Beam search itself is ``beam.py``, whose search a server's
batches join in flight (``Beam.in_flight``, ``arrival_of``).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Callable, Generator, Iterator, Protocol, Sequence

import torch
from torch import Tensor

from ..config import MAX_BEAM_SIZE, DecodingConfig
from ..data import Batch, Example
from ..data.vocab import BOS_INDEX, EOS_INDEX
from .beam import Answer, Arrival, Joining, beam_search, beam_search_in_flight
from .controls import NO_GUIDE, Guide, LengthPenalty, Ranking, StepRules, extra_lengths
from .inference import check_numbers, in_length_batches
from ..modules.network import Seq2Seq
from .steps import (DecoderStep, Hypothesis, Search, SearchStopped, StepOutput, Stop, allowed, rows_in_flight,
                    run_alone)

__all__ = ["Hypothesis", "Strategy", "Greedy", "Beam", "Sampling", "decode", "search_batch", "searching",
           "max_output_lengths", "run_alone", "DecoderStep", "StepOutput", "Search", "SearchStopped", "Stop",
           "controls_of", "arrival_of"]


class Strategy(Protocol):
    """How outputs are found for one batch: ``Greedy``, ``Beam``, ``Sampling``."""

    def steps(self, network: Seq2Seq, batch: Batch, max_lengths: Tensor, rules: StepRules, ranking: Ranking,
              need_weights: bool, stop: Stop | None = None) -> Search: ...


def max_output_lengths(src_lengths: Tensor, ratio: float, offset: int) -> Tensor:
    """Most output tokens (``<eos>`` included) per input: ``ceil(ratio * length) + offset``, at least 1."""
    return torch.clamp(torch.ceil(src_lengths.double() * ratio).long() + offset, min=1)


def decode(network: Seq2Seq, examples: Sequence[Example], strategy: Strategy, options: DecodingConfig,
           batch_size: int | None = None, need_weights: bool = False, stop: Stop | None = None,
           guides: Sequence[Guide] | None = None) -> list[list[Hypothesis]]:
    """``strategy``'s hypotheses for every example, best first (in eval mode, in batches of similar
    length, ``batch_size`` or ``options.batch_size`` at a time); in input order.  ``stop``: asked
    before every step; when it says so, the search ends with ``SearchStopped`` (a server whose
    clients all went away).  ``guides``: one per example (its forced prefix), or None."""
    def run_batch(batch: Batch, positions: list[int]) -> list[list[Hypothesis]]:
        rows = None if guides is None else [guides[p] for p in positions]
        return search_batch(network, batch, strategy, options, need_weights, stop, rows)
    return in_length_batches(network, examples, batch_size or options.batch_size, run_batch)


def search_batch(network: Seq2Seq, batch: Batch, strategy: Strategy, options: DecodingConfig,
                 need_weights: bool = False, stop: Stop | None = None,
                 guides: Sequence[Guide] | None = None) -> list[list[Hypothesis]]:
    """``strategy``'s hypotheses for each input of one collated ``batch`` (its ``readings`` too,
    for ensembles whose members read the source differently), under ``options``'s controls and
    each row's ``guides``; an input's length limit counts from its forced prefix."""
    return run_alone(network, searching(network, batch, strategy, options, need_weights, stop, guides))


def searching(network: Seq2Seq, batch: Batch, strategy: Strategy, options: DecodingConfig,
              need_weights: bool = False, stop: Stop | None = None, guides: Sequence[Guide] | None = None) -> Search:
    """``search_batch`` as the steps it asks of the network (``DecoderStep``), its hypotheses at
    the end: for a driver that runs the steps of several searches together (``in_flight.py``).
    Nothing runs until the first step is asked for; the encoder runs then.  ``guides``: one per
    input, or None (none)."""
    guides = list(guides or [NO_GUIDE] * batch.size)
    rules, ranking = controls_of(options, guides)
    return strategy.steps(network, batch, _length_limits(batch, options, guides), rules, ranking, need_weights, stop)


def controls_of(options: DecodingConfig, guides: Sequence[Guide] = ()) -> tuple[StepRules, Ranking]:
    """What ``options`` (and each input's guide) control in a search: the tokens a step may not
    choose, and how finished hypotheses rank."""
    rules = StepRules(guides, options.min_length, options.no_repeat_ngram_size)
    return rules, Ranking(LengthPenalty(options.length_penalty, options.length_penalty_form), options.coverage_penalty)


def arrival_of(batch: Batch, options: DecodingConfig, guides: Sequence[Guide] | None, answer: Answer,
               stop: Stop | None = None, failed: Callable[[Exception], None] | None = None) -> Arrival:
    """``batch`` as it joins a beam search in flight (``beam.beam_search_in_flight``), with its
    length limits under ``options`` and its guides (None: none)."""
    guides = list(guides or [NO_GUIDE] * batch.size)
    return Arrival(batch, _length_limits(batch, options, guides), guides, answer, stop, failed)


def _length_limits(batch: Batch, options: DecodingConfig, guides: Sequence[Guide]) -> Tensor:
    """``[B]``: each input's most output tokens, its forced and constraint tokens on top."""
    limits = max_output_lengths(batch.src_lengths, options.max_length_ratio, options.max_length_offset)
    return limits + extra_lengths(guides)


@dataclass(frozen=True)
class Greedy:
    """Each input's most likely next token, step by step, until ``<eos>`` or its length limit."""

    def steps(self, network: Seq2Seq, batch: Batch, max_lengths: Tensor, rules: StepRules, ranking: Ranking,
              need_weights: bool, stop: Stop | None = None) -> Search:
        found = yield from _token_by_token(network, batch, max_lengths, _most_likely, rules, ranking, need_weights,
                                           stop)
        return [[h] for h in found]


@dataclass(frozen=True)
class Beam:
    """Beam search with ``size`` beams per input, keeping the best ``n_best`` hypotheses of each
    (at most ``size``); a beam of one is greedy search."""

    size: int
    n_best: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.size <= MAX_BEAM_SIZE:
            raise ValueError(f"the beam size must be between 1 and {MAX_BEAM_SIZE}, got {self.size}")
        if not 1 <= self.n_best <= self.size:
            raise ValueError(f"n_best must be between 1 and the beam size ({self.size}), got {self.n_best}")

    def steps(self, network: Seq2Seq, batch: Batch, max_lengths: Tensor, rules: StepRules, ranking: Ranking,
              need_weights: bool, stop: Stop | None = None) -> Search:
        if self.size == 1 and not rules.constrained:
            return (yield from Greedy().steps(network, batch, max_lengths, rules, ranking, need_weights, stop))
        found: list[list[Hypothesis]] = [[] for _ in range(batch.size)]
        guides = [rules.guides[i] for i in range(batch.size)]
        yield from beam_search(network, Arrival(batch, max_lengths, guides, found.__setitem__, stop), self.size, rules,
                               ranking, need_weights, self.n_best)
        return found

    def in_flight(self, network: Seq2Seq, joining: Joining, options: DecodingConfig,
                  need_weights: bool = False) -> Search:
        """A beam search in flight that takes each batch posted to ``joining`` (``arrival_of``) as it
        comes, at the step it comes, and answers each input the step it ends (``beam.py``).  Its
        settings are this beam's and ``options``'s; each batch brings its own guides."""
        rules, ranking = controls_of(options)
        return beam_search_in_flight(network, joining, self.size, rules, ranking, need_weights, self.n_best)


def _most_likely(log_probs: Tensor, logits: Tensor, inputs: list[int]) -> tuple[Tensor, Tensor]:
    best_log_probs, best = log_probs.max(dim=-1)  # NaN where a row holds one: max passes it on
    return best, check_numbers(best_log_probs, infinite_too=False)


def _token_by_token(network: Seq2Seq, batch: Batch, max_lengths: Tensor,
                    choose: Callable[[Tensor, Tensor, list[int]], tuple[Tensor, Tensor]], rules: StepRules,
                    ranking: Ranking, need_weights: bool, stop: Stop | None) -> Generator[DecoderStep, StepOutput,
                                                                                           list[Hypothesis]]:
    """Decode one chosen token a step per input until ``<eos>`` or its length limit (greedy search,
    sampling): ``choose(log_probs [b, V], logits [b, V], inputs) -> (tokens [b], their log-probs [b])``,
    ``inputs`` being the input index of each row, both with what ``rules`` blocks at -inf.  Inputs
    that finish leave the batch; ``log_prob`` is the summed log-probs of the chosen tokens, ``score``
    as ``ranking`` ranks it (as beam search scores)."""
    src, size, max_lengths = batch.src, batch.size, max_lengths.cpu()
    need_weights = need_weights or ranking.needs_attention
    state = network.start_decoder(network.encode(src, batch.src_lengths, *batch.readings))
    alive = torch.arange(size)                       # input index of each row still decoding
    finished = torch.zeros(size, dtype=torch.bool)   # per input
    previous = torch.full((size,), BOS_INDEX, dtype=torch.long, device=src.device)
    history = torch.zeros(size, 0, dtype=torch.long, device=src.device)  # [b, step]: each row's tokens so far
    tokens: list[list[int]] = [[] for _ in range(size)]
    attentions: list[list[Tensor]] = [[] for _ in range(size)]
    scores = [0.0] * size
    for step in _steps(int(max_lengths.max()), stop):
        logits, attention, state = yield DecoderStep(previous, state, need_weights)
        inputs = alive.tolist()
        log_probs, logits = allowed(rules, [step] * len(inputs), inputs, history, logits[:, 0])  # [b, V] each
        chosen, chosen_scores = choose(log_probs, logits, inputs)  # [b], [b]
        for row, (index, token, score) in enumerate(zip(inputs, chosen.tolist(), chosen_scores.tolist())):
            if finished[index]:  # a filler row
                continue
            scores[index] += score
            if token != EOS_INDEX:
                tokens[index].append(token)
                if need_weights:
                    attentions[index].append(attention[row, 0].float().cpu())
        finished[alive] |= (chosen == EOS_INDEX).cpu() | (max_lengths[alive] <= step + 1)
        if finished.all():
            break
        history = torch.cat([history, chosen[:, None]], dim=1)
        keep = rows_in_flight(finished[alive])
        if keep.numel() < alive.numel():
            alive, state = alive[keep], state.select(keep.to(src.device))
            chosen, history = chosen[keep.to(src.device)], history[keep.to(src.device)]
        previous = chosen
    steps = [len(tokens[i]) + (len(tokens[i]) < int(max_lengths[i])) for i in range(size)]  # + <eos> if chosen
    src_lengths = batch.src_lengths.tolist()
    found = [_stack(attentions[i], src.size(1)) if need_weights else None for i in range(size)]
    return [Hypothesis(tokens[i], ranking.score(scores[i], steps[i], found[i], src_lengths[i]), found[i], scores[i])
            for i in range(size)]


def _steps(count: int, stop: Stop | None) -> Iterator[int]:
    """The steps of a search, each after asking ``stop``."""
    for step in range(count):
        if stop is not None and stop():
            raise SearchStopped()
        yield step


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

    def steps(self, network: Seq2Seq, batch: Batch, max_lengths: Tensor, rules: StepRules, ranking: Ranking,
              need_weights: bool, stop: Stop | None = None) -> Search:
        """Greedy search's loop with each next token drawn from the input's own generator;
        ``log_prob``: the summed log-probs of the drawn tokens under the model, ``score``: as
        greedy search gives it."""
        lengths = batch.src_lengths.tolist()
        generators = [self.generator(row[:length]) for row, length in zip(batch.src.tolist(), lengths)]

        def draw(log_probs: Tensor, logits: Tensor, inputs: list[int]) -> tuple[Tensor, Tensor]:
            check_numbers(log_probs, infinite_too=False)
            probs = self.probabilities(logits).cpu()
            drawn = [int(torch.multinomial(probs[row], 1, generator=generators[index]))
                     for row, index in enumerate(inputs)]
            tokens = torch.tensor(drawn, device=logits.device)
            return tokens, log_probs.gather(1, tokens[:, None]).squeeze(1)
        found = yield from _token_by_token(network, batch, max_lengths, draw, rules, ranking, need_weights, stop)
        return [[h] for h in found]

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


def _stack(rows: list[Tensor], width: int) -> Tensor:
    return torch.stack(rows) if rows else torch.zeros(0, width)
