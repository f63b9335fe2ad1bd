"""Stopping a run on request: SIGINT or SIGTERM (or ``request``) asks for a stop after the current
step, and after each step every process agrees whether any process was asked, so that all stop
after the same step.

    stop = StopSignals(processes)
    with stop.handled():            # SIGINT/SIGTERM handlers for the block (main thread only)
        ...one step...
        stop.agree(device)          # stop.agreed: why the run stops, or None
"""
from __future__ import annotations

import logging
import signal
import threading
from contextlib import contextmanager
from typing import Iterator

import torch

from .distributed import Processes

__all__ = ["StopSignals"]

logger = logging.getLogger("cronos")


class StopSignals:
    """``requested``: why this process was asked to stop (a signal's name); ``agreed``: why the run
    stops, the same in every process once ``agree`` has run after a step."""

    def __init__(self, processes: Processes):
        self.processes = processes
        self.requested: str | None = None
        self.agreed: str | None = None

    def request(self, reason: str) -> None:
        """Stop after the current step (what SIGINT and SIGTERM do)."""
        self.requested = reason
        logger.warning("%s: finishing the current step, then writing a checkpoint", reason)

    def agree(self, device: torch.device) -> None:
        """After a step: every process stops if any of them was asked to."""
        asked, = self.processes.sum([self.requested is not None], device)
        if asked:
            self.agreed = self.requested or "a signal to another process"

    @contextmanager
    def handled(self) -> Iterator[None]:
        """SIGINT/SIGTERM request a stop for the block; a second SIGINT aborts (one process)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_signal(signum, frame):
            # a second Ctrl-C aborts one process; torchrun passes on the SIGINT its workers got already
            if self.requested and signum == signal.SIGINT and not self.processes.distributed:
                raise KeyboardInterrupt
            self.request(signal.Signals(signum).name)

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
