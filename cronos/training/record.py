"""What a run reports at each validation and step: a line of ``metrics.jsonl``, TensorBoard's
curves and attention image (``board.Board``), and the log line; written by rank 0.

    record = RunRecord(folder, writes=processes.main)
    record.open_board(next_step)                     # training.tensorboard
    record.step(step, loss, tokens, seconds, lr)     # TensorBoard's training curves
    record.validation(line, attention)               # metrics.jsonl, TensorBoard, the log
    record.close()
"""
from __future__ import annotations

import json
import logging

import torch

from .board import Board
from .run_folder import RunFolder
from .state import TrainingProgress

__all__ = ["RunRecord", "validation_line"]

logger = logging.getLogger("cronos")


def validation_line(progress: TrainingProgress, epoch: int, lr: float, padded_share: float,
                    drawn: dict[str, int] | None = None) -> dict:
    """The training half of a metrics.jsonl line at ``progress.step`` (the validation adds ``valid_*``);
    ``drawn``: the examples an epoch draws from each corpus, when there are several."""
    line = {"epoch": epoch, "step": progress.step,
            "train_loss": progress.epoch_loss_sum / max(progress.epoch_tokens, 1), "lr": lr,
            "seconds": round(progress.epoch_seconds, 3), "padded_share": padded_share,
            "skipped_batches": progress.skipped_batches}
    return line if drawn is None else {**line, "examples_per_corpus": drawn}


class RunRecord:
    """The reports of the run in ``folder``; a process that ``writes`` nothing (not rank 0) records nothing."""

    def __init__(self, folder: RunFolder, writes: bool):
        self.folder, self.writes = folder, writes
        self.board = Board()  # TensorBoard off until ``open_board``

    def open_board(self, next_step: int | None) -> None:
        """TensorBoard events from here; a resumed run passes its next step, dropping the events an
        interrupted run logged past its checkpoint."""
        if self.writes:
            self.board = Board.open(self.folder.tensorboard, purge_step=next_step)

    @property
    def shows_attention(self) -> bool:
        """Whether an attention image would be shown (worth computing) at a validation."""
        return self.board.writer is not None

    def step(self, step: int, loss: float, tokens: int, seconds: float, lr: float) -> None:
        """One optimiser step's summed ``loss`` over its real target ``tokens``, in ``seconds``."""
        self.board.step(step, loss / tokens, tokens / seconds, lr)

    def validation(self, line: dict, attention: torch.Tensor | None) -> None:
        """A validation's metrics.jsonl ``line``, its TensorBoard scalars and image (``attention [T, S]``), its log line."""
        if not self.writes:
            return
        with open(self.folder.metrics, "a", encoding="utf-8") as file:
            file.write(json.dumps(line) + "\n")
        self.board.validation(line["step"], line, attention)
        logger.info("epoch %d step %d: %s", line["epoch"], line["step"],
                    ", ".join(f"{k} {v:.4g}" for k, v in line.items()
                              if k.startswith(("train_loss", "valid_")) and isinstance(v, float)))

    def close(self) -> None:
        self.board.close()
