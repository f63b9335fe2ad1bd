"""Dynamic batching: the sentences of concurrent requests decoded together, for a server.

    batcher = Batcher(start, prepare, InFlight(network), max_batch_tokens=4000, max_wait=0.01, max_queue=2000,
                      arrive=arrive)
    batcher.start()                                          # or batcher.run() on a thread of yours
    answer = batcher.submit(["Ein Hund läuft."], settings)   # a concurrent.futures.Future
    answer.result()                                          # the items' results, in order
    batcher.stop()                                           # every accepted request is answered first
    batcher.abandon()                                        # or not: cancelled, and the worker ends soon

A request is a list of items (a text to translate, a pair to score) and hashable ``settings`` that
say how to decode them.  One worker (a thread of its own, or the caller's in ``run``) forms the
batches.  It prepares each waiting item once (``prepare(item, settings)``: what ``decode`` takes of
it, a text's tokens say, and how many tokens that is; on the worker: the submitting thread, a
server's event loop, only queues) and takes the items whose settings are those
of the oldest one (items with other settings wait for a batch of their own) until the batch holds
``max_batch_tokens`` tokens.  When more wait than fit, the oldest goes first and the rest of the
batch are those closest to it in length (less padding; the oldest still leads every batch, so none
waits for ever).

How long a batch waits for mates: decoding costs nearly as much for one sentence as for dozens, so
a batch that leaves without the clients just answered halves the next one.  Clients usually send
their next request as soon as they have their answer, so after each batch the worker waits until as
many items wait as it has just answered plus those that waited already; it starts at once when the
batch is full, and at the latest ``max_wait`` seconds after it became free (or after the oldest
arrived, if later).  Measured with 64 clients on 2 cores (docs/BENCHMARKS.md): with a fixed 10 ms
wait, batches held half of them, alternating; with this rule, nearly all.

A batch joins the decoding in flight (``flight``, a ``decoding.in_flight.InFlight``), whose
worker runs one decoder step of everything in flight at a time.  A beam search's batch
(``arrive(items, settings, abandoned, answer, failed)``: what joins, or None) joins the one beam
search of its settings in flight at its next step, and each of its items is answered the step
it ends (``answer(index, result)``), so a client answered sends its next text while the others
decode.  Any other batch (greedy search, sampling, scoring, constraints) is a search of its own
(``start(items, settings, abandoned)``: a generator of the decoder steps it asks for, its
results at the end) that runs beside the others and leaves the moment it ends, its requests
answered then.  Either way sentences that come while others decode join them at the next step
instead of waiting for the others to end (continuous batching).  While searches run, a waiting
batch joins once it holds a ``JOIN_SHARE``-th of the sentences in flight (each costs an encoder
run, and each search its own choices per step, so many tiny ones would slow all), or its oldest
has waited ``max_wait``; the tokens in flight stay within ``max_batch_tokens``.  cronos's
results do not depend on batch mates (P0), and a search in flight finds what it finds alone, so
each answer is what its text alone gives.  The queue holds at most ``max_queue`` items of requests still
waiting for their answer: past that, ``submit`` raises ``QueueFull`` (a server's 503).  A request
cancelled before its items are batched (its client went away, it timed out) costs no decoding and
no room in the queue; ``abandoned()`` says when every request of the batch being decoded was
cancelled, so that ``decode`` can stop early (a search checks it at each step).
"""
from __future__ import annotations

import collections
import math
import threading
import time
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Callable, Generator, Hashable, Protocol, Sequence

__all__ = ["Batcher", "BatcherStopped", "QueueFull", "Flight", "JOIN_SHARE"]

JOIN_SHARE = 4  # while searches run, a batch joins once it holds this share of the sentences in flight


# (items, settings, abandoned, answer, failed) -> what joins the search in flight (an arrival, how to start it), or None
Arrive = Callable[[list, Hashable, Callable[[], bool], Callable[[int, object], None], Callable[[Exception], None]],
                  "tuple[object, Callable] | None"]


