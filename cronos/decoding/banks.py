"""Beam search under lexical constraints by dynamic beam allocation (Post & Vilar 2018): each step,
an input's candidates are its beams' best continuations, each beam's best token and each token
that takes a beam's constraints further; they are grouped in banks by how many constraint tokens
they have in place, and the beam's ``k`` places are shared among the banks, so hypotheses that
met more constraints are kept beside likelier ones that met fewer.  The beam stays ``k`` wide
whatever the number of constraints (grid beam search, Hokamp & Liu 2017, would need one beam per
constraint token).  An output may end only once it holds every constraint.

    banks = Banks(guides, k)                             # guides: one per input of the batch
    chosen = banks.select(beam_scores, log_probs, top, alive)

Each input's candidates and banks are its own, read from its own rows with exact float32 sums:
an output does not depend on its batch mates.  An input without constraints has one bank, and
its beams go on as plain beam search's do.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from ..data.vocab import EOS_INDEX, PAD_INDEX
from .controls import Guide, Progress

__all__ = ["Banks", "Chosen"]


@dataclass
class Chosen:
    """A step's outcome over the batch's groups: the hypotheses that end (``(group, row, score)``,
    complete ones only), and each continuing beam's parent row ``[b*k]``, token ``[b*k]`` and total
    log-probability ``[b, k]``."""

    ended: list[tuple[int, int, float]]
    rows: Tensor
    tokens: Tensor
    scores: Tensor


class Banks:
    """Each beam row's progress through its input's constraints, and the choice of the beams that go on."""

    def __init__(self, guides: Sequence[Guide], k: int):
        self.guides, self.k = list(guides), k
        self.progress = [Progress()] * (len(guides) * k)   # per flat row

    def complete(self, row: int, group_input: int) -> bool:
        return self.guides[group_input].complete(self.progress[row])

    def select(self, beam_scores: Tensor, log_probs: Tensor, top: tuple[Tensor, Tensor, Tensor],
               alive: list[int]) -> Chosen:
        """``beam_scores [b, k]``, ``log_probs [b*k, V]`` (blocked tokens at -inf), ``top``: the best
        ``2k`` continuations per group (``search._best_continuations``), ``alive``: each group's input."""
        k, device = self.k, log_probs.device
        extra = self._extra_candidates(beam_scores, log_probs, alive)
        top_scores, origin, token = (t.tolist() for t in top)
        ended, rows, tokens, scores, progress = [], [], [], [], []
        for g, index in enumerate(alive):
            found = {(g * k + o, t): s for s, o, t in zip(top_scores[g], origin[g], token[g]) if s > -math.inf}
            for candidate, score in extra[g]:
                found.setdefault(candidate, score)
            ranked = sorted(found.items(), key=lambda item: -item[1])   # stable: the top-k order first
            ended += [(g, row, score) for (row, tok), score in ranked[:k]
                      if tok == EOS_INDEX and self.guides[index].complete(self.progress[row])]
            kept = self._allocate(self.guides[index], [(row, tok, s) for (row, tok), s in ranked if tok != EOS_INDEX])
            kept += [(g * k, PAD_INDEX, -math.inf, self.progress[g * k])] * (k - len(kept))  # dead beams
            for row, tok, score, after in kept:
                rows.append(row), tokens.append(tok), scores.append(score), progress.append(after)
        self.progress = progress
        return Chosen(ended, torch.tensor(rows, device=device), torch.tensor(tokens, device=device),
                      torch.tensor(scores, dtype=beam_scores.dtype, device=device).view(-1, k))

    def take(self, rows: list[int]) -> None:
        """Keep the progress of ``rows`` only (the groups that stay in the batch)."""
        self.progress = [self.progress[row] for row in rows]

    def _extra_candidates(self, beam_scores: Tensor, log_probs: Tensor,
                          alive: list[int]) -> list[list[tuple[tuple[int, int], float]]]:
        """Per group: each live beam's best token and the tokens its constraints want, with their
        totals (float32 sums, as the top-k's are)."""
        k = self.k
        live = torch.isfinite(beam_scores.view(-1)).tolist()
        best = log_probs.argmax(dim=-1).tolist()
        pairs = [(row, tok) for row in range(len(live)) if live[row]
                 for tok in [best[row], *self.guides[alive[row // k]].wanted(self.progress[row])]]
        if not pairs:
            return [[] for _ in alive]
        rows, toks = (torch.tensor(column, device=log_probs.device) for column in zip(*pairs))
        totals = (beam_scores.view(-1)[rows] + log_probs[rows, toks]).tolist()
        extra: list[list] = [[] for _ in alive]
        for (row, tok), total in zip(pairs, totals):
            if total > -math.inf:
                extra[row // k].append(((row, tok), total))
        return extra

    def _allocate(self, guide: Guide, ranked: list[tuple[int, int, float]]) -> list[tuple[int, int, float, Progress]]:
        """The ``k`` candidates that go on: ``k`` places shared by the banks of 0 to C constraint
        tokens in place (the highest banks get the places left over), places a bank cannot fill
        going to the best of the others, highest banks first; best first."""
        k, banks_count = self.k, guide.constraint_tokens + 1
        banks: list[list] = [[] for _ in range(banks_count)]
        for row, tok, score in ranked:
            after = guide.advance(self.progress[row], tok)
            banks[guide.tokens_met(after)].append((row, tok, score, after))
        share, left = divmod(k, banks_count)
        quota = [share + (bank >= banks_count - left) for bank in range(banks_count)]
        chosen = [c for bank in reversed(range(banks_count)) for c in banks[bank][:quota[bank]]]
        rest = [c for bank in reversed(range(banks_count)) for c in banks[bank][quota[bank]:]]
        chosen += rest[: k - len(chosen)]
        return sorted(chosen, key=lambda c: -c[2])
