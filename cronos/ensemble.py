"""Ensembles: several networks decoding together, each step from the mean of their probabilities.

    ensemble = Ensemble([model_a.network, model_b.network])
    hypotheses = decode_examples(ensemble, examples, options)      # any search, n-best, sampling

``Ensemble`` speaks the decoding protocol of ``Seq2Seq`` (``encode``, ``start_decoding``,
``decode``, and a teacher-forced ``forward``), returning as "logits" the log of the members' mean
probability, ``logsumexp_i(log p_i) - log M``, so search, scoring and evaluation take it as they
take one network.  Attention, where asked for, is the mean of the members' attention.  The members
read the same source ids and write the same target vocabulary (``Cronos.ensemble`` checks that).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from .network import Seq2Seq

__all__ = ["Ensemble", "EnsembleState"]


@dataclass(frozen=True)
class EnsembleState:
    members: tuple  # each member's encoding, then its decoder state

    def select(self, index: Tensor) -> "EnsembleState":
        return EnsembleState(tuple(state.select(index) for state in self.members))


class Ensemble(nn.Module):
    def __init__(self, networks: Sequence[Seq2Seq]):
        super().__init__()
        if len(networks) < 2:
            raise ValueError(f"an ensemble needs at least two members, got {len(networks)}")
        self.members = nn.ModuleList(networks)

    @property
    def device(self) -> torch.device:
        return self.members[0].device

    def encode(self, src: Tensor, src_lengths: Tensor) -> EnsembleState:
        return EnsembleState(tuple(member.encode(src, src_lengths) for member in self.members))

    def start_decoding(self, encoded: EnsembleState) -> EnsembleState:
        return EnsembleState(tuple(member.start_decoding(e) for member, e in zip(self.members, encoded.members)))

    def decode(self, tgt_in: Tensor, state: EnsembleState, need_weights: bool = True):
        """``tgt_in [B, T]`` -> log mean probability ``[B, T, V]``, mean attention ``[B, T, S]``, state."""
        outputs = [member.decode(tgt_in, s, need_weights) for member, s in zip(self.members, state.members)]
        return (self._mix([logits for logits, _, _ in outputs]), self._mean_attention([a for _, a, _ in outputs]),
                EnsembleState(tuple(s for _, _, s in outputs)))

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor,
                need_weights: bool = True) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced: the log mean probability ``[B, T, V]`` and the mean attention (scoring, evaluation)."""
        outputs = [member(src, src_lengths, tgt_in, need_weights=need_weights) for member in self.members]
        return self._mix([logits for logits, _ in outputs]), self._mean_attention([a for _, a in outputs])

    def _mix(self, logits: list[Tensor]) -> Tensor:
        log_probs = torch.stack([torch.log_softmax(x.float(), dim=-1) for x in logits])  # [M, B, T, V]
        return torch.logsumexp(log_probs, dim=0) - math.log(len(logits))

    @staticmethod
    def _mean_attention(attentions: list[Tensor | None]) -> Tensor | None:
        if any(a is None for a in attentions):
            return None
        return torch.stack([a.float() for a in attentions]).mean(dim=0)
