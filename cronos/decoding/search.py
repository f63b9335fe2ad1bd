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
(docs/batch_invariance.md).  Each
input gets at most ``ceil(max_length_ratio * source_length) + max_length_offset`` output tokens
(``options``: the config's ``decoding`` section, which also holds the length penalty and the batch size).
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass
from typing import Callable, Generator, Iterator, NamedTuple, Protocol, Sequence

import torch
from torch import Tensor

from ..config import MAX_BEAM_SIZE, DecodingConfig
from ..data import Batch, Example
from ..data.vocab import BOS_INDEX, EOS_INDEX
from .banks import Banks, Chosen
from .controls import NO_GUIDE, Guide, LengthPenalty, Ranking, StepRules
from .inference import check_numbers, in_length_batches
from ..modules.invariance import rows_to_add
from ..modules.network import Seq2Seq

__all__ = ["Hypothesis", "Strategy", "Greedy", "Beam", "Sampling", "decode", "search_batch", "searching",
           "max_output_lengths", "run_alone", "DecoderStep", "StepOutput", "Search", "SearchStopped", "Stop"]

Stop = Callable[[], bool]  # asked before each step: True ends the search (SearchStopped)


class DecoderStep(NamedTuple):
    """One step a search asks of the network: each row's last token ``[rows]`` and the decoder state."""

    tokens: Tensor
    state: object
    need_weights: bool


StepOutput = tuple[Tensor, "Tensor | None", object]  # logits [rows, 1, V], attention [rows, 1, S] or None, state
Search = Generator[DecoderStep, StepOutput, "list[list[Hypothesis]]"]  # a search's steps, then its hypotheses


@torch.no_grad()
def run_alone(network: Seq2Seq, search: Search) -> list[list[Hypothesis]]:
    """Run ``search``'s decoder steps one after the other on ``network`` (without autograd, as
    every driver of a search does: its encoder and bookkeeping run as it is advanced); its hypotheses."""
    try:
        step = next(search)
        while True:
            step = search.send(network.run_decoder(step.tokens[:, None], step.state, step.need_weights))
    except StopIteration as end:
        return end.value


class SearchStopped(Exception):
    """A search ended before its outputs were found, because its ``stop`` said so."""


@dataclass(frozen=True)
class Hypothesis:
    tokens: list[int]          # output token ids, without <eos> (a forced prefix's included)
    score: float               # what ranks hypotheses (``controls.Ranking``): log_prob / length penalty (length:
                               # tokens + <eos>), plus the coverage penalty when it is weighted
    attention: Tensor | None   # [len(tokens), S] over the batch's padded source, pad columns exactly 0
    log_prob: float            # sum of the tokens' log-probs, <eos> included when the output ended with it


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
    rules = StepRules(list(guides or [NO_GUIDE] * batch.size), options.min_length, options.no_repeat_ngram_size)
    ranking = Ranking(LengthPenalty(options.length_penalty, options.length_penalty_form), options.coverage_penalty)
    max_lengths = max_output_lengths(batch.src_lengths, options.max_length_ratio, options.max_length_offset)
    return strategy.steps(network, batch, max_lengths + rules.extra_lengths(), rules, ranking, need_weights, stop)


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
        candidates = yield from _beam_candidates(network, batch, max_lengths, self.size, rules, ranking, need_weights,
                                                 stop)
        return [found[: self.n_best] for found in candidates]


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
        log_probs, logits = _allowed(rules, step, inputs, history, logits[:, 0])  # [b, V] each
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
        keep = _rows_in_flight(finished[alive])
        if keep.numel() < alive.numel():
            alive, state = alive[keep], state.select(keep.to(src.device))
            chosen, history = chosen[keep.to(src.device)], history[keep.to(src.device)]
        previous = chosen
    steps = [len(tokens[i]) + (len(tokens[i]) < int(max_lengths[i])) for i in range(size)]  # + <eos> if chosen
    src_lengths = batch.src_lengths.tolist()
    found = [_stack(attentions[i], src.size(1)) if need_weights else None for i in range(size)]
    return [Hypothesis(tokens[i], ranking.score(scores[i], steps[i], found[i], src_lengths[i]), found[i], scores[i])
            for i in range(size)]


def _allowed(rules: StepRules, step: int, inputs: list[int], history: Tensor,
             logits: Tensor) -> tuple[Tensor, Tensor]:
    """A step's ``logits [rows, V]`` -> ``(log_probs, logits)`` over the tokens ``rules`` allow: the
    blocked ones' logits at -inf before the distribution is normalised (as CTranslate2 does), so a
    forced token has probability 1 and the others share what the blocked ones leave.  Log-probs in
    float32; each strategy refuses a NaN among them (``inference.NonFiniteOutput``) where it is
    cheapest to see: in the best of each row or group (``max`` and ``topk`` put a NaN first)."""
    blocked = rules.blocked(step, inputs, history, logits.size(-1))
    if blocked is not None:
        logits = logits.masked_fill(blocked, float("-inf"))
    return torch.log_softmax(logits.float(), dim=-1), logits


def _steps(count: int, stop: Stop | None) -> Iterator[int]:
    """The steps of a search, each after asking ``stop``."""
    for step in range(count):
        if stop is not None and stop():
            raise SearchStopped()
        yield step


def _rows_in_flight(done: Tensor) -> Tensor:
    """Which rows (or beam groups) stay in the batch: every one not ``done`` (``[b]``, bool, CPU), then
    as many done ones as filler rows as make their number a multiple of ``invariance.ROW_MULTIPLE``;
    in batch order.  A row's bits would not move without them (the decoder's products widen 1-3 rows
    themselves, ``linear.linear_by_rows``), but each change of the rows moves the decoder's state
    (its memory and caches): rows leave four at a time, which measured faster than one at a time
    (docs/BENCHMARKS.md, 2026-12-07)."""
    running = (~done).nonzero().flatten()
    fillers = done.nonzero().flatten()[: rows_to_add(running.numel())]
    return torch.cat([running, fillers]).sort().values


def _beam_candidates(network: Seq2Seq, batch: Batch, max_lengths: Tensor, beam_size: int, rules: StepRules,
                     ranking: Ranking, need_weights: bool, stop: Stop | None) -> Search:
    """Beam search with ``beam_size`` beams per input; every finished hypothesis of each, best first.

    Each step takes the best ``2 * beam_size`` continuations of an input, none that ``rules``
    blocks: ``<eos>`` ones within the top ``beam_size`` become finished hypotheses (scored by
    ``ranking``, ``<eos>`` counted in the length), the best ``beam_size`` others continue.  An input
    is done once it has ``beam_size`` finished hypotheses or reaches its length limit (its open
    beams are then finished).
    """
    size, k, device = batch.size, beam_size, batch.src.device
    need_weights = need_weights or ranking.needs_attention
    state = network.start_decoder(network.encode(batch.src, batch.src_lengths, *batch.readings))
    state = state.repeated(k)  # [b*k] rows, each input's memory shared by its beams
    alive = torch.arange(size)                                           # input index per beam group
    beam_scores = torch.full((size, k), float("-inf"), device=device)
    beam_scores[:, 0] = 0.0                                              # one live beam per input at first
    paths = _Paths(torch.empty(size * k, 0, dtype=torch.long, device=device),  # [b*k, t], [b*k, t, S]
                   torch.empty(size * k, 0, batch.src.size(1), device=device) if need_weights else None)
    previous = torch.full((size * k,), BOS_INDEX, dtype=torch.long, device=device)
    finished = _Finished(ranking, batch.src_lengths.tolist())
    done = torch.zeros(size, dtype=torch.bool)                           # per input
    banks = Banks(rules.guides, k) if rules.constrained else None        # lexical constraints: banks.py

    for step in _steps(int(max_lengths.max()), stop):
        logits, attention, state = yield DecoderStep(previous, state, need_weights)
        rows_inputs = alive.repeat_interleave(k).tolist()
        log_probs, _ = _allowed(rules, step, rows_inputs, paths.tokens, logits[:, 0])
        top = _best_continuations(beam_scores, log_probs, k)  # [b, 2k] each
        chosen = _plain_choice(top, k) if banks is None else banks.select(beam_scores, log_probs, top, alive.tolist())
        for g, row, score in chosen.ended:  # <eos> among the top k: a finished hypothesis
            if not done[alive[g]]:  # not a filler group
                finished.add(int(alive[g]), paths.tokens[row], score, step, paths.attention_of(row))
        rows, beam_scores, previous = chosen.rows, chosen.scores, chosen.tokens
        paths = paths.extended(rows, previous, attention)

        # inputs at their length limit: open beams become finished as they are (an output that holds
        # not every constraint ranks after those that do)
        at_limit = (max_lengths[alive] <= step + 1).tolist()
        for g, limited in enumerate(at_limit):
            for row in range(g * k, g * k + k) if limited and not done[alive[g]] else ():
                finished.add(int(alive[g]), paths.tokens[row], float(beam_scores.view(-1)[row]), step,
                             paths.attention_of(row), banks is None or banks.complete(row, int(alive[g])))
        done[alive] |= torch.tensor([limited or finished.count(int(i)) >= k for i, limited in zip(alive, at_limit)])
        if done.all():
            break
        keep_groups = _rows_in_flight(done[alive])
        if keep_groups.numel() == alive.numel():
            state = state.reorder(rows)  # rows stay within their input's beams: memory and mask need not move
            continue
        keep_rows = (keep_groups[:, None] * k + torch.arange(k)).flatten().to(device)
        if banks is not None:
            banks.take(keep_rows.tolist())
        alive, beam_scores = alive[keep_groups], beam_scores[keep_groups.to(device)]
        paths, previous = paths.take(keep_rows), previous[keep_rows]
        state = state.select(rows[keep_rows])  # one move: the beams' reorder and the inputs that stay

    return finished.ranked()


def _plain_choice(top: tuple[Tensor, Tensor, Tensor], k: int) -> Chosen:
    """Beam search's step without constraints: of each group's best ``2k`` continuations (``top``),
    the ``<eos>`` ones among the first ``k`` end, and the best ``k`` others go on (there are always
    ``k``: each beam adds at most one ``<eos>``)."""
    top_scores, origin, token = top
    groups, device = top_scores.size(0), top_scores.device
    parent = origin + torch.arange(groups, device=device)[:, None] * k    # flat row of the parent
    is_eos = (token == EOS_INDEX) & torch.isfinite(top_scores)
    ended = [(g, int(parent[g, j]), float(top_scores[g, j]))
             for g, j in (is_eos & (torch.arange(top_scores.size(1), device=device) < k)).nonzero().tolist()]
    continuing = (~is_eos) & (torch.cumsum((~is_eos).long(), dim=1) <= k)
    select = continuing.nonzero()[:, 1].view(groups, k)                    # [b, k] candidate columns
    return Chosen(ended, parent.gather(1, select).flatten(), token.gather(1, select).flatten(),
                  top_scores.gather(1, select))


def _best_continuations(beam_scores: Tensor, log_probs: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """The best ``2k`` continuations of each input's ``k`` beams (``beam_scores [b, k]``, ``log_probs
    [b*k, V]``): their total log-probs, the beam each continues and its token, ``[b, 2k]`` each."""
    groups, vocab = beam_scores.size(0), log_probs.size(-1)
    totals = (beam_scores.view(-1, 1) + log_probs).view(groups, k * vocab)
    top_scores, top_index = totals.topk(min(2 * k, k * vocab), dim=1)
    check_numbers(top_scores[:, :1], infinite_too=False)  # a NaN ranks above every number: first if a group holds one
    return top_scores, torch.div(top_index, vocab, rounding_mode="floor"), top_index % vocab


class _Paths(NamedTuple):
    """Each beam row's tokens so far ``[rows, t]`` and, when weights are wanted, its attention ``[rows, t, S]``."""

    tokens: Tensor
    attention: Tensor | None

    def extended(self, rows: Tensor, tokens: Tensor, attention: Tensor | None) -> "_Paths":
        """The paths of ``rows``, each one step longer: ``tokens [rows]``, the step's ``attention [all rows, 1, S]``."""
        if self.attention is None:
            return _Paths(torch.cat([self.tokens[rows], tokens[:, None]], dim=1), None)
        return _Paths(torch.cat([self.tokens[rows], tokens[:, None]], dim=1),
                      torch.cat([self.attention[rows], attention[:, 0].float()[rows][:, None]], dim=1))

    def take(self, rows: Tensor) -> "_Paths":
        return _Paths(self.tokens[rows], None if self.attention is None else self.attention[rows])

    def attention_of(self, row: int) -> Tensor | None:
        return None if self.attention is None else self.attention[row]


class _Finished:
    """Each input's finished hypotheses in a beam search (``src_lengths``: each input's real source
    tokens, for the coverage penalty)."""

    def __init__(self, ranking: Ranking, src_lengths: list[int]):
        self.lists: list[list[tuple[Hypothesis, bool]]] = [[] for _ in src_lengths]
        self.ranking, self.src_lengths = ranking, src_lengths

    def add(self, index: int, tokens: Tensor, total: float, step: int, attention: Tensor | None,
            complete: bool = True) -> None:
        """A hypothesis of input ``index`` that ends after ``step`` (its log-prob ``total``; none when -inf);
        ``complete``: it holds every constraint of its input."""
        if math.isfinite(total):
            score = self.ranking.score(total, step + 1, attention, self.src_lengths[index])
            self.lists[index].append((Hypothesis(tokens.tolist(), score, attention, total), complete))

    def count(self, index: int) -> int:
        """The complete hypotheses of input ``index``."""
        return sum(complete for _, complete in self.lists[index])

    def ranked(self) -> list[list[Hypothesis]]:
        """Complete ones first, then best first; stable: of equal scores, the one finished first."""
        return [[dataclasses.replace(h, attention=h.attention.cpu() if h.attention is not None else None)
                 for h, _ in sorted(options, key=lambda entry: (not entry[1], -entry[0].score))]
                for options in self.lists]


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
