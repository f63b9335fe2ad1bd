"""TensorBoard logs of a run (``training.tensorboard``): what the progress lines and metrics.jsonl
say, as curves, and the attention of one fixed validation example as an image at each validation.

    board = Board.open(folder / "tensorboard", purge_step) if config.training.tensorboard else Board()
    board.step(step, loss, tokens_per_second, lr)
    board.validation(step, record, attention)        # attention [T, S], rows summing to 1
    board.close()

Written by rank 0 only; ``tensorboard --logdir OUTPUT_DIR/tensorboard`` shows them.  TensorBoard
comes with the ``tensorboard`` extra (``pip install 'cronos[tensorboard]'``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..config import ConfigError
from ..files import ensure_writable_folder

__all__ = ["Board"]

CELL = 8  # pixels per attention weight in the image, so that short sequences are visible


class Board:
    """A run's TensorBoard writer; ``Board()`` writes nothing (TensorBoard off, or not rank 0)."""

    def __init__(self, writer: Any = None):
        self.writer = writer

    @classmethod
    def open(cls, folder: Path, purge_step: int | None = None) -> "Board":
        """A writer into ``folder``; a resumed run passes its next step as ``purge_step``, so the
        events an interrupted run logged past its checkpoint are dropped, not drawn twice."""
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch imports tensorboard lazily, here
            raise ConfigError("config", "training.tensorboard", "needs the tensorboard package: "
                              "pip install 'cronos[tensorboard]'") from None
        try:  # here, in one line, not in TensorBoard's writer thread as a traceback
            ensure_writable_folder(folder)
            return cls(SummaryWriter(log_dir=str(folder), purge_step=purge_step))
        except OSError as error:
            raise ConfigError("config", "training.tensorboard", f"cannot write TensorBoard events into {folder}: "
                              f"{error.strerror or error}") from None

    def step(self, step: int, loss: float, tokens_per_second: float, lr: float) -> None:
        """One optimiser step: its per-token loss, real target tokens per second and learning rate."""
        if self.writer is None:
            return
        self.writer.add_scalar("train/loss", loss, step)
        self.writer.add_scalar("train/target_tokens_per_second", tokens_per_second, step)
        self.writer.add_scalar("train/lr", lr, step)

    def validation(self, step: int, record: dict, attention: torch.Tensor | None) -> None:
        """A metrics.jsonl record as scalars (``valid/bleu``, ``train/epoch_loss``, ``train/padded_share``,
        ...), and ``attention [T, S]`` as a grey image (white = weight 1)."""
        if self.writer is None:
            return
        for key, value in record.items():
            if isinstance(value, (int, float)) and key not in ("step", "epoch"):
                group, _, name = key.partition("_") if key.startswith("valid_") else ("train", "", key)
                self.writer.add_scalar(f"{group}/{'epoch_loss' if name == 'train_loss' else name}", value, step)
        if attention is not None:
            image = attention.float().clamp(0, 1).repeat_interleave(CELL, 0).repeat_interleave(CELL, 1)
            self.writer.add_image("valid/attention", image[None], step, dataformats="CHW")  # [1, T*8, S*8]
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
