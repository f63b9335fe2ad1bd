"""The HTTP application (FastAPI): routes, the answers to bad input, the API key.

Every request's items go to one ``Batcher``, whose worker (the main thread in ``serve``) decodes them
with the items of concurrent requests, a batch joining the decoding in flight at its next step (a beam
search's sentences each answered the step they end); the event loop only validates and waits, so it never blocks
on the model, and bodies (at most ``Limits.max_body_bytes``, refused from their size before they are
read) are parsed on a worker thread.  A request is answered when its items are decoded, or after
``Limits.timeout`` seconds (504), or dropped when its client disconnects: items still waiting are
never decoded, and a batch whose every request is gone stops at its next step.  Errors are one JSON
object ``{"error": ...}`` (``errors.py``): 400 not JSON, 401 without the API key (when the server has
one), 413 past a limit (named), 415 not sent as JSON, 422 wrong fields, types or values, 500 a model
that computes no numbers or a failure of the server's own, 503 with ``Retry-After`` when the queue
is full or the server stops, 504 past the timeout.
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from typing import Generator, Hashable, Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from .batching import Batcher, BatcherStopped, QueueFull
from ..decoding.in_flight import InFlight
from ..decoding.inference import NonFiniteOutput
from ..decoding.search import SearchStopped
from ..translator import Translator
from ..version import __version__
from .errors import NOT_JSON, NOT_SENT_AS_JSON, ContainedErrors, Refused, validation_message
from .limits import Limits
from .streaming import streamed
from .metrics import CONTENT_TYPE_LATEST, MeasuredRequests, ServerMetrics
from .bodies import ErrorResponse, Health, ScoreRequest, ScoreResponse, TranslateRequest, TranslateResponse
from .jobs import UnreadableText

__all__ = ["build_app", "application", "batcher_for"]

logger = logging.getLogger("cronos")

BODIES = {"/translate": TranslateRequest, "/score": ScoreRequest}
PARSED_AT_ONCE = 64 << 10  # body bytes parsed on the event loop itself (a few hundred microseconds at most)
OPEN_PATHS = ("/health", "/docs", "/docs/oauth2-redirect", "/openapi.json")  # answered without the API key


def build_app(translator: Translator, limits: Limits, api_key: str | None = None) -> FastAPI:
    """The application, for any ASGI server; its batcher decodes on a thread of its own, started and
    stopped with it (the ASGI server answers the accepted requests before it stops).  ``serve``
    decodes on the main thread instead.  ``api_key``: every request but ``OPEN_PATHS`` must send
    ``Authorization: Bearer API_KEY``."""
    batcher, metrics = batcher_for(translator, limits)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        batcher.start()
        try:
            yield
        finally:
            batcher.stop()

    return application(translator, limits, batcher, metrics, lifespan, api_key)


def batcher_for(translator: Translator, limits: Limits) -> tuple[Batcher, ServerMetrics]:
    """The batcher that decodes for one server, and the metrics that count its work."""
    def start(items: list, job, abandoned) -> Generator:
        metrics.batch_size.observe(len(items))
        return _counted(job.steps(translator, items, abandoned))

    def _counted(search: Generator) -> Generator:
        try:
            return (yield from search)
        except SearchStopped:
            metrics.abandoned.inc()
            raise

    def arrive(items: list, job, abandoned, answer, failed):
        joins = getattr(job, "arrival", None)  # a beam search's job: its batches join the search in flight
        joined = None if joins is None else joins(translator, items, abandoned, answer, _counted_failure(failed))
        if joined is not None:
            metrics.batch_size.observe(len(items))
        return joined

    def _counted_failure(failed):
        def counted(error: Exception) -> None:
            if isinstance(error, SearchStopped):
                metrics.abandoned.inc()
            failed(error)
        return counted

    batcher = Batcher(start, lambda item, job: job.prepare(translator.codec, item), InFlight(translator.network),
                      limits.max_batch_tokens, limits.max_wait_ms / 1000, limits.max_queue, arrive)
    metrics = ServerMetrics(lambda: batcher.waiting)
    return batcher, metrics


def application(translator: Translator, limits: Limits, batcher: Batcher, metrics: ServerMetrics, lifespan,
                api_key: str | None = None) -> FastAPI:
    """The routes over ``batcher``, errors as one JSON object, requests measured into ``metrics``."""
    app = FastAPI(title="cronos", version=__version__, lifespan=lifespan, strict_content_type=False,
                  description="Translate and score with a cronos model. Concurrent requests are decoded together, "
                              "and an answer is what its text alone gives.")
    app.router.route_class = _JSONOffTheLoop
    errors = {status: {"model": ErrorResponse} for status in (400, 401, 413, 415, 422, 500, 503, 504)}

    @app.post("/translate", response_model=TranslateResponse, responses=errors)
    async def translate(body: TranslateRequest, request: Request) -> JSONResponse:
        """Translate a text, or a list of texts (beam search, n-best lists, scores, or sampling)."""
        texts = body.texts()
        _check_size(len(texts), texts, limits)
        _check_guide_sizes(body, limits)
        try:
            job = body.job(translator.config.decoding.beam_size, limits.max_beam)
        except ValueError as error:
            raise Refused(422, str(error)) from None
        _check_tag(translator, body.tag)
        if body.stream:
            return await streamed(lambda each: _submit(batcher, body.items(), job, each), len(texts), _refusal,
                                  lambda: _disconnected(request), limits.timeout)
        results = await _answer(request, batcher, body.items(), job, limits.timeout)
        return JSONResponse({"translations": results[0] if isinstance(body.text, str) else results})

    @app.post("/score", response_model=ScoreResponse, responses=errors)
    async def score(body: ScoreRequest, request: Request) -> JSONResponse:
        """The log-probability of each target given its source."""
        pairs = list(zip(body.sources(), body.targets()))
        _check_size(len(pairs), [text for pair in pairs for text in pair], limits)
        _check_tag(translator, body.tag)
        results = await _answer(request, batcher, list(enumerate(pairs)), body.job(), limits.timeout)
        return JSONResponse({"scores": results[0] if isinstance(body.source, str) else results})

    @app.get("/health", response_model=Health)
    async def health() -> JSONResponse:
        """The server is up; how many sentences wait."""
        return JSONResponse({"status": "ok", "waiting": batcher.waiting})

    @app.get("/metrics", response_class=Response, response_model=None)
    async def prometheus() -> Response:
        """Prometheus metrics: requests, latency, batch sizes, queue depth."""
        return Response(metrics.text(), media_type=CONTENT_TYPE_LATEST)

    _errors_as_json(app)
    app.add_middleware(ContainedErrors)
    app.add_middleware(_BoundedBody, limit=limits.max_body_bytes)
    if api_key is not None:
        app.add_middleware(_Authorized, key=api_key)
    app.add_middleware(MeasuredRequests, metrics=metrics, paths={route.path for route in app.routes})
    return app


def _errors_as_json(app: FastAPI) -> None:
    """Every refusal, invalid body and HTTP error answered as one JSON object ``{"error": ...}``."""
    @app.exception_handler(Refused)
    async def refused(request: Request, error: Refused) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=error.status, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        if not _sent_as_json(request):
            return JSONResponse({"error": NOT_SENT_AS_JSON}, status_code=415)
        status, message = validation_message(error.errors(), BODIES.get(request.url.path))
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        message = NOT_JSON if error.status_code == 400 else str(error.detail)
        return JSONResponse({"error": message}, status_code=error.status_code, headers=error.headers)


class _BodyTooLarge(StarletteHTTPException):
    """Raised from ``receive`` as a body passes its limit: an HTTP exception, which FastAPI lets
    through to the handlers (any other error while reading a body it calls a 400)."""

    def __init__(self, limit: int):
        super().__init__(413, _too_large(limit), headers={"connection": "close"})


def _too_large(limit: int) -> str:
    return f"the body is larger than {limit:,} bytes, the most this server reads (--max-body-bytes)"


class _BoundedBody:
    """ASGI middleware: a body of more than ``limit`` bytes gets 413, from the size it announces
    (before any of it is read) or as soon as more than that arrives, and its connection is closed
    (the rest is never read)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        announced = dict(scope["headers"]).get(b"content-length", b"")
        if announced.isdigit() and int(announced) > self.limit:
            await JSONResponse({"error": _too_large(self.limit)}, status_code=413,
                               headers={"connection": "close"})(scope, receive, send)
            return
        received = 0

        async def bounded():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise _BodyTooLarge(self.limit)
            return message
        await self.app(scope, bounded, send)


