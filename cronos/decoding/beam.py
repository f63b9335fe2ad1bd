"""Beam search whose inputs may join at any step: each decodes at its own step, and each is
answered the step it ends.

    search = BeamSearch(network, beams=5, rules=rules, ranking=ranking, need_weights=False)
    search.add(Arrival(batch, max_lengths, guides, answer))  # its encoder runs now
    while search:                                         # inputs still decoding
        step = search.request()                           # a DecoderStep
        search.advance(network.run_decoder(step.tokens[:, None], step.state, step.need_weights))
        # answer(index in its batch, hypotheses best first) as each input ends

Offline decoding adds one batch and steps until it ends (``beam_search``, behind
``search.Beam``).  A server adds the batches that come while it runs (``beam_search_in_flight``
over a ``Joining``): their rows join the decoder's batch at the next step, each with its own
step counter, length limit and guide, and the rows of an input that ends leave it, so the decoder
stays full (continuous batching).  Each input's rows, choices and hypotheses are its own: its
decoder rows get the bits they get alone (each batch's rows a part of the decoder state of their
own, ``modules/decoders.Parts``, docs/batch_invariance.md),
and its choices read its own rows with exact comparisons, so an input finds, to the bit, the
hypotheses it finds alone, whoever joins or leaves beside it (P0).

Each step takes the best ``2 * beams`` continuations of an input, none that ``rules`` blocks:
``<eos>`` ones within the top ``beams`` become finished hypotheses (scored by ``ranking``, ``<eos>``
counted in the length), the best ``beams`` others continue.  An input is done once it has
``beams`` finished hypotheses or reaches its length limit (its open beams are then finished).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

import torch
from torch import Tensor

from ..data import Batch
from ..data.vocab import BOS_INDEX, EOS_INDEX, PAD_INDEX
from ..modules.network import Seq2Seq
from .banks import Banks, Chosen
from .controls import Guide, Ranking, StepRules
from .inference import check_numbers
from .steps import DecoderStep, Hypothesis, Search, SearchStopped, StepOutput, Stop, allowed, rows_in_flight

__all__ = ["Arrival", "BeamSearch", "Joining", "beam_search", "beam_search_in_flight"]

Answer = Callable[[int, "list[Hypothesis]"], None]  # an input's index in its batch, its hypotheses best first


@dataclass(frozen=True, eq=False)  # compared by identity: a search counts the inputs each still waits for
class Arrival:
    """A batch that joins a beam search: each input's length limit (``<eos>`` included) and guide,
    ``answer`` for each input as it ends, ``stop`` asked before each step (True: its inputs
    leave, and ``failed`` is told ``SearchStopped``), ``failed`` for an error that ends them."""

    batch: Batch
    max_lengths: Tensor  # [B]
    guides: Sequence[Guide]
    answer: Answer
    stop: Stop | None = None
    failed: Callable[[Exception], None] | None = None


@dataclass
class _Group:
    """One input's beams: ``beams`` rows that follow each other in the decoder's batch."""

    input: int          # its number in the search
    arrival: Arrival
    index: int          # in its arrival's batch
    max_length: int
    width: int          # its batch's source width: its hypotheses' attention is as wide
    step: int = 0       # tokens decoded so far
    done: bool = False  # answered (its rows may stay a while as filler rows, their results not read)


class BeamSearch:
    """Beam search over the inputs of every ``Arrival`` added, each at its own step (module docstring)."""

    def __init__(self, network: Seq2Seq, beams: int, rules: StepRules, ranking: Ranking, need_weights: bool,
                 n_best: int | None = None):
        self.network, self.k, self.rules, self.ranking, self.n_best = network, beams, rules, ranking, n_best or beams
        self.need_weights = need_weights or ranking.needs_attention
        self.groups: list[_Group] = []
        self.state = None
        self.beam_scores = self.previous = torch.empty(0)  # [G, k], [G*k]
        self.paths = _Paths.none(0, self.need_weights)
        self.finished = _Finished(ranking)
        self.banks: Banks | None = None  # lexical constraints: banks.py
        self._inputs = 0
        self._left: dict[Arrival, int] = {}  # inputs each arrival still waits for

    def __bool__(self) -> bool:
        return bool(self._left)

    @property
    def arrivals(self) -> list[Arrival]:
        """The arrivals some of whose inputs still decode."""
        return list(self._left)

    def add(self, arrival: Arrival) -> None:
        """Start ``arrival``'s inputs: their encoder runs now, their rows decode from the next step on."""
        batch, k = arrival.batch, self.k
        constrained = any(guide.constraints for guide in arrival.guides)
        if self.groups and (constrained or self.banks is not None):
            raise ValueError("inputs with constraints decode in a search of their own")
        state = self.network.start_decoder(self.network.encode(batch.src, batch.src_lengths, *batch.readings))
        state = state.repeated(k)  # [b*k] rows, each input's memory shared by its beams
        inputs = list(range(self._inputs, self._inputs + batch.size))
        self._inputs += batch.size
        self.rules.add(inputs, arrival.guides)
        self.banks = Banks(arrival.guides, k) if constrained else None
        scores = torch.full((batch.size, k), float("-inf"), device=batch.src.device)
        scores[:, 0] = 0.0  # one live beam per input at first
        previous = torch.full((batch.size * k,), BOS_INDEX, dtype=torch.long, device=batch.src.device)
        if self.groups:  # rows at other steps: the newcomers' after them, a part of their own (``Parts``)
            self.state = self.state.beside(state, len(self.groups) * k, batch.size * k)
            self.beam_scores = torch.cat([self.beam_scores, scores])
            self.previous = torch.cat([self.previous, previous])
        else:
            self.state, self.beam_scores, self.previous = state, scores, previous
        self.paths = self.paths.joined(batch.size * k, batch.src.size(1), batch.src.device)
        max_lengths = arrival.max_lengths.tolist()
        self.groups += [_Group(number, arrival, i, max_lengths[i], batch.src.size(1))
                        for i, number in enumerate(inputs)]
        self.finished.start(inputs, batch.src_lengths.tolist())
        self._left[arrival] = batch.size

    def leave(self, arrival: Arrival) -> None:
        """``arrival``'s inputs leave unanswered (its caller went away)."""
        for group in self.groups:
            if group.arrival is arrival and not group.done:
                group.done = True
                self.finished.pop(group.input)
                self.rules.drop([group.input])
        self._left.pop(arrival, None)
        self._shed(torch.arange(len(self.groups) * self.k, device=self.previous.device))

    def request(self) -> DecoderStep:
        """The step the search asks of the network: each row's last token and the decoder state."""
        return DecoderStep(self.previous, self.state, self.need_weights)

    def advance(self, output: StepOutput) -> None:
        """Take the network's ``output`` for ``request``'s step: choose each input's beams, finish
        hypotheses, answer the inputs that end, and let their rows go."""
        logits, attention, self.state = output
        k, groups = self.k, self.groups
        rows_inputs = [group.input for group in groups for _ in range(k)]
        log_probs, _ = allowed(self.rules, [group.step for group in groups for _ in range(k)], rows_inputs,
                               self.paths.tokens, logits[:, 0])
        top = _best_continuations(self.beam_scores, log_probs, k)  # [G, 2k] each
        chosen = (_plain_choice(top, k) if self.banks is None
                  else self.banks.select(self.beam_scores, log_probs, top, [group.input for group in groups]))
        for g, row, score in chosen.ended:  # <eos> among the top k: a finished hypothesis
            group = groups[g]
            if not group.done:
                self.finished.add(group.input, *self.paths.own(row, group.step, group.width), score, group.step)
        rows, self.beam_scores, self.previous = chosen.rows, chosen.scores, chosen.tokens
        self.paths = self.paths.extended(rows, self.previous, attention)
        flat_scores = None
        for g, group in enumerate(groups):
            limited = group.max_length <= group.step + 1
            if limited and not group.done:  # open beams become finished as they are (an output that holds
                flat_scores = self.beam_scores.view(-1).tolist() if flat_scores is None else flat_scores
                for row in range(g * k, g * k + k):  # not every constraint ranks after those that do)
                    self.finished.add(group.input, *self.paths.own(row, group.step + 1, group.width), flat_scores[row],
                                      group.step, self.banks is None or self.banks.complete(row, group.input))
            group.step += 1
            if not group.done and (limited or self.finished.count(group.input) >= k):
                self._end(group)
        self._shed(rows)

    def _end(self, group: _Group) -> None:
        """Answer ``group``'s input with its hypotheses."""
        group.done = True
        self.rules.drop([group.input])
        group.arrival.answer(group.index, self.finished.pop(group.input)[: self.n_best])
        self._left[group.arrival] -= 1
        if not self._left[group.arrival]:
            del self._left[group.arrival]

    def _shed(self, rows: Tensor) -> None:
        """The state after a step: its rows ``rows`` (each beam's parent), less the groups that ended
        (but filler groups, ``rows_in_flight``); nothing once none decodes."""
        if not self._left:
            self.groups, self.state = [], None
            self.beam_scores, self.previous = self.beam_scores[:0], self.previous[:0]
            self.paths = _Paths.none(0, self.need_weights)
            return
        keep_groups = rows_in_flight(torch.tensor([group.done for group in self.groups]))
        if keep_groups.numel() == len(self.groups):
            self.state = self.state.reorder(rows)  # rows stay within their input's beams: memory and mask need not move
            return
        k, device = self.k, self.previous.device
        keep_rows = (keep_groups[:, None] * k + torch.arange(k)).flatten().to(device)
        if self.banks is not None:
            self.banks.take(keep_rows.tolist())
        self.groups = [self.groups[g] for g in keep_groups.tolist()]
        self.beam_scores, self.previous = self.beam_scores[keep_groups.to(device)], self.previous[keep_rows]
        self.paths = self.paths.take(keep_rows, max(group.step for group in self.groups if not group.done))
        self.state = self.state.select(rows[keep_rows])  # one move: the beams' reorder and the inputs that stay


