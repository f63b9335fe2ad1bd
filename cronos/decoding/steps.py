"""What a search is made of: the steps it asks of a network, what it finds, and what every
strategy shares (``decoding/search.py``, ``decoding/beam.py``).

    step = next(search)                       # a DecoderStep: each row's last token and the state
    step = search.send(network.run_decoder(step.tokens[:, None], step.state, step.need_weights))
    ...                                       # until StopIteration, whose value is the hypotheses

``run_alone`` runs one search so; ``in_flight.InFlight`` runs the steps of several as one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Generator, NamedTuple, Sequence

import torch
from torch import Tensor

from ..modules.invariance import rows_to_add
from ..modules.network import Seq2Seq
from .controls import StepRules

__all__ = ["Hypothesis", "DecoderStep", "StepOutput", "Search", "Stop", "SearchStopped", "run_alone",
           "allowed", "rows_in_flight"]

Stop = Callable[[], bool]  # asked before each step: True ends the search (SearchStopped)


class DecoderStep(NamedTuple):
    """One step a search asks of the network: each row's last token ``[rows]`` and the decoder state."""

    tokens: Tensor
    state: object
    need_weights: bool


StepOutput = tuple[Tensor, "Tensor | None", object]  # logits [rows, 1, V], attention [rows, 1, S] or None, state
Search = Generator[DecoderStep, StepOutput, "list[list[Hypothesis]]"]  # a search's steps, then its hypotheses


@dataclass(frozen=True)
class Hypothesis:
    tokens: list[int]          # output token ids, without <eos> (a forced prefix's included)
    score: float               # what ranks hypotheses (``controls.Ranking``): log_prob / length penalty (length:
                               # tokens + <eos>), plus the coverage penalty when it is weighted
    attention: Tensor | None   # [len(tokens), S] over the batch's padded source, pad columns exactly 0
    log_prob: float            # sum of the tokens' log-probs, <eos> included when the output ended with it


class SearchStopped(Exception):
    """A search ended before its outputs were found, because its ``stop`` said so."""


@torch.no_grad()
def run_alone(network: Seq2Seq, search: Search) -> list[list[Hypothesis]]:
    """Run ``search``'s decoder steps one after the other on ``network`` (without autograd, as
    every driver of a search does: its encoder and bookkeeping run as it is advanced); its hypotheses."""
    try:
        step = next(search)
        while True:
            step = search.send(network.run_decoder(step.tokens[:, None], step.state, step.need_weights))
    except StopIteration as end:
        return end.value


def allowed(rules: StepRules, steps: Sequence[int], inputs: Sequence[int], history: Tensor,
            logits: Tensor) -> tuple[Tensor, Tensor]:
    """A step's ``logits [rows, V]`` -> ``(log_probs, logits)`` over the tokens ``rules`` allow
    (``steps``, ``inputs``: each row's own step and input): the blocked ones' logits at -inf
    before the distribution is normalised (as CTranslate2 does), so a forced token has
    probability 1 and the others share what the blocked ones leave.  Log-probs in float32; each
    strategy refuses a NaN among them (``inference.NonFiniteOutput``) where it is cheapest to
    see: in the best of each row or group (``max`` and ``topk`` put a NaN first)."""
    blocked = rules.blocked(steps, inputs, history, logits.size(-1))
    if blocked is not None:
        logits = logits.masked_fill(blocked, float("-inf"))
    return torch.log_softmax(logits.float(), dim=-1), logits


def rows_in_flight(done: Tensor) -> Tensor:
    """Which rows (or beam groups) stay in the batch: every one not ``done`` (``[b]``, bool, CPU), then
    as many done ones as filler rows as make their number a multiple of ``invariance.ROW_MULTIPLE``;
    in batch order.  A row's bits would not move without them (the decoder's products widen 1-3
    rows themselves, ``linear.linear_by_rows``), but each change of the rows moves the decoder's
    state (its memory and caches): rows leave four at a time, which measured faster than one at a
    time (docs/BENCHMARKS.md, 2026-12-07)."""
    running = (~done).nonzero().flatten()
    fillers = done.nonzero().flatten()[: rows_to_add(running.numel())]
    return torch.cat([running, fillers]).sort().values
