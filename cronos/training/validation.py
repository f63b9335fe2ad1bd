"""Validation during training: the split scored once (by rank 0, every process getting the scores),
and the rule that says whether a score is the best so far and whether the run stops early.

    validator = Validator(network, codec, valid, config.decoding, config.training, processes)
    scores = validator.scores()                   # {"valid_loss": ..., "valid_bleu": ..., ...}
    improved = validator.judge(progress, scores)  # the best so far? (progress: best score, patience)

The trainer composes it: it writes ``best.pt`` when the scores improved, and ends the run when
``progress.stopped_early`` says patience ran out.
"""
from __future__ import annotations

import logging
from typing import Protocol

import torch

from ..config import DecodingConfig, TrainingConfig
from ..data import EvalSplit, TextCodec
from .distributed import Processes
from ..decoding.evaluation import METRICS, evaluate_split
from ..explain.explanation import explain_forced
from ..modules.network import Seq2Seq

__all__ = ["Validator"]

logger = logging.getLogger("cronos")


class BestSoFar(Protocol):
    """What the rule reads and updates: the part of the run's saved progress about the best score."""

    step: int
    best_score: float | None
    best_step: int | None
    bad_validations: int
    stopped_early: bool


class Validator:
    """Scores ``valid`` with ``network`` and judges the scores by ``training.early_stopping_metric``."""

    def __init__(self, network: Seq2Seq, codec: TextCodec, valid: EvalSplit, decoding: DecodingConfig,
                 training: TrainingConfig, processes: Processes):
        self.network, self.codec, self.valid, self.decoding = network, codec, valid, decoding
        self.training, self.processes = training, processes

    def scores(self) -> dict[str, float]:
        """The ``valid_*`` metrics, computed by rank 0 and the same in every process."""
        scores = evaluate_split(self.network, self.codec, self.valid, self.decoding) if self.processes.main else None
        scores = self.processes.from_main(scores)
        return {f"valid_{name}": scores[name] for name in METRICS}

    def judge(self, progress: BestSoFar, scores: dict[str, float]) -> bool:
        """Whether ``scores`` are the best so far; ``progress`` keeps the best score, its step and the
        validations since, and says ``stopped_early`` when ``training.patience`` of them did not improve."""
        metric, score = self.training.metric, scores[self.training.metric]
        better = progress.best_score is None or (score < progress.best_score if self.training.lower_is_better
                                                 else score > progress.best_score)
        if better:
            progress.best_score, progress.best_step, progress.bad_validations = score, progress.step, 0
            return True
        progress.bad_validations += 1
        patience = self.training.patience
        if patience is not None and progress.bad_validations >= patience:
            progress.stopped_early = True
            if self.processes.main:
                logger.info("early stopping: %s has not improved for %d validations (best %.4g at step %d)",
                            metric, progress.bad_validations, progress.best_score, progress.best_step)
        return False

    def example_attention(self) -> torch.Tensor:
        """The attention ``[T, S]`` of the first validation example, its target forced (for TensorBoard)."""
        source, target = self.valid.sources[0], self.valid.targets[0]
        return explain_forced(self.network, self.codec, [source], [target], 1)[0].attention
