"""Dynamic batching: the sentences of concurrent requests decoded together, for a server.

    batcher = Batcher(decode, count_tokens, max_batch_tokens=4000, max_wait=0.01, max_queue=2000)
    batcher.start()
    answer = batcher.submit(["Ein Hund läuft."], settings)   # a concurrent.futures.Future
    answer.result()                                          # the sentences' results, in order
    batcher.stop()                                           # every accepted request is answered first

One worker thread forms the batches.  It takes the waiting sentences whose search settings are
those of the oldest one (sentences with other settings wait for a batch of their own), oldest
first, until the batch holds ``max_batch_tokens`` source tokens, waiting at most ``max_wait``
seconds after the oldest arrived for more to come; decodes them in one call
(``decode(texts, settings)``, which batches them by length); and answers each request once all its
sentences are decoded.  cronos's results do not depend on batch mates (P0), so each answer is what
its text alone gives.  The queue holds at most ``max_queue`` sentences: past that, ``submit``
raises ``QueueFull`` (a server's 503).  A request cancelled before its sentences are batched
(its client went away) costs no decoding.
"""
from __future__ import annotations

import collections
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable, Hashable, Sequence

__all__ = ["Batcher", "BatcherStopped", "QueueFull", "BatchingStats"]


class QueueFull(RuntimeError):
    """More sentences wait than the queue holds; ``retry_after`` seconds is a fair wait."""

    def __init__(self, waiting: int, limit: int, retry_after: float):
        super().__init__(f"{waiting} sentences are waiting to be translated (the limit is {limit}); retry later")
        self.retry_after = retry_after


class BatcherStopped(RuntimeError):
    """The batcher is stopping: it takes no new requests."""


@dataclass
class _Request:
    texts: Sequence[str]
    settings: Hashable
    answer: Future
    results: list = field(default_factory=list)
    left: int = 0


@dataclass(frozen=True)
class _Sentence:
    request: _Request
    index: int
    tokens: int
    arrived: float


@dataclass
class BatchingStats:
    """What a server's metrics report: counts so far, and how many batches of each size (sentences)
    were formed (a count per size, so it stays small however long the server runs)."""

    requests: int = 0
    sentences: int = 0
    batches: int = 0
    batch_sizes: collections.Counter = field(default_factory=collections.Counter)


class Batcher:
    """Batches the sentences of concurrent requests (module docstring).

    ``decode(texts, settings) -> results`` (one per text, in order) runs on the worker thread;
    ``count_tokens(text)`` measures a source; ``settings`` is anything hashable that says how to
    decode (requests batch together only with equal settings)."""

    def __init__(self, decode: Callable[[list[str], Hashable], list], count_tokens: Callable[[str], int],
                 max_batch_tokens: int, max_wait: float, max_queue: int):
        if max_batch_tokens < 1 or max_queue < 1 or max_wait < 0:
            raise ValueError("max_batch_tokens and max_queue must be at least 1 and max_wait at least 0")
        self.decode, self.count_tokens = decode, count_tokens
        self.max_batch_tokens, self.max_wait, self.max_queue = max_batch_tokens, max_wait, max_queue
        self._waiting: collections.deque[_Sentence] = collections.deque()
        self._changed = threading.Condition()
        self._stopping = False
        self._worker = threading.Thread(target=self._work, name="cronos-batcher", daemon=True)
        self.stats = BatchingStats()

    @property
    def waiting(self) -> int:
        """Sentences accepted and not yet in a batch."""
        return len(self._waiting)

    def start(self) -> "Batcher":
        self._worker.start()
        return self

    def submit(self, texts: Sequence[str], settings: Hashable) -> Future:
        """Queue ``texts`` to be decoded with ``settings``; the future gives their results, in order."""
        request = _Request(list(texts), settings, Future(), [None] * len(texts), len(texts))
        if not texts:
            request.answer.set_result([])
            return request.answer
        tokens = [self.count_tokens(text) for text in texts]  # on the caller's thread: the worker only decodes
        with self._changed:
            if self._stopping:
                raise BatcherStopped("the server is shutting down and takes no new requests")
            if len(self._waiting) + len(texts) > self.max_queue:
                raise QueueFull(len(self._waiting), self.max_queue, retry_after=max(1.0, self.max_wait))
            now = time.monotonic()
            self._waiting.extend(_Sentence(request, i, n, now) for i, n in enumerate(tokens))
            self.stats.requests += 1
            self.stats.sentences += len(texts)
            self._changed.notify()
        return request.answer

    def stop(self, timeout: float | None = None) -> None:
        """Take no new requests, answer every accepted one, then end the worker."""
        with self._changed:
            self._stopping = True
            self._changed.notify()
        if self._worker.is_alive():
            self._worker.join(timeout)

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._decode(batch)

    def _next_batch(self) -> list[_Sentence] | None:
        """The next batch (module docstring), or None once stopping with nothing left."""
        with self._changed:
            while True:
                self._drop_cancelled()
                if not self._waiting:
                    if self._stopping:
                        return None
                    self._changed.wait()
                    continue
                batch, full = self._take_candidates()
                deadline = self._waiting[0].arrived + self.max_wait
                if full or self._stopping or time.monotonic() >= deadline:
                    for sentence in batch:
                        self._waiting.remove(sentence)
                    return batch
                self._changed.wait(deadline - time.monotonic())

    def _take_candidates(self) -> tuple[list[_Sentence], bool]:
        """The oldest sentence's settings-mates, oldest first, within the token budget; and whether
        the budget is full (the next one of them would not fit)."""
        settings = self._waiting[0].request.settings
        batch, tokens = [], 0
        for sentence in self._waiting:
            if sentence.request.settings != settings:
                continue
            if batch and tokens + sentence.tokens > self.max_batch_tokens:
                return batch, True
            batch.append(sentence)
            tokens += sentence.tokens
        return batch, tokens >= self.max_batch_tokens

    def _drop_cancelled(self) -> None:
        if any(s.request.answer.cancelled() for s in self._waiting):
            self._waiting = collections.deque(s for s in self._waiting if not s.request.answer.cancelled())

    def _decode(self, batch: list[_Sentence]) -> None:
        self.stats.batches += 1
        self.stats.batch_sizes[len(batch)] += 1
        try:
            results = self.decode([s.request.texts[s.index] for s in batch], batch[0].request.settings)
        except Exception as error:  # noqa: BLE001 - the requests of this batch get the error, the worker goes on
            for request in {id(s.request): s.request for s in batch}.values():
                if not request.answer.done():  # cancelled meanwhile, or failed in an earlier batch
                    request.answer.set_exception(error)
            return
        for sentence, result in zip(batch, results):
            request = sentence.request
            request.results[sentence.index] = result
            request.left -= 1
            if request.left == 0 and not request.answer.done():
                request.answer.set_result(request.results)
