"""How a training run shows its progress.

In a terminal: a tqdm bar over the run's optimiser steps (to ``max_steps`` when that comes first),
with the loss, tokens/s and learning rate.  Anywhere else (a log file, CI, ``nohup``, a notebook's
captured output): a line through the ``cronos`` logger every ``log_every`` steps, with the step,
loss, tokens/s, learning rate and the time left.  Log lines written while a bar is shown go above
it, never into its line.  When nothing in the program has configured logging (the Python API in a
plain script), the run's messages go to stderr for its duration instead of being lost.
"""
from __future__ import annotations

import logging
import sys
from contextlib import ExitStack, contextmanager
from typing import Iterator

from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

__all__ = ["ProgressReport", "report_to_stderr_unless_configured", "format_duration", "epochs", "is_terminal"]

logger = logging.getLogger("cronos")


def format_duration(seconds: float) -> str:
    """``3725.2`` -> ``"1:02:05"``."""
    seconds = max(0, round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def epochs(count: int) -> str:
    """``1`` -> ``"1 epoch"``, ``3`` -> ``"3 epochs"``."""
    return f"{count} epoch{'' if count == 1 else 's'}"


class ProgressReport:
    """Progress of one run, from step ``first_step`` (in epoch ``first_epoch``, 1-based) to
    ``total_steps``; a context manager.

    ``bar``: show a tqdm bar (only honoured when stderr is a terminal); without a bar, a log line
    every ``log_every`` steps (``None``: none).
    """

    def __init__(self, first_step: int, first_epoch: int, total_steps: int, epochs: int, bar: bool,
                 log_every: int | None):
        self.total_steps, self.epochs, self.log_every = total_steps, epochs, log_every
        self.first_step, self.first_epoch = first_step, first_epoch
        self.show_bar = bar and is_terminal(sys.stderr)
        self._bar = None
        self._stack = ExitStack()
        self._window_loss = self._window_seconds = 0.0
        self._window_tokens = 0
        self._seconds = 0.0  # training-step seconds in this process: what the time left is estimated from

    def __enter__(self) -> "ProgressReport":
        if self.show_bar:
            self._bar = self._stack.enter_context(
                tqdm(total=self.total_steps, initial=self.first_step, desc=f"epoch {self.first_epoch}/{self.epochs}",
                     unit="step", dynamic_ncols=True, leave=False))
            self._stack.enter_context(logging_redirect_tqdm(loggers=_loggers_that_print(logger)))
        return self

    def __exit__(self, *exc_info) -> None:
        self._stack.close()

    def step(self, step: int, epoch: int, loss_sum: float, tokens: int, seconds: float, lr: float) -> None:
        """One optimiser step done: ``loss_sum`` over its ``tokens`` real target tokens, in ``seconds``."""
        self._seconds += seconds
        self._window_loss += loss_sum
        self._window_tokens += tokens
        self._window_seconds += seconds
        loss = self._window_loss / max(self._window_tokens, 1)
        speed = self._window_tokens / max(self._window_seconds, 1e-9)
        if self._bar is not None:
            self._bar.set_description(f"epoch {epoch}/{self.epochs}", refresh=False)
            self._bar.set_postfix_str(f"loss {loss:.4f}, {speed:,.0f} tok/s, lr {lr:.2e}", refresh=False)
            self._bar.update(step - self._bar.n)
        elif self.log_every and step % self.log_every == 0:
            left = (self.total_steps - step) * self._seconds / max(step - self.first_step, 1)
            logger.info("step %d/%d (epoch %d/%d): loss %.4f, %s tok/s, lr %.2e, %s left", step, self.total_steps,
                        epoch, self.epochs, loss, f"{speed:,.0f}", lr, format_duration(left))
        if self.log_every and step % self.log_every == 0:
            self._window_loss = self._window_seconds = 0.0
            self._window_tokens = 0


def _loggers_that_print(start: logging.Logger) -> list[logging.Logger]:
    """The loggers from ``start`` up through which its records propagate and that have handlers: the
    ones whose console output must go above the bar.  A logger without handlers is left alone, or
    tqdm would give it one of its own and every line would print twice."""
    found, current = [], start
    while current is not None:
        if current.handlers:
            found.append(current)
        if not current.propagate:
            break
        current = current.parent
    return found


def is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # replaced or closed streams
        return False


@contextmanager
def report_to_stderr_unless_configured() -> Iterator[None]:
    """While it lasts, ``cronos`` INFO messages go to stderr, unless the program configured logging
    (any handler on the ``cronos`` logger or above it), which is then left to decide."""
    if logger.hasHandlers():
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    previous_level = logger.level
    logger.addHandler(handler)
    if previous_level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)