class _OffTheLoopRequest(Request):
    """A request whose JSON body, when large, is parsed on a worker thread, so that the event loop
    goes on answering other clients (``/health`` included) meanwhile; a small one is parsed at once
    (in less time than the trip to a thread: 0.2-0.3 ms a request, measured)."""

    async def json(self):
        if not hasattr(self, "_json"):
            body = await self.body()
            self._json = json.loads(body) if len(body) <= PARSED_AT_ONCE else await asyncio.to_thread(json.loads, body)
        return self._json


class _JSONOffTheLoop(APIRoute):
    """A route whose handler reads its body as an ``_OffTheLoopRequest``."""

    def get_route_handler(self):
        handle = super().get_route_handler()

        async def route(request: Request) -> Response:
            return await handle(_OffTheLoopRequest(request.scope, request.receive))
        return route


class _Authorized:
    """ASGI middleware: every request but ``OPEN_PATHS`` sends ``Authorization: Bearer KEY``; others
    get 401 before their body is read."""

    def __init__(self, app, key: str):
        self.app, self.key = app, key.encode("utf-8")

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        sent = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, key = sent.partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(key.strip(), self.key):
            await self.app(scope, receive, send)
            return
        message = ("the API key is not this server's" if sent else
                   "this server needs an API key: send the header Authorization: Bearer KEY")
        response = JSONResponse({"error": message}, status_code=401,
                                headers={"www-authenticate": "Bearer", "connection": "close"})
        await response(scope, receive, send)


