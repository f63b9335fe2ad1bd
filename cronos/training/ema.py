"""An exponential moving average of the weights during training (``training.ema_decay``): what
validation scores, ``best.pt`` and kept checkpoints hold, and what the run ends with.

    average = ExponentialAverage(network, decay=0.999)
    average.update(step)                   # after each optimiser step: shadow += (1 - d) * (weights - shadow)
    with average.in_use():                 # the network holds the averaged weights for the block
        scores = validator.scores()

The decay of update ``t`` (counted from 1) is ``min(decay, (1 + t) / (10 + t))``, so early updates,
when the weights still move far, weigh more than a fixed decay would let them (as TensorFlow's
``ExponentialMovingAverage`` with ``num_updates``).  The average of a row that stays zero stays
zero, so the frozen ``<pad>`` rows are zero in the average too; every process takes the same
updated weights, so every process holds the same average.  ``NoAverage`` stands in when the
option is off.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Any, ContextManager, Iterator

import torch

__all__ = ["ExponentialAverage", "NoAverage", "average_for"]


class ExponentialAverage:
    """The average of ``network``'s parameters (a copy of each, its ``shadow``)."""

    def __init__(self, network: torch.nn.Module, decay: float):
        self.network, self.decay = network, decay
        self.parameters = list(network.parameters())  # shared and tied weights once
        self.shadow = [p.detach().clone() for p in self.parameters]
        self.updates = 0

    def update(self) -> None:
        """Move the average towards the network's weights after an optimiser step."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        with torch.no_grad():
            torch._foreach_lerp_(self.shadow, [p.detach() for p in self.parameters], 1.0 - decay)

    @contextmanager
    def in_use(self) -> Iterator[None]:
        """The network holds the averaged weights inside the block, its own again after it."""
        own = [p.detach().clone() for p in self.parameters]
        with torch.no_grad():
            torch._foreach_copy_(self.parameters, self.shadow)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self.parameters, own)

    def adopt(self) -> None:
        """The network keeps the averaged weights (the run ends on them)."""
        with torch.no_grad():
            torch._foreach_copy_(self.parameters, self.shadow)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates, "shadow": [s.clone() for s in self.shadow]}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """The average of a ``last.pt``; none there (the run had no average): it starts from the weights."""
        if state is None:
            self.shadow, self.updates = [p.detach().clone() for p in self.parameters], 0
            return
        shadow = state["shadow"]
        if len(shadow) != len(self.parameters) or any(s.shape != p.shape for s, p in zip(shadow, self.parameters)):
            raise ValueError("the stored average does not fit this network's parameters")
        self.shadow = [s.to(p.device, p.dtype).clone() for s, p in zip(shadow, self.parameters)]
        self.updates = int(state["updates"])


class NoAverage:
    """No average (``training.ema_decay`` unset): the network's own weights everywhere."""

    def update(self) -> None:
        """Nothing to average."""

    def in_use(self) -> ContextManager[None]:
        return nullcontext()

    def adopt(self) -> None:
        """The network keeps its weights."""

    def state_dict(self) -> None:
        return None

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Nothing to restore (a stored average is not used by a run without one)."""


def average_for(network: torch.nn.Module, decay: float | None) -> ExponentialAverage | NoAverage:
    """The average ``training.ema_decay`` asks for."""
    return NoAverage() if decay is None else ExponentialAverage(network, decay)
