"""Answers sent as they come: ``"stream": true`` on ``/translate`` answers with server-sent events,
one per text as soon as its translation is found, in the order they are found.

    event: translation
    data: {"index": 2, "translation": "Two dogs play."}

    event: done
    data: {}

A beam search's sentences are each answered the step they end (``decoding/beam.py``), so a long
text does not hold back the short ones sent with it; other searches' come when their batch ends.
A request the server refuses before its first translation is found (a full queue, a text it
cannot read) gets its usual JSON error and status; an error after that is one last event,
``event: error`` with ``{"error": ...}``.  Partial translations are not streamed: beam search's
best hypothesis changes until its sentence ends, so what it holds midway is not a prefix of the
answer.
"""
from __future__ import annotations

import asyncio
import json
from concurrent.futures import Future
from typing import AsyncIterator, Awaitable, Callable

from fastapi.responses import StreamingResponse

from .errors import Refused

__all__ = ["streamed"]

Each = Callable[[int, object], None]  # an item's index and result, told on the batcher's worker


async def streamed(submit: Callable[[Each], Future], count: int, refusal: Callable[[Exception], Refused],
                   disconnected: Callable[[], Awaitable[None]], timeout: float) -> StreamingResponse:
    """The answer to a request of ``count`` items sent with ``submit(each)``, as events; ``Refused``
    (``refusal`` of its error) when it fails before its first result."""
    loop = asyncio.get_running_loop()
    found: asyncio.Queue = asyncio.Queue()
    pending = submit(lambda index, result: loop.call_soon_threadsafe(found.put_nowait, (index, result)))
    waiting = _Waiting(pending, found, disconnected, loop.time() + timeout, timeout)
    try:
        first = await waiting.next()
    except Exception as error:
        pending.cancel()
        raise error if isinstance(error, Refused) else refusal(error) from None
    return StreamingResponse(_events(first, count, waiting, refusal), media_type="text/event-stream",
                             headers={"cache-control": "no-cache"})


class _Waiting:
    """The results of one request as they come: ``next`` waits for the next one, or raises the
    request's error, ``Refused`` 499 when its client went away, or 504 past the deadline."""

    def __init__(self, pending: Future, found: asyncio.Queue, disconnected: Callable[[], Awaitable[None]],
                 deadline: float, timeout: float):
        self.pending, self.found, self.deadline, self.timeout = pending, found, deadline, timeout
        self.answer = asyncio.wrap_future(pending)
        self.gone = asyncio.ensure_future(disconnected())

    async def next(self) -> tuple[int, object]:
        if not self.found.empty():
            return self.found.get_nowait()
        getting = asyncio.ensure_future(self.found.get())
        try:
            left = max(self.deadline - asyncio.get_running_loop().time(), 0.0)
            done, _ = await asyncio.wait({getting, self.answer, self.gone}, timeout=left,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not getting.done():
                getting.cancel()
        if getting in done:
            return getting.result()
        if self.answer in done and not self.answer.cancelled() and self.answer.exception() is None:
            return await self.found.get()  # the results are queued before the answer is set
        self.pending.cancel()
        if self.gone in done:
            raise Refused(499, "the client went away")
        if self.answer in done:
            raise self.answer.exception() or Refused(499, "the request was cancelled")
        raise Refused(504, f"not answered within {self.timeout:g} s; the server is busy, retry later")

    def close(self) -> None:
        self.gone.cancel()
        self.pending.cancel()


async def _events(first: tuple[int, object], count: int, waiting: _Waiting,
                  refusal: Callable[[Exception], Refused]) -> AsyncIterator[str]:
    """``first`` and the other results as events, then ``done``; an error as one last event."""
    try:
        yield _event("translation", {"index": first[0], "translation": first[1]})
        for _ in range(count - 1):
            try:
                index, result = await waiting.next()
            except Exception as error:  # noqa: BLE001 - told to the client as the last event
                refused = error if isinstance(error, Refused) else refusal(error)
                yield _event("error", {"error": str(refused)})
                return
            yield _event("translation", {"index": index, "translation": result})
        yield _event("done", {})
    finally:
        waiting.close()


def _event(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"
