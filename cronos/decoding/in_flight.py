"""Searches that decode together: each joins when it comes, and their steps run as one.

    with InFlight(network) as flight:  # the network in eval mode, its weights packed, no autograd
        flight.join(searching(network, batch, Beam(5), options), done)  # its encoder runs now
        flight.arrive(settings, arrival_of(batch, options, None, answer), start)  # or: join the beam search
        while flight:                                                             # of these settings in flight
            flight.step()  # one decoder step of every search in flight; done(hypotheses) as each ends

A server keeps its decoder full this way (continuous batching): a search that ends leaves at once,
and one that comes joins at the next step, its encoder run and its cache started, without waiting
for the others to end.  Each search keeps its own rows, settings and choices: the embedding, the
decoder's per-row layers and the output projection run over the rows of all of them at once,
attention over each one's own memory and cache (``Seq2Seq.run_decoder_together``), and each
search chooses its tokens from its own rows.  A row's bits do not depend on the rows beside it
(docs/batch_invariance.md), so a search finds, to the bit, the hypotheses it finds alone
(``search.run_alone``), whatever joins or leaves beside it: its sentences' translations are
those of each sentence alone (P0).

Beam searches go further (``arrive``): the batches of one setting join one search in flight
(``beam.beam_search_in_flight``), whose inputs decode at different steps in one decoder batch, each
answered the step it ends, so a search costs its choices once per step however many batches it
holds, and no sentence waits for the others of its batch.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Hashable

import torch

from ..modules.network import Seq2Seq, evaluating
from .beam import Arrival, Joining
from .steps import DecoderStep, Hypothesis, Search

__all__ = ["InFlight", "Done"]

Done = Callable[["list[list[Hypothesis]] | Exception"], None]  # a search's hypotheses, or the error that ended it


@dataclass
class _Flying:
    search: Search
    step: DecoderStep  # what it asks of the next step
    done: Done


class InFlight:
    """The searches in flight on one network (module docstring); ``len()`` of them, and their ``rows``."""

    def __init__(self, network: Seq2Seq):
        self.network = network
        self._flying: list[_Flying] = []
        self._joining: dict[Hashable, Joining] = {}  # the searches in flight that batches join, by their settings
        self._evaluating = contextlib.ExitStack()

    def __len__(self) -> int:
        return len(self._flying)

    def __enter__(self) -> "InFlight":
        """The network in ``evaluating`` (eval mode, weights packed, no autograd) until ``__exit__``:
        what searches run in, entered once for every search that comes."""
        self._evaluating.enter_context(evaluating(self.network))
        return self

    def __exit__(self, *exc) -> None:
        self._evaluating.close()

    @property
    def rows(self) -> int:
        """The decoder rows the next step runs (beams and filler rows included)."""
        return sum(flying.step.tokens.size(0) for flying in self._flying)

    @torch.no_grad()
    def join(self, search: Search, done: Done) -> None:
        """Start ``search`` (its encoder runs now) to run its steps with the others from the next
        one on; ``done`` gets its hypotheses, or the error that ended it, once, when it ends."""
        self._advance(search, None, done)

    @torch.no_grad()
    def arrive(self, key: Hashable, arrival: Arrival, start: Callable[[Joining], Search]) -> None:
        """``arrival`` joins the search in flight under ``key`` at its next step, or starts it
        (``start(joining)``, a ``beam.beam_search_in_flight`` that takes what is posted to
        ``joining``): batches decoded with the same settings share one search, whose rows are at
        different steps, each input answered the step it ends (``arrival.answer``)."""
        joining = self._joining.get(key)
        if joining is not None:
            joining.post(arrival)
            return
        joining = self._joining[key] = Joining()
        joining.post(arrival)

        def ended(outcome: object) -> None:  # its arrivals were answered, or told the error
            if self._joining.get(key) is joining:
                del self._joining[key]
        self._advance(start(joining), None, ended)

    @torch.no_grad()
    def step(self) -> None:
        """One decoder step of every search in flight; those that end leave, each told by its ``done``.
        A step the network cannot run (out of memory, say) ends every search in flight with its error."""
        flying, self._flying = self._flying, []
        if not flying:
            return
        try:
            outputs = self.network.run_decoder_together([(f.step.tokens[:, None], f.step.state) for f in flying],
                                                        any(f.step.need_weights for f in flying))
        except Exception as error:  # noqa: BLE001 - told to each search's caller
            for f in flying:
                self._advance(f.search, None, f.done, error)
            return
        for f, output in zip(flying, outputs):
            self._advance(f.search, output, f.done)

    def _advance(self, search: Search, output: tuple | None, done: Done, error: Exception | None = None) -> None:
        """Hand ``search`` its step's ``output`` (None: start it), or the ``error`` its step met (which
        ends it), and keep it if it asks for another."""
        try:
            if error is not None:  # a beam search in flight tells its arrivals, then raises it again
                step = search.throw(error)
            else:
                step = next(search) if output is None else search.send(output)
        except StopIteration as end:
            done(end.value)
        except Exception as error:  # noqa: BLE001 - this search's own (a bad number, its stop), told to its caller
            done(error)
        else:
            self._flying.append(_Flying(search, step, done))
