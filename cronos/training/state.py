"""What a run saves in ``last.pt`` to continue exactly where it stopped, and restores from it:
where the run stands (``TrainingProgress``), the optimiser, the schedule, fp16's loss scale, every
process's random state, and how many batches an update took (a run stopped inside an epoch
continues that epoch's plan).

    state = TrainingState(optimizer, scheduler, precision, processes, device, average)
    saved = state.state_dict()            # every process calls it (the random states are gathered);
                                          # rank 0 gets the dict to store, the others None
    state.load_state_dict(saved)          # then state.check_same_plan(...) before training on
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..storage.checkpoint import CheckpointError
from ..precision import MixedPrecision
from .distributed import Processes
from .ema import ExponentialAverage, NoAverage

__all__ = ["TrainingProgress", "TrainingState"]


@dataclass
class TrainingProgress:
    """Where a run stands; saved in ``last.pt`` so a resumed run picks up exactly here."""

    step: int = 0
    epoch: int = 0
    batches_done: int = 0            # updates of ``epoch`` already trained (each ``training.accumulate`` batches)
    epoch_loss_sum: float = 0.0      # summed loss over those batches' real target tokens
    epoch_tokens: int = 0            # and their number: a resumed epoch reports the whole epoch
    epoch_seconds: float = 0.0       # seconds spent in ``epoch`` so far, in every process that trained it
    best_score: float | None = None  # of ``training.early_stopping_metric``
    best_step: int | None = None
    bad_validations: int = 0
    skipped_batches: int = 0
    stopped_early: bool = False
    history: list[dict] = field(default_factory=list)


class TrainingState:
    """The resumable state of a run beside its weights: ``progress`` and what it holds of the
    optimiser, the schedule (or None), the loss scale, the processes' random states and the
    weights' moving average."""

    def __init__(self, optimizer: torch.optim.Optimizer, scheduler: Any, precision: MixedPrecision,
                 processes: Processes, device: torch.device, average: ExponentialAverage | NoAverage = NoAverage()):
        self.optimizer, self.scheduler, self.precision = optimizer, scheduler, precision
        self.processes, self.device, self.average = processes, device, average
        self.progress = TrainingProgress()

    def state_dict(self) -> dict[str, Any] | None:
        """The ``training`` entry of ``last.pt`` on rank 0, None in the other processes (which must
        call it too, at the same step: their random states are gathered)."""
        cuda = self.device.type == "cuda"  # dropout on a GPU draws from its generator
        process_rng = self.processes.gather((torch.get_rng_state(), torch.cuda.get_rng_state(self.device) if cuda
                                             else None))
        if not self.processes.main:
            return None
        state = {
            "progress": asdict(self.progress),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all(),  # [] without a GPU
            "scaler": self.precision.state_dict(),  # fp16's loss scale ({} otherwise)
            "world_size": self.processes.world_size,
            "process_rng": process_rng,  # each process's (CPU, its GPU's) random state, in rank order
        }
        average = self.average.state_dict()
        return state if average is None else {**state, "average": average}  # training.ema_decay's average

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Optimiser, schedule, loss scale, random state and progress from a ``training`` entry.
        The same number of processes get their own random states back; another number (allowed
        at an epoch boundary) takes rank 0's."""
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.precision.load_state_dict(state["scaler"])
        self.average.load_state_dict(state.get("average"))  # none in a run without training.ema_decay
        process_rng = state["process_rng"]
        if len(process_rng) == self.processes.world_size:
            cpu, gpu = process_rng[self.processes.rank]
            torch.set_rng_state(cpu)
            if gpu is not None and self.device.type == "cuda":
                torch.cuda.set_rng_state(gpu, self.device)
        else:
            torch.set_rng_state(state["rng"])
            if state["cuda_rng"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["cuda_rng"][:torch.cuda.device_count()])
        self.progress = TrainingProgress(**state["progress"])

    def check_same_plan(self, stored_accumulate: int, stored_world_size: int, accumulate: int, path: Path) -> None:
        """A run stopped inside an epoch continues that epoch's plan: the same batches per update,
        ``training.accumulate`` x processes (an epoch boundary may change either)."""
        if not self.progress.batches_done:
            return
        before = stored_accumulate * stored_world_size
        if before != accumulate * self.processes.world_size:
            raise CheckpointError(
                f"{path}: stopped inside epoch {self.progress.epoch + 1} after {self.progress.batches_done} updates of "
                f"{before} batches (training.accumulate={stored_accumulate} x {stored_world_size} process(es)); "
                f"continue with training.accumulate x processes = {before}, e.g. "
                f"training.accumulate={stored_accumulate} on {stored_world_size} process(es) (the epoch's remaining "
                "updates are planned from it)")