def beam_search(network: Seq2Seq, arrival: Arrival, beams: int, rules: StepRules, ranking: Ranking,
                need_weights: bool, n_best: int | None = None) -> Search:
    """The steps of a beam search over one batch (``arrival``; ``SearchStopped`` when its ``stop``
    says so); its inputs are answered through ``arrival.answer``, each with its ``n_best`` best."""
    search = BeamSearch(network, beams, rules, ranking, need_weights, n_best)
    search.add(arrival)
    while search:
        if arrival.stop is not None and arrival.stop():
            raise SearchStopped()
        search.advance((yield search.request()))
    return []


class Joining:
    """The batches that join a search in flight: posted by its driver between steps, taken by the
    search at its next step (``beam_search_in_flight``)."""

    def __init__(self) -> None:
        self._posted: list[Arrival] = []

    def post(self, arrival: Arrival) -> None:
        self._posted.append(arrival)

    def take(self) -> list[Arrival]:
        posted, self._posted = self._posted, []
        return posted


def beam_search_in_flight(network: Seq2Seq, joining: Joining, beams: int, rules: StepRules, ranking: Ranking,
                          need_weights: bool, n_best: int | None = None) -> Search:
    """The steps of a beam search that takes every batch posted to ``joining`` as it comes, until no
    input is left; an arrival whose ``stop`` says so leaves.  An error that ends the search (a
    step the network cannot run, a NaN) is told to every arrival not yet answered."""
    search = BeamSearch(network, beams, rules, ranking, need_weights, n_best)
    try:
        while True:
            for arrival in joining.take():
                try:
                    search.add(arrival)
                except Exception as error:  # noqa: BLE001 - this batch's own (its encoder's), told to it alone
                    _fail(arrival, error)
            for arrival in search.arrivals:
                if arrival.stop is not None and arrival.stop():
                    search.leave(arrival)
                    _fail(arrival, SearchStopped())
            if not search:
                return []
            search.advance((yield search.request()))
    except Exception as error:
        for arrival in search.arrivals + joining.take():
            _fail(arrival, error)
        raise


