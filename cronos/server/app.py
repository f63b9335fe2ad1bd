"""The HTTP application (FastAPI on uvicorn): routes, the answers to bad input, and the server process.

Every request's items go to one ``Batcher``, whose worker (the main thread in ``serve``) decodes them
with the items of concurrent requests; the event loop only validates and waits, so it never blocks
on the model.  A
request is answered when its items are decoded, or after ``Limits.timeout`` seconds (504), or
dropped when its client disconnects (its items cost no decoding if they were still waiting).
Errors are one JSON object ``{"error": ...}``: 400 not JSON, 415 not sent as JSON, 422 wrong fields,
types or values, 413 past a limit (named), 503 with ``Retry-After`` when the queue is full or the
server stops, 504 past the timeout.
"""
from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
from dataclasses import dataclass
from typing import Hashable, Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..batching import Batcher, BatcherStopped, QueueFull
from ..ensemble import Ensemble
from ..translator import Translator
from ..version import __version__
from .metrics import CONTENT_TYPE_LATEST, MeasuredRequests, ServerMetrics
from .schema import (ErrorResponse, Health, ScoreRequest, ScoreResponse, Strict, TranslateRequest, TranslateResponse,
                     UnreadableText, Score)

__all__ = ["Limits", "build_app", "check_address", "serve"]

EXAMPLE = '{"text": "..."}'
NOT_JSON = f"the body is not JSON; send a JSON object such as {EXAMPLE}"
NOT_SENT_AS_JSON = ("send the body as JSON, with the header content-type: application/json "
                    "(curl: -H 'content-type: application/json')")


@dataclass(frozen=True)
class Limits:
    max_sentences: int = 64        # texts (or pairs) in one request
    max_characters: int = 2000     # characters in one text
    max_batch_tokens: int = 4096   # tokens decoded together
    max_wait_ms: float = 100.0     # how long a batch waits at most for mates (cronos.batching says for whom)
    max_queue: int = 1024          # sentences waiting, past which requests get 503
    timeout: float = 60.0          # seconds a request waits for its answer, past which it gets 504


