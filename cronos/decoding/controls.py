"""What a translator controls in a search: per input, a forced start of the output (``Guide``);
for every input, a minimum length and no repeated n-grams (``StepRules``), and how finished
outputs are ranked (``Ranking``: the length penalty's form, the coverage penalty).

    rules = StepRules(guides, min_length=2, no_repeat_ngram_size=3)   # guides: one per input
    blocked = rules.blocked(steps, inputs, history, vocabulary_size)  # [rows, V] bool, or None: a step per row
    score = Ranking(LengthPenalty(1.0, "gnmt"), coverage=0.2).score(log_prob, length, attention, src_length)

Every rule reads one row's own input and history and writes that row alone, with exact integer
comparisons: an output still never depends on its batch mates (docs/batch_invariance.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

import torch
from torch import Tensor

from ..data.vocab import EOS_INDEX

__all__ = ["Guide", "NO_GUIDE", "Progress", "StepRules", "LengthPenalty", "Ranking", "LENGTH_PENALTIES",
           "extra_lengths"]


class Progress(NamedTuple):
    """How far an output has met its input's constraints: the phrases met (indices), and the
    phrase it is inside of (-1: none) with how many of its tokens it has matched."""

    met: frozenset[int] = frozenset()
    phrase: int = -1
    matched: int = 0


@dataclass(frozen=True)
class Guide:
    """What one input's output must hold: ``prefix``, the target token ids it starts with, and
    ``constraints``, phrases of token ids it must contain (each once, anywhere after the prefix)."""

    prefix: tuple[int, ...] = ()
    constraints: tuple[tuple[int, ...], ...] = ()

    @property
    def constraint_tokens(self) -> int:
        return sum(map(len, self.constraints))

    def advance(self, progress: Progress, token: int) -> Progress:
        """``progress`` after ``token``: a phrase goes on or breaks off (its matched tokens lost), and
        a token may start (or be) an unmet phrase."""
        met, phrase, matched = progress
        if phrase >= 0 and self.constraints[phrase][matched] == token:
            if matched + 1 == len(self.constraints[phrase]):
                return Progress(met | {phrase})
            return Progress(met, phrase, matched + 1)
        for number, words in enumerate(self.constraints):
            if number not in met and words[0] == token:
                return Progress(met | {number}) if len(words) == 1 else Progress(met, number, 1)
        return Progress(met)

    def tokens_met(self, progress: Progress) -> int:
        """Constraint tokens in place: the met phrases' and the current one's matched ones."""
        return sum(len(self.constraints[number]) for number in progress.met) + progress.matched

    def complete(self, progress: Progress) -> bool:
        return len(progress.met) == len(self.constraints)

    def wanted(self, progress: Progress) -> list[int]:
        """The tokens that take ``progress`` further: the current phrase's next, else each unmet phrase's first."""
        if progress.phrase >= 0:
            return [self.constraints[progress.phrase][progress.matched]]
        return [words[0] for number, words in enumerate(self.constraints) if number not in progress.met]


NO_GUIDE = Guide()

# length (tokens + <eos>), alpha -> what a hypothesis's log-probability is divided by
LENGTH_PENALTIES: dict[str, Callable[[int, float], float]] = {
    "power": lambda length, alpha: length ** alpha,
    "gnmt": lambda length, alpha: ((5 + length) / 6) ** alpha,   # Wu et al. 2016, eq. 14
    "none": lambda length, alpha: 1.0,
}


@dataclass(frozen=True)
class LengthPenalty:
    """``log_prob / penalty(length)``: ``power`` (``length ** alpha``), ``gnmt`` (``((5 + length) / 6) **
    alpha``) or ``none`` (the log-probability itself)."""

    alpha: float = 1.0
    form: str = "power"

    def __call__(self, length: int) -> float:
        return LENGTH_PENALTIES[self.form](length, self.alpha)


@dataclass(frozen=True)
class Ranking:
    """What ranks a finished hypothesis: its log-probability over the length penalty, plus
    ``coverage`` x the GNMT coverage penalty, ``sum_j log(min(attention to j over the output, 1))``
    over the input's real source positions only (a padded position, whose attention is 0, would
    add log 0)."""

    length_penalty: LengthPenalty = LengthPenalty()
    coverage: float = 0.0

    @property
    def needs_attention(self) -> bool:
        return self.coverage > 0.0

    def score(self, log_prob: float, length: int, attention: Tensor | None, src_length: int) -> float:
        """``attention [len(tokens), S]`` (the batch's padded source; needed with a coverage weight)."""
        score = log_prob / self.length_penalty(length)
        if self.coverage > 0.0 and attention is not None:
            covered = attention[:, :src_length].double().sum(dim=0)                       # [S_real]
            score += self.coverage * float(torch.log(covered.clamp(min=1e-30, max=1.0)).sum())
        return score if math.isfinite(score) else -math.inf


class StepRules:
    """The tokens a step may not choose, per row: outside an input's forced prefix while the row
    is inside it, ``<eos>`` before ``min_length`` tokens (the prefix's included), and any token
    that would repeat an n-gram of ``no_repeat_ngram_size`` tokens already in the row's output.
    ``guides``: one per input, numbered from 0; inputs that join later are ``add``-ed."""

    def __init__(self, guides: Sequence[Guide], min_length: int = 0, no_repeat_ngram_size: int = 0):
        self.guides: dict[int, Guide] = {}                      # per input
        self.min_length, self.no_repeat = min_length, no_repeat_ngram_size
        self.longest_prefix = 0
        self.add(range(len(guides)), guides)

    def add(self, inputs: Sequence[int], guides: Sequence[Guide]) -> None:
        """The ``guides`` of the ``inputs`` (numbers) that join."""
        self.guides.update(zip(inputs, guides))
        self.longest_prefix = max([self.longest_prefix, *(len(guide.prefix) for guide in guides)])

    def drop(self, inputs: Sequence[int]) -> None:
        """Forget the guides of ``inputs`` (decoded)."""
        for index in inputs:
            self.guides.pop(index, None)

    @property
    def constrained(self) -> bool:
        return any(guide.constraints for guide in self.guides.values())

    def blocked(self, steps: Sequence[int], inputs: Sequence[int], history: Tensor,
                vocabulary_size: int) -> Tensor | None:
        """``[rows, V]`` True where a row may not go at its step (None: nowhere blocked); ``steps``,
        ``inputs``: the step and the input of each row, ``history [rows, t]``: each row's output
        tokens so far, its last ``step`` columns (rows at different steps: the others before them)."""
        first, last = min(steps, default=0), max(steps, default=0)
        # a filler row's input may be answered and forgotten already (NO_GUIDE): its results are not read
        guides = [self.guides.get(i, NO_GUIDE) for i in inputs] if first < self.longest_prefix else []
        forced = [(row, guide.prefix[step]) for row, (guide, step) in enumerate(zip(guides, steps))
                  if step < len(guide.prefix)]
        repeats = self.no_repeat and last >= self.no_repeat  # a whole n-gram behind a row
        if not (forced or repeats or first < self.min_length):
            return None
        blocked = torch.zeros(len(inputs), vocabulary_size, dtype=torch.bool, device=history.device)
        if first < self.min_length:
            early = [row for row, step in enumerate(steps) if step < self.min_length]
            blocked[torch.tensor(early, device=history.device), EOS_INDEX] = True
        if repeats:
            _block_repeats(blocked, history, self.no_repeat,
                           None if first == last else torch.tensor(steps, device=history.device))
        if forced:  # inside its prefix, a row takes the prefix's token, whatever the other rules say
            rows, tokens = (torch.tensor(column, device=history.device) for column in zip(*forced))
            blocked[rows] = True
            blocked[rows, tokens] = False
        return blocked


def extra_lengths(guides: Sequence[Guide]) -> Tensor:
    """``[B]``: each input's forced and constraint tokens (its output's length limit is that much longer)."""
    return torch.tensor([len(g.prefix) + g.constraint_tokens for g in guides], dtype=torch.long)


def _block_repeats(blocked: Tensor, history: Tensor, n: int, steps: Tensor | None) -> None:
    """Block, per row, each token that follows an earlier occurrence of the row's last ``n - 1``
    tokens; with ``steps`` (each row's own tokens, the last of its ``history``), only in rows
    that hold at least ``n`` and only within them."""
    windows = history.unfold(1, n, 1)                                     # [rows, W, n]
    last = history[:, history.size(1) - (n - 1):]                         # [rows, n - 1]
    repeats = (windows[:, :, : n - 1] == last[:, None, :]).all(dim=-1)    # [rows, W]
    if steps is not None:  # a window that starts before a row's own tokens is not its n-gram
        first_own = (history.size(1) - steps)[:, None]                    # [rows, 1]
        repeats &= torch.arange(windows.size(1), device=history.device)[None, :] >= first_own
    rows, at = repeats.nonzero(as_tuple=True)
    blocked[rows, windows[rows, at, n - 1]] = True