def _fail(arrival: Arrival, error: Exception) -> None:
    if arrival.failed is not None:
        arrival.failed(error)


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
    """Each beam row's tokens so far ``[rows, t]`` and, when weights are wanted, its attention
    ``[rows, t, S]``: a row's own are its last columns (rows that joined later have fewer)."""

    tokens: Tensor
    attention: Tensor | None

    @staticmethod
    def none(rows: int, need_weights: bool) -> "_Paths":
        return _Paths(torch.empty(rows, 0, dtype=torch.long), torch.empty(rows, 0, 0) if need_weights else None)

    def joined(self, rows: int, width: int, device: torch.device) -> "_Paths":
        """These paths and ``rows`` new ones, of no tokens yet; attention as wide as the widest source."""
        steps = self.tokens.size(1)
        tokens = torch.cat([self.tokens.to(device), torch.full((rows, steps), PAD_INDEX, device=device)])
        if self.attention is None:
            return _Paths(tokens, None)
        wide = max(width, self.attention.size(2))
        old = torch.nn.functional.pad(self.attention.to(device), (0, wide - self.attention.size(2)))
        return _Paths(tokens, torch.cat([old, old.new_zeros(rows, steps, wide)]))

    def extended(self, rows: Tensor, tokens: Tensor, attention: Tensor | None) -> "_Paths":
        """The paths of ``rows``, each one step longer: ``tokens [rows]``, the step's ``attention [all rows, 1, S]``."""
        if self.attention is None:
            return _Paths(torch.cat([self.tokens[rows], tokens[:, None]], dim=1), None)
        step = attention[:, 0].float()[rows]  # [rows, S'], S' the widest source still in the batch
        step = torch.nn.functional.pad(step, (0, self.attention.size(2) - step.size(1)))
        return _Paths(torch.cat([self.tokens[rows], tokens[:, None]], dim=1),
                      torch.cat([self.attention[rows], step[:, None]], dim=1))

    def take(self, rows: Tensor, steps: int) -> "_Paths":
        """The paths of ``rows``, cut to their last ``steps`` columns."""
        start = self.tokens.size(1) - steps
        return _Paths(self.tokens[rows, start:], None if self.attention is None else self.attention[rows, start:])

    def own(self, row: int, steps: int, width: int) -> tuple[Tensor, Tensor | None]:
        """``row``'s own ``steps`` tokens and their attention over its source's ``width``."""
        start = self.tokens.size(1) - steps
        return self.tokens[row, start:], None if self.attention is None else self.attention[row, start:, :width]