class Refused(Exception):
    """A request answered with an error: ``status`` and one message (and headers)."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.headers = status, headers


def build_app(translator: Translator, limits: Limits) -> FastAPI:
    """The application, for any ASGI server; its batcher decodes on a thread of its own, started and
    stopped with it (the ASGI server answers the accepted requests before it stops).  ``serve``
    decodes on the main thread instead."""
    batcher, metrics = _batcher(translator, limits)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        batcher.start()
        try:
            yield
        finally:
            batcher.stop()

    return _application(translator, limits, batcher, metrics, lifespan)


def serve(translator: Translator, host: str, port: int, limits: Limits) -> None:
    """Serve ``translator`` on ``host:port`` until SIGTERM or Ctrl-C: uvicorn on a thread of its own,
    the decoding on this one (``Batcher.run`` says why).  On the signal uvicorn stops taking
    connections and answers the accepted requests; then the batcher stops, and this returns."""
    import uvicorn

    batcher, metrics = _batcher(translator, limits)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        try:
            yield
        finally:
            batcher.stop()

    server = uvicorn.Server(uvicorn.Config(_application(translator, limits, batcher, metrics, lifespan), host=host,
                                           port=port, log_level="warning"))

    def web() -> None:
        try:
            server.run()
        finally:
            batcher.stop()  # also when uvicorn could not start (the port is taken): run() below returns

    previous = {sig: signal.signal(sig, server.handle_exit) for sig in (signal.SIGTERM, signal.SIGINT)}
    thread = threading.Thread(target=web, name="cronos-http")
    try:
        thread.start()
        batcher.run()
        thread.join()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not server.started:
        raise OSError(f"could not serve on {host}:{port} (is the port taken?)")


def check_address(host: str, port: int) -> None:
    """Bind ``host:port`` and let go: ``OSError`` when it cannot be listened on (``EADDRINUSE``: the
    port is taken; otherwise the address is not this machine's).  Checked before a model is loaded,
    so that the mistake costs no wait; uvicorn binds again when it starts, and ``serve`` reports a
    failure then too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        probe.bind((host, port))


def _batcher(translator: Translator, limits: Limits) -> tuple[Batcher, ServerMetrics]:
    def decode(items: list, job) -> list:
        metrics.batch_size.observe(len(items))
        return job.run(translator, items)

    batcher = Batcher(decode, lambda item, job: job.tokens(translator.codec, item), limits.max_batch_tokens,
                      limits.max_wait_ms / 1000, limits.max_queue)
    metrics = ServerMetrics(lambda: batcher.waiting)
    return batcher, metrics


def _application(translator: Translator, limits: Limits, batcher: Batcher, metrics: ServerMetrics,
                 lifespan) -> FastAPI:
    """The routes over ``batcher``, errors as one JSON object, requests measured into ``metrics``."""
    app = FastAPI(title="cronos", version=__version__, lifespan=lifespan, strict_content_type=False,
                  description="Translate and score with a cronos model. Concurrent requests are decoded together, "
                              "and an answer is what its text alone gives.")
    errors = {status: {"model": ErrorResponse} for status in (400, 413, 415, 422, 503, 504)}

    @app.post("/translate", response_model=TranslateResponse, responses=errors)
    async def translate(body: TranslateRequest, request: Request) -> JSONResponse:
        """Translate a text, or a list of texts (beam search, n-best lists, scores, or sampling)."""
        texts = body.texts()
        _check_size(len(texts), texts, limits)
        try:
            job = body.job(translator.config.decoding.beam_size)
        except ValueError as error:
            raise Refused(422, str(error)) from None
        results = await _answer(request, batcher, texts, job, limits.timeout)
        return JSONResponse({"translations": results[0] if isinstance(body.text, str) else results})

    @app.post("/score", response_model=ScoreResponse, responses=errors)
    async def score(body: ScoreRequest, request: Request) -> JSONResponse:
        """The log-probability of each target given its source."""
        if isinstance(translator.network, Ensemble):
            raise Refused(422, "this server runs an ensemble, which translates only; serve one model to score")
        pairs = list(zip(body.sources(), body.targets()))
        _check_size(len(pairs), [text for pair in pairs for text in pair], limits)
        results = await _answer(request, batcher, pairs, Score(body.per_token), limits.timeout)
        return JSONResponse({"scores": results[0] if isinstance(body.source, str) else results})

    @app.get("/health", response_model=Health)
    async def health() -> JSONResponse:
        """The server is up; how many sentences wait."""
        return JSONResponse({"status": "ok", "waiting": batcher.waiting})

    @app.get("/metrics", response_class=Response, response_model=None)
    async def prometheus() -> Response:
        """Prometheus metrics: requests, latency, batch sizes, queue depth."""
        return Response(metrics.text(), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(Refused)
    async def refused(request: Request, error: Refused) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=error.status, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        if not _sent_as_json(request):
            return JSONResponse({"error": NOT_SENT_AS_JSON}, status_code=415)
        status, message = _validation_message(error.errors(), BODIES.get(request.url.path))
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        message = NOT_JSON if error.status_code == 400 else str(error.detail)
        return JSONResponse({"error": message}, status_code=error.status_code, headers=error.headers)

    app.add_middleware(MeasuredRequests, metrics=metrics, paths={route.path for route in app.routes})
    return app


BODIES = {"/translate": TranslateRequest, "/score": ScoreRequest}


def _sent_as_json(request: Request) -> bool:
    """No content type (read as JSON), or a JSON one; a form or text body is not read."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return kind == "" or kind == "application/json" or kind.endswith("+json")


def _check_size(count: int, texts: Sequence[str], limits: Limits) -> None:
    """413 past ``limits``: ``count`` texts (or pairs) in the request, or one of ``texts`` too long."""
    if count > limits.max_sentences:
        raise Refused(413, f"{count} texts; at most {limits.max_sentences} in one request")
    for i, text in enumerate(texts):
        if len(text) > limits.max_characters:
            raise Refused(413, f"text {i}: {len(text)} characters; at most {limits.max_characters} in one text")


async def _answer(request: Request, batcher: Batcher, items: list, job: Hashable, timeout: float) -> list:
    """The items' results from the batcher; ``Refused`` when the queue is full, the server stops, the
    answer takes longer than ``timeout`` or the text cannot be read.  A client that disconnects
    cancels its request: items still waiting are never decoded."""
    try:
        pending = batcher.submit(items, job)
    except QueueFull as error:
        raise Refused(503, str(error), {"Retry-After": str(round(error.retry_after))}) from None
    except BatcherStopped as error:
        raise Refused(503, str(error)) from None
    answer = asyncio.wrap_future(pending)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({answer, gone}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if answer not in done:
        pending.cancel()  # now, on this thread: the worker may be choosing its next batch
        answer.cancel()
        if gone in done:
            raise Refused(499, "the client went away")
        raise Refused(504, f"not answered within {timeout:g} s; the server is busy, retry later")
    try:
        return answer.result()
    except UnreadableText as error:
        raise Refused(422, str(error)) from None


async def _disconnected(request: Request) -> None:
    """Returns when the client disconnects (the body is read already, so the next message is that)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _validation_message(errors: Sequence[dict], body: type[Strict] | None) -> tuple[int, str]:
    """Status and one message for pydantic's errors: 400 when the body is not JSON, else 422 naming
    each wrong field."""
    if any(error["type"] == "json_invalid" for error in errors):
        return 400, NOT_JSON
    messages = []
    for error in errors[:3]:
        where = [str(part) for part in error["loc"][1:] if part not in ("str", "list[str]")]
        if error["type"] == "value_error":  # cronos's own checks: the message names its field
            messages.append(_own_message(where, str(error["ctx"]["error"])))
        elif not where or error["type"] in ("model_type", "model_attributes_type", "dict_type"):
            messages.append(f"the body must be a JSON object such as {EXAMPLE}")
        elif error["type"] == "extra_forbidden":
            fields = ", ".join(_fields(body, where[:-1]))
            messages.append(f"unknown field {'.'.join(where)}; the fields are {fields}")
        else:
            messages.append(f"{'.'.join(where)}: {error['msg']}")
    return 422, "; ".join(dict.fromkeys(messages))


def _own_message(where: list[str], message: str) -> str:
    """A message of cronos's own checks, prefixed with its field unless it names it already."""
    field = ".".join(where)
    return message if not field or message.startswith(field.split(".")[0]) else f"{field}: {message}"


def _fields(body: type[Strict] | None, path: list[str]) -> list[str]:
    """The field names of the (nested) object at ``path`` of ``body``."""
    model = body
    for name in path:
        if model is None:
            return []
        annotation = model.model_fields[name].annotation
        model = next((t for t in (annotation, *getattr(annotation, "__args__", ())) if isinstance(t, type)
                      and issubclass(t, Strict)), None)
    return list(model.model_fields) if model is not None else []