def _sent_as_json(request: Request) -> bool:
    """No content type (read as JSON), or a JSON one; a form or text body is not read."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return kind == "" or kind == "application/json" or kind.endswith("+json")


def _check_tag(translator: Translator, tag: str | None) -> None:
    """422 for a tag the model was not trained with, before the request queues."""
    try:
        translator.codec.check_tag(tag)
    except ValueError as error:
        raise Refused(422, str(error)) from None


def _check_size(count: int, texts: Sequence[str], limits: Limits) -> None:
    """413 past ``limits``: ``count`` texts (or pairs) in the request, or one of ``texts`` too long."""
    if count > limits.max_queue:
        raise Refused(413, f"{count} texts; this server queues at most {limits.max_queue} (--max-queue), so they "
                           "could never be accepted; send fewer at a time")
    if count > limits.max_sentences:
        raise Refused(413, f"{count} texts; at most {limits.max_sentences} in one request")
    for i, text in enumerate(texts):
        if len(text) > limits.max_characters:
            raise Refused(413, f"text {i}: {len(text)} characters; at most {limits.max_characters} in one text")


def _check_guide_sizes(body: TranslateRequest, limits: Limits) -> None:
    """413 for a prefix, or one text's constraints together, longer than a text may be: they lengthen
    the search (its length limit grows by them) as a text does."""
    for i, (_, prefix, phrases) in body.items():
        for name, size in (("prefix", len(prefix or "")), ("constraints", sum(map(len, phrases)))):
            if size > limits.max_characters:
                raise Refused(413, f"the {name} of text {i}: {size} characters; at most {limits.max_characters} "
                                   "(as in one text)")


async def _answer(request: Request, batcher: Batcher, items: list, job: Hashable, timeout: float) -> list:
    """The items' results from the batcher; ``Refused`` when the queue is full, the server stops, the
    answer takes longer than ``timeout``, the text cannot be read or decoding fails.  A client that
    disconnects cancels its request: items still waiting are never decoded."""
    pending = _submit(batcher, items, job)
    answer = asyncio.wrap_future(pending)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({answer, gone}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if answer not in done:
        pending.cancel()  # now, on this thread: the worker may be choosing its next batch, or asking if it may stop
        answer.cancel()
        if gone in done:
            raise Refused(499, "the client went away")
        raise Refused(504, f"not answered within {timeout:g} s; the server is busy, retry later")
    try:
        return answer.result()
    except Exception as error:  # noqa: BLE001 - decoding failed: the request is answered, the server goes on
        raise _refusal(error) from None


def _submit(batcher: Batcher, items: list, job: Hashable, each=None):
    """``batcher.submit``, a full queue or a stopping server refused with 503."""
    try:
        return batcher.submit(items, job, each)
    except QueueFull as error:
        raise Refused(503, str(error), {"Retry-After": str(round(error.retry_after))}) from None
    except BatcherStopped as error:
        raise Refused(503, str(error)) from None


def _refusal(error: Exception) -> Refused:
    """What a request whose decoding failed with ``error`` is answered: 422 for a text the model
    cannot read, 500 (logged) for anything else."""
    if isinstance(error, UnreadableText):
        return Refused(422, str(error))
    if isinstance(error, NonFiniteOutput):
        logger.error("server: %s", error)
        return Refused(500, str(error))
    logger.error("server: decoding failed: %s: %s", type(error).__name__, error)
    return Refused(500, f"decoding failed: {type(error).__name__}: {error}")


async def _disconnected(request: Request) -> None:
    """Returns when the client disconnects (the body is read already, so the next message is that)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
