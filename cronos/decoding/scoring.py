"""Scoring pairs: the teacher-forced log-probability of each target given its source.

    scores = score_examples(network, examples, batch_size=128, per_token=True)
    scores[0].log_prob, scores[0].mean_log_prob, scores[0].tokens, scores[0].token_log_probs

A score is a property of the pair alone: the mask keeps batch mates and padding out of it (P1),
so it does not change with the batch or the batch size (tested), and it equals, up to float
rounding, the summed log-probability beam search reports for the same output.  Every target
token counts, and the ``<eos>`` that ends it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..data import Batch, Example
from ..modules.network import Seq2Seq
from .inference import example_log_probs, in_length_batches, target_log_probs, teacher_forced

__all__ = ["PairScore", "score_examples"]


@dataclass(frozen=True)
class PairScore:
    log_prob: float                       # sum of the target's token log-probs, <eos> included
    tokens: int                           # how many: target tokens + 1
    token_log_probs: list[float] | None   # each token's, when asked for

    @property
    def mean_log_prob(self) -> float:
        """Per token: what filtering corpora by model score usually compares."""
        return self.log_prob / self.tokens


def score_examples(network: Seq2Seq, examples: Sequence[Example], batch_size: int,
                   per_token: bool = False) -> list[PairScore]:
    """Each example's target log-probability given its source (eval mode, batches of similar
    length; results in input order).  Examples need targets."""
    if any(e.tgt is None for e in examples):
        raise ValueError("scoring needs a target for every source")

    def score_batch(batch: Batch, positions: list[int]) -> list[PairScore]:
        logits, _ = teacher_forced(network, batch, need_weights=False)  # [B, T, V]
        chosen = target_log_probs(logits, batch.tgt_out)  # [B, T]
        lengths = batch.tgt_lengths.tolist()
        return [PairScore(total, length, row[:length].tolist() if per_token else None)
                for total, row, length in zip(example_log_probs(chosen, batch.tgt_lengths), chosen, lengths)]
    return in_length_batches(network, examples, batch_size, score_batch)