class Flight(Protocol):
    """Where the batches' searches run (``decoding.in_flight.InFlight``); entered while the worker runs."""

    def join(self, search: Generator, done: Callable[[object], None]) -> None: ...

    def arrive(self, key: Hashable, arrival: object, start: Callable) -> None: ...

    def step(self) -> None: ...

    def __len__(self) -> int: ...

    def __enter__(self) -> object: ...

    def __exit__(self, *exc) -> None: ...


class QueueFull(RuntimeError):
    """More items wait than the queue holds; ``retry_after`` seconds is a fair wait."""

    def __init__(self, waiting: int, limit: int, retry_after: float):
        super().__init__(f"{waiting} sentences are waiting to be translated (the limit is {limit}); retry later")
        self.retry_after = retry_after


class BatcherStopped(RuntimeError):
    """The batcher is stopping: it takes no new requests."""


@dataclass(eq=False)  # compared by identity: the queue finds and drops its items by it
class _Request:
    items: Sequence
    settings: Hashable
    answer: Future
    results: list = field(default_factory=list)
    left: int = 0
    each: Callable[[int, object], None] | None = None  # told each item's result as it comes (streaming)


@dataclass(eq=False)
class _Item:
    request: _Request
    index: int
    arrived: float
    prepared: object = None    # what ``decode`` takes of the item, prepared by the worker
    tokens: int | None = None  # and its tokens; None until then
    answered: bool = False     # it has its result (a batch's items are answered one by one as each ends)

    @property
    def value(self):
        return self.request.items[self.index]


