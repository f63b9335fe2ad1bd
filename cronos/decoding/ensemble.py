"""Ensembles: several networks decoding together, each step from the mean of their probabilities.

    ensemble = Ensemble([model_a.network, model_b.network])
    hypotheses = decode(ensemble, examples, Beam(5, n_best=2), options)   # any strategy

``Ensemble`` speaks the decoding protocol of ``Seq2Seq`` (``encode``, ``start_decoder``,
``run_decoder``), returning as "logits" the log of the members' mean probability,
``logsumexp_i(log p_i) - log M``, so search, scoring and evaluation take it as they take one
network.  The members write the same target vocabulary (``Cronos.ensemble`` checks that); they may
read the source differently: member ``i`` encodes source ``reading_of[i]``, 0 being the batch's
``src`` and ``r > 0`` its ``r``-th ``Batch.readings``.  Attention, where asked for, is the mean
of the attention of the members that read ``src`` (attention over other readings is over other
tokens, so it is not averaged in).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from ..data import TextCodec
from ..modules.network import Seq2Seq

__all__ = ["Ensemble", "EnsembleState", "ensemble_of"]


def ensemble_of(networks: Sequence[Seq2Seq], codecs: Sequence[TextCodec]) -> tuple["Ensemble", TextCodec]:
    """The ensemble of ``networks`` (each reading and writing text as its ``codecs`` entry) and the
    codec it decodes with: the first member's, also reading every source as each other source side
    does.  The members must write text alike (a ``ValueError`` names the member and what differs);
    members that read the source alike share a reading."""
    first = codecs[0]
    sides, reading_of = [first], []  # the distinct source sides, the first member's first
    for number, codec in enumerate(codecs, start=1):
        differs = [d for d in first.differences(codec) if d.side == "target"]
        if differs:
            raise ValueError(f"ensemble member {number} does not write text as member 1 does: {differs[0]}")
        same = [r for r, side in enumerate(sides) if side.reads_source_as(codec)]
        if not same:
            sides.append(codec)
        reading_of.append(same[0] if same else len(sides) - 1)
    return Ensemble(networks, reading_of), first.with_readings(sides[1:])


@dataclass(frozen=True)
class EnsembleState:
    members: tuple  # each member's encoding, then its decoder state

    def select(self, index: Tensor) -> "EnsembleState":
        return EnsembleState(tuple(state.select(index) for state in self.members))

    def reorder(self, index: Tensor) -> "EnsembleState":
        return EnsembleState(tuple(state.reorder(index) for state in self.members))

    def repeated(self, beams: int) -> "EnsembleState":
        return EnsembleState(tuple(state.repeated(beams) for state in self.members))

    def beside(self, other: "EnsembleState", rows: int, other_rows: int) -> "EnsembleState":
        """This state's ``rows``, then ``other``'s: each member's states side by side (``Parts``)."""
        return EnsembleState(tuple(mine.beside(theirs, rows, other_rows)
                                   for mine, theirs in zip(self.members, other.members)))


class Ensemble(nn.Module):
    def __init__(self, networks: Sequence[Seq2Seq], reading_of: Sequence[int] | None = None):
        super().__init__()
        if len(networks) < 2:
            raise ValueError(f"an ensemble needs at least two members, got {len(networks)}")
        reading_of = tuple(reading_of) if reading_of is not None else (0,) * len(networks)
        if len(reading_of) != len(networks) or reading_of[0] != 0 or min(reading_of) < 0:
            raise ValueError(f"reading_of needs one reading per member, 0 for the first, got {reading_of}")
        self.members = nn.ModuleList(networks)
        self.reading_of = reading_of

    @property
    def device(self) -> torch.device:
        return self.members[0].device

    def encode(self, src: Tensor, src_lengths: Tensor, *readings: tuple[Tensor, Tensor]) -> EnsembleState:
        """Each member encodes its reading of the source: ``src [B, S]`` with ``src_lengths [B]``,
        or ``readings[r - 1]`` (tokens ``[B, S_r]``, lengths ``[B]``) for ``reading_of[i] = r``."""
        sources = ((src, src_lengths), *readings)
        if max(self.reading_of) >= len(sources):
            raise ValueError(f"the members read {max(self.reading_of) + 1} versions of the source, "
                             f"got {len(sources)}: encode the examples with the ensemble's codec")
        return EnsembleState(tuple(member.encode(*sources[r]) for member, r in zip(self.members, self.reading_of)))

    def start_decoder(self, encoded: EnsembleState) -> EnsembleState:
        return EnsembleState(tuple(member.start_decoder(e) for member, e in zip(self.members, encoded.members)))

    def run_decoder(self, tgt_in: Tensor, state: EnsembleState, need_weights: bool = True):
        """``tgt_in [B, T]`` -> log mean probability ``[B, T, V]``, mean attention ``[B, T, S]``, state."""
        return self._combined([member.run_decoder(tgt_in, s, need_weights)
                               for member, s in zip(self.members, state.members)])

    def run_decoder_together(self, steps: Sequence[tuple[Tensor, EnsembleState]],
                             need_weights: bool = True) -> list[tuple[Tensor, Tensor | None, EnsembleState]]:
        """``run_decoder`` for several searches at once (``Seq2Seq.run_decoder_together``): each
        member runs all their rows together, then each search's outputs are mixed as alone."""
        by_member = [member.run_decoder_together([(tokens, state.members[m]) for tokens, state in steps], need_weights)
                     for m, member in enumerate(self.members)]
        return [self._combined(list(outputs)) for outputs in zip(*by_member)]

    def _combined(self, outputs: list[tuple[Tensor, Tensor | None, object]]) -> tuple[Tensor, Tensor | None,
                                                                                    EnsembleState]:
        """The members' ``(logits, attention, state)`` of one step -> the ensemble's."""
        attention = [a for (_, a, _), r in zip(outputs, self.reading_of) if r == 0]
        return (self._mix([logits for logits, _, _ in outputs]), self._mean_attention(attention),
                EnsembleState(tuple(s for _, _, s in outputs)))

    def _mix(self, logits: list[Tensor]) -> Tensor:
        log_probs = torch.stack([torch.log_softmax(x.float(), dim=-1) for x in logits])  # [M, B, T, V]
        return torch.logsumexp(log_probs, dim=0) - math.log(len(logits))

    @staticmethod
    def _mean_attention(attentions: list[Tensor | None]) -> Tensor | None:
        if any(a is None for a in attentions):
            return None
        return torch.stack([a.float() for a in attentions]).mean(dim=0)