class _Finished:
    """Each input's finished hypotheses in a beam search, with its real source tokens (for the
    coverage penalty) and whether each holds every constraint of its input."""

    def __init__(self, ranking: Ranking):
        self.ranking = ranking
        self.lists: dict[int, list[tuple[Hypothesis, bool]]] = {}
        self.src_lengths: dict[int, int] = {}

    def start(self, inputs: Sequence[int], src_lengths: Sequence[int]) -> None:
        for index, length in zip(inputs, src_lengths):
            self.lists[index], self.src_lengths[index] = [], length

    def add(self, index: int, tokens: Tensor, attention: Tensor | None, total: float, step: int,
            complete: bool = True) -> None:
        """A hypothesis of input ``index`` that ends after its ``step`` (its log-prob ``total``; none when -inf)."""
        if math.isfinite(total):
            score = self.ranking.score(total, step + 1, attention, self.src_lengths[index])
            self.lists[index].append((Hypothesis(tokens.tolist(), score, attention, total), complete))

    def count(self, index: int) -> int:
        """The complete hypotheses of input ``index``."""
        return sum(complete for _, complete in self.lists[index])

    def pop(self, index: int) -> list[Hypothesis]:
        """Input ``index``'s hypotheses, complete ones first, then best first; stable: of equal
        scores, the one finished first."""
        found = self.lists.pop(index)
        del self.src_lengths[index]
        return [dataclasses.replace(h, attention=h.attention.cpu() if h.attention is not None else None)
                for h, _ in sorted(found, key=lambda entry: (not entry[1], -entry[0].score))]
