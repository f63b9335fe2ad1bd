"""One optimiser update at a time: the optimiser and its schedule, the loss each batch adds, the
gradients of several processes summed, clipping, mixed precision, and what a non-finite loss does.

    updater = Updater(network, config.training, precision, processes, device, data.origins)
    loss, tokens = updater.step(trained, batches, update, tokens, progress)
    updater.after_validation(score)            # the plateau schedule's step

The loss of an update is the cross-entropy summed over the real target tokens of all its batches,
in all processes, divided by their number, which every process knows before the first backward
(``EpochPlan.target_tokens``).  Each batch's backward adds its share and the processes' gradients
are summed, so the gradient is that of the union of the batches in one batch (not a mean of
per-batch or per-process means, which would weight a token by how full its batch is).
"""
from __future__ import annotations

import itertools
import logging
import math
from contextlib import nullcontext
from typing import Iterator, Sequence

import torch

from ..config import TrainingConfig
from ..data import Batch, Update
from ..precision import MixedPrecision
from .distributed import Processes
from .state import TrainingProgress

__all__ = ["TrainingError", "Updater", "build_optimizer", "build_scheduler"]

logger = logging.getLogger("cronos")


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss or gradient under ``nan_policy: error``)."""


def build_optimizer(network: torch.nn.Module, training: TrainingConfig) -> torch.optim.Optimizer:
    """Adam or AdamW per ``training``; the fused kernel when torch has it (~4x faster on the CPU)."""
    kind = torch.optim.AdamW if training.optimizer == "adamw" else torch.optim.Adam
    options = dict(lr=training.lr, weight_decay=training.weight_decay)
    try:
        return kind(network.parameters(), fused=True, **options)
    except (RuntimeError, TypeError, ValueError):  # torch < 2.4 has no fused CPU kernel
        return kind(network.parameters(), **options)


def build_scheduler(optimizer: torch.optim.Optimizer, training: TrainingConfig):
    """``training.scheduler``'s learning-rate schedule, or None for a constant rate."""
    if training.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min" if training.lower_is_better else "max", factor=training.plateau_factor,
            patience=training.plateau_patience, min_lr=training.min_lr)
    if training.scheduler == "warmup_inverse_sqrt":
        warmup, floor = training.warmup_steps, training.min_lr / training.lr if training.lr else 0.0
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: max(floor, min((step + 1) / warmup, math.sqrt(warmup / (step + 1)))))
    return None


class Updater:
    """Updates ``network``'s weights per ``training``; ``origins`` ("file:line" of each example)
    name the examples of a batch whose loss or gradient is not finite."""

    def __init__(self, network: torch.nn.Module, training: TrainingConfig, precision: MixedPrecision,
                 processes: Processes, device: torch.device, origins: Sequence[str]):
        self.network, self.training, self.precision = network, training, precision
        self.processes, self.device, self.origins = processes, device, origins
        self.optimizer = build_optimizer(network, training)
        self.scheduler = build_scheduler(self.optimizer, training)

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def after_validation(self, score: float) -> None:
        """The plateau schedule follows the validation score (the other schedules follow steps)."""
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(score)

    def step(self, trained: torch.nn.Module, batches: Iterator[Batch], update: Update, tokens: int,
             progress: TrainingProgress) -> tuple[float, int]:
        """One update over this process's ``update[rank]``, collated in ``batches``, ``trained``
        being the network or ``DistributedDataParallel`` around it; ``tokens``: the real target
        tokens of the whole update.  Returns the summed loss and ``tokens``, or (0.0, 0) for a
        skipped update; ``progress`` counts the step or the skip."""
        loss_sum = self._backward(trained, batches, len(update[self.processes.rank]), tokens)
        total_loss, = self.processes.sum([loss_sum], self.device)
        self.precision.unscale(self.optimizer)
        max_norm = self.training.clip_grad_norm if self.training.clip_grad_norm is not None else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.network.parameters(), max_norm)
        # fp16: an overflowing gradient is the scaler's to handle (it skips the update and halves its
        # scale), unless the scale has fallen below 1, where the gradient itself is not finite
        scaler_handles_it = self.precision.scaling and self.precision.scale >= 1.0
        if not math.isfinite(total_loss) or (not torch.isfinite(grad_norm) and not scaler_handles_it):
            indices = [int(i) for share in update for batch in share for i in batch]
            return self._non_finite(indices, total_loss, float(grad_norm), progress)
        if not self.precision.step(self.optimizer):
            progress.skipped_batches += 1
            logger.info("fp16: the gradients of step %d overflowed; update skipped, loss scale lowered to %g",
                        progress.step + 1, self.precision.scale)
            return 0.0, 0
        progress.step += 1
        if isinstance(self.scheduler, torch.optim.lr_scheduler.LambdaLR):
            self.scheduler.step()
        return total_loss, tokens

    def _backward(self, trained: torch.nn.Module, batches: Iterator[Batch], count: int, tokens: int) -> torch.Tensor:
        """The gradients of ``count`` batches, each loss divided by the update's ``tokens``; their summed loss."""
        processes = self.processes
        trained.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=self.device)
        for number, batch in enumerate(itertools.islice(batches, count)):
            batch = batch.to(self.device)
            exchange = number == count - 1 or not processes.distributed  # gradients cross processes once
            with nullcontext() if exchange else trained.no_sync():
                with self.precision.autocast():  # the forward pass only; backward follows the forward's dtypes
                    loss = trained(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out,
                                   label_smoothing=self.training.label_smoothing)
                # DDP averages the processes' gradients: times their number, that is their sum
                self.precision.backward(loss.total * processes.world_size / tokens)
            loss_sum = loss_sum + loss.total.detach()
        return loss_sum

    def _non_finite(self, indices: list[int], loss: float, grad_norm: float,
                    progress: TrainingProgress) -> tuple[float, int]:
        origins = [self.origins[i] for i in indices[:10]]
        more = f" and {len(indices) - 10} more" if len(indices) > 10 else ""
        where = (f"epoch {progress.epoch + 1}, step {progress.step + 1}: loss {loss}, gradient norm "
                 f"{grad_norm}; batch examples {', '.join(origins)}{more}")
        self.optimizer.zero_grad(set_to_none=True)
        if self.training.nan_policy == "error":
            raise TrainingError(f"non-finite loss or gradient at {where}. Lower training.lr, check these "
                                "examples, or set training.nan_policy: skip")
        progress.skipped_batches += 1
        logger.warning("skipped a batch with a non-finite loss or gradient at %s", where)
        return 0.0, 0