class Batcher:
    """Batches the items of concurrent requests (module docstring).

    ``start(items, settings, abandoned) -> search`` (a generator whose return value is the results,
    one per item, in order; ``abandoned()``: no one waits for them any more) and ``prepare(item,
    settings) -> (prepared item, tokens)`` run on the worker thread, ``start`` taking the prepared
    items; ``settings`` is anything hashable that says how to decode (a batch's items have equal
    settings); ``flight`` runs the searches.  ``arrive(items, settings, abandoned, answer, failed)``
    (None: none joins) gives, for a batch that joins the search in flight of its settings, the
    ``decoding.beam.Arrival`` and how to start that search (``InFlight.arrive``), or None when the
    batch is a search of its own; it answers each item by ``answer(index, result)``."""

    def __init__(self, start: Callable[[list, Hashable, Callable[[], bool]], Generator],
                 prepare: Callable[[object, Hashable], tuple[object, int]], flight: Flight,
                 max_batch_tokens: int, max_wait: float, max_queue: int, arrive: Arrive | None = None):
        if max_batch_tokens < 1 or max_queue < 1 or max_wait < 0:
            raise ValueError("max_batch_tokens and max_queue must be at least 1 and max_wait at least 0")
        self.start_search, self.prepare, self.flight, self.arrive = start, prepare, flight, arrive
        self.max_batch_tokens, self.max_wait, self.max_queue = max_batch_tokens, max_wait, max_queue
        self._waiting: collections.deque[_Item] = collections.deque()
        self._decoding: list[_Request] = []  # the requests of the batches in flight
        self._tokens_in_flight = 0
        self._changed = threading.Condition()
        self._stopping = False
        self._worker: threading.Thread | None = None
        self._free_since = 0.0  # when the worker finished its last batch
        self._coming_back = 1  # how many items the next batch waits for (module docstring)
        self._answered = 0  # items answered since the last batch joined

    @property
    def waiting(self) -> int:
        """Items accepted, not yet in a batch, and still wanted."""
        with self._changed:
            self._drop_answered()
            return len(self._waiting)

    def start(self) -> "Batcher":
        """Decode on a thread of its own (``run`` there)."""
        self._worker = threading.Thread(target=self.run, name="cronos-batcher", daemon=True)
        self._worker.start()
        return self

    def run(self) -> None:
        """Decode on this thread until ``stop`` and every accepted request is answered.  A server
        decodes on its main thread so that torch's OpenMP threads are those of the thread that
        loaded the model: a second team of them on another thread spins less when idle (libgomp
        throttles its threads' spinning when they outnumber the cores), which made one-sentence
        decoding twice as slow on a 2-core machine."""
        with self.flight:
            while True:
                batch = self._next_batch(running=len(self.flight) > 0)
                if batch:
                    self._join(batch)
                elif not self.flight:
                    return
                self.flight.step()

    def submit(self, items: Sequence, settings: Hashable, each: Callable[[int, object], None] | None = None) -> Future:
        """Queue ``items`` to be decoded with ``settings``; the future gives their results, in order,
        and ``each(index, result)`` (on the worker thread) each item's as soon as it has it."""
        request = _Request(list(items), settings, Future(), [None] * len(items), len(items), each)
        if not items:
            request.answer.set_result([])
            return request.answer
        with self._changed:
            if self._stopping:
                raise BatcherStopped("the server is shutting down and takes no new requests")
            if len(self._waiting) + len(items) > self.max_queue:
                self._drop_answered()  # a request that timed out or whose client went away holds no room
            if len(self._waiting) + len(items) > self.max_queue:
                raise QueueFull(len(self._waiting), self.max_queue, retry_after=max(1.0, self.max_wait))
            now = time.monotonic()
            self._waiting.extend(_Item(request, i, now) for i in range(len(items)))
            self._changed.notify()
        return request.answer

    def stop(self, timeout: float | None = None) -> None:
        """Take no new requests, answer every accepted one, then end the worker."""
        with self._changed:
            self._stopping = True
            self._changed.notify()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout)

    def abandon(self) -> None:
        """Take no new requests and cancel every accepted one not yet answered: the batch being
        decoded is abandoned (its ``decode`` may stop at its next step), and the worker ends."""
        with self._changed:
            self._stopping = True
            for request in [*(item.request for item in self._waiting), *self._decoding]:
                request.answer.cancel()
            self._changed.notify()

    def _next_batch(self, running: bool) -> list[_Item] | None:
        """The next batch to join the flight (module docstring).  With searches ``running``: one
        that may join now, or None; with none: one once it may go (waiting for it), or None once
        stopping with nothing left."""
        while True:
            with self._changed:
                self._drop_answered()
                if not self._waiting:
                    if self._stopping or running:
                        return None
                    self._changed.wait()
                    continue
                unmeasured = [item for item in self._waiting if item.tokens is None]
                if not unmeasured:
                    batch, full = self._candidates(self.max_batch_tokens - self._tokens_in_flight, running)
                    wait = self._wait_before(batch, full, running)
                    if wait == 0.0:
                        taken = set(batch)
                        self._waiting = collections.deque(item for item in self._waiting if item not in taken)
                        return batch
                    if running:
                        return None
                    self._changed.wait(wait)
                    continue
            self._measure(unmeasured)  # outside the lock, so that submit never waits for it

    def _wait_before(self, batch: list[_Item], full: bool, running: bool) -> float:
        """How long ``batch`` should wait before it goes: 0 to go now (module docstring); with
        searches ``running``, anything else means not now (they step meanwhile)."""
        oldest = self._waiting[0].arrived
        if not batch:  # no room in flight for the oldest yet
            return math.inf
        if running:
            share = len(batch) * JOIN_SHARE >= sum(len(r.items) for r in self._decoding)
            go = full or share or self._stopping or time.monotonic() >= oldest + self.max_wait
            return 0.0 if go else math.inf
        deadline = max(oldest, self._free_since) + self.max_wait
        back = len(self._waiting) >= self._coming_back
        if full or back or self._stopping:
            return 0.0
        return max(deadline - time.monotonic(), 0.0)

    def _measure(self, items: list[_Item]) -> None:
        """Each item prepared and its tokens counted; an item that cannot be fails its request (and only that one)."""
        for item in items:
            try:
                item.prepared, item.tokens = self.prepare(item.value, item.request.settings)
            except Exception as error:  # noqa: BLE001 - a request's own bad input, answered to it alone
                _settle(item.request.answer, error=error)

    def _candidates(self, room: int, running: bool) -> tuple[list[_Item], bool]:
        """The batch the waiting items make now within ``room`` tokens, and whether it is full (more
        of them wait than fit); none while searches are ``running`` and the oldest does not fit
        (alone, the oldest goes whatever its size)."""
        oldest = self._waiting[0]
        if running and oldest.tokens > room:
            return [], False
        mates = [item for item in self._waiting if item.request.settings == oldest.request.settings]
        total = sum(item.tokens for item in mates)
        if total <= room:
            return mates, total == room
        batch, tokens = [oldest], oldest.tokens
        for item in sorted(mates[1:], key=lambda item: abs(item.tokens - oldest.tokens)):  # stable: oldest first
            if tokens + item.tokens <= room:
                batch.append(item)
                tokens += item.tokens
        return batch, True

    def _drop_answered(self) -> None:
        """Drop the items of requests already answered: cancelled (the client went away) or failed."""
        if any(item.request.answer.done() for item in self._waiting):
            self._waiting = collections.deque(i for i in self._waiting if not i.request.answer.done())

    def _join(self, batch: list[_Item]) -> None:
        """Start the batch's search in the flight, or join the search in flight of its settings
        (``arrive``); its requests are answered as their items end (or fail: an error answers the
        requests of this batch only, and the worker goes on)."""
        requests = list({id(item.request): item.request for item in batch}.values())
        with self._changed:
            self._decoding += requests
            self._tokens_in_flight += sum(item.tokens for item in batch)
            self._answered = 0
        left = [len(batch)]
        abandoned = lambda: all(request.answer.done() for request in requests)  # noqa: E731

        def ended(items: Sequence[_Item]) -> None:
            with self._changed:  # before answering: a client answered now may send again at once
                self._tokens_in_flight -= sum(item.tokens for item in items)
                self._free_since = time.monotonic()
                self._answered += len(items)
                self._coming_back = len(self._waiting) + self._answered
                left[0] -= len(items)
                if not left[0]:
                    self._decoding = [r for r in self._decoding if all(r is not mine for mine in requests)]

        def done(outcome: list | Exception) -> None:
            ended(batch)
            self._answer(batch, outcome)

        def answer(index: int, result) -> None:
            ended([batch[index]])
            self._answer([batch[index]], [result])

        def failed(error: Exception) -> None:
            unanswered = [item for item in batch if not item.answered]
            ended(unanswered)
            self._answer(unanswered, error)
        settings, prepared = batch[0].request.settings, [item.prepared for item in batch]
        try:
            joining = None if self.arrive is None else self.arrive(prepared, settings, abandoned, answer, failed)
            search = None if joining is not None else self.start_search(prepared, settings, abandoned)
        except Exception as error:  # noqa: BLE001 - answered to the requests of this batch
            done(error)
            return
        if joining is not None:
            self.flight.arrive(settings, *joining)
        else:
            self.flight.join(search, done)

    @staticmethod
    def _answer(batch: list[_Item], outcome: list | Exception) -> None:
        """Give each item its result; a request is answered once all its items have theirs."""
        if isinstance(outcome, Exception):
            for request in {id(item.request): item.request for item in batch}.values():
                _settle(request.answer, error=outcome)
            return
        for item, result in zip(batch, outcome):
            item.answered = True
            request = item.request
            request.results[item.index] = result
            request.left -= 1
            if request.each is not None and not request.answer.done():
                request.each(item.index, result)
            if request.left == 0:
                _settle(request.answer, result=request.results)


def _settle(answer: Future, result=None, error: BaseException | None = None) -> None:
    """Answer a request unless it is answered already (cancelled by its client, or failed by another
    batch); the check and the answer race with a cancel on another thread, hence the guard."""
    if answer.done():
        return
    try:
        if error is not None:
            answer.set_exception(error)
        else:
            answer.set_result(result)
    except InvalidStateError:
        pass
