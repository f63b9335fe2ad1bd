"""Several processes, one run: what cronos needs of ``torch.distributed``, in one place.

``torchrun`` starts the processes and tells each its place (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``); ``Processes.from_environment()`` reads it (one process, rank 0, without
torchrun).  The process group uses gloo on the CPU and NCCL on GPUs, each process on the GPU of
its ``LOCAL_RANK``.  Outside a distributed run every helper here is a no-op, so the single-process
code path is the same code.

    processes = Processes.from_environment()
    with process_group(processes, device):
        loss, stop = processes.sum([loss, stop], device)      # every process gets the totals
        record = processes.from_main(record)                   # rank 0's value, everywhere
"""
from __future__ import annotations

import datetime
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
import torch.distributed as dist

from ..config import ConfigError
from ..device import resolve_device

__all__ = ["Processes", "process_group"]

# rank 0 validates and writes checkpoints while the others wait at the next exchange
TIMEOUT = datetime.timedelta(hours=2)


@dataclass(frozen=True)
class Processes:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_environment(cls) -> "Processes":
        """This process's place, as torchrun sets it in the environment (one process without it)."""
        try:
            rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
            local_rank = int(os.environ.get("LOCAL_RANK", rank))
        except ValueError as error:
            raise ConfigError("environment", "RANK/WORLD_SIZE/LOCAL_RANK", f"not an integer: {error}") from None
        if not 0 <= rank < world_size:
            raise ConfigError("environment", "RANK", f"expected 0 <= RANK < WORLD_SIZE ({world_size}), got {rank}")
        return cls(rank, world_size, local_rank)

    @property
    def main(self) -> bool:
        """Rank 0: the process that validates, writes checkpoints and metrics, and reports progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def device(self, name: str) -> torch.device:
        """``training.device`` for this process: with several processes on GPUs, the GPU of its local rank."""
        device = resolve_device(name)
        if self.distributed and device.type == "cuda" and device.index is None:
            if self.local_rank >= torch.cuda.device_count():
                raise ConfigError("environment", "LOCAL_RANK", f"{self.local_rank}, but torch sees "
                                  f"{torch.cuda.device_count()} GPU(s); start at most that many processes per machine")
            device = torch.device("cuda", self.local_rank)
        return device

    def sum(self, values: Sequence[float], device: torch.device) -> list[float]:
        """``values`` summed over every process (one small all-reduce)."""
        if not self.distributed:
            return [float(v) for v in values]
        totals = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
        dist.all_reduce(totals)
        return totals.tolist()

    def from_main(self, value: Any) -> Any:
        """Rank 0's ``value`` (any picklable object), in every process."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every process's ``value``, in rank order, in every process."""
        if not self.distributed:
            return [value]
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


@contextmanager
def process_group(processes: Processes, device: torch.device) -> Iterator[None]:
    """The process group of a distributed run for the block (nothing for one process; an existing
    group, e.g. the caller's own, is used as it is and left open)."""
    if not processes.distributed or dist.is_initialized():
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
    try:
        yield
    finally:
        dist.destroy_process_group()
