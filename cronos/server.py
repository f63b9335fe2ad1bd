"""``cronos serve``: a translation server that batches concurrent requests (Starlette on uvicorn,
the ``serve`` extra).

    cronos serve runs/x/best.pt --port 8000
    curl -s localhost:8000/translate -H 'content-type: application/json' \\
         -d '{"text": ["Ein Hund läuft.", "Zwei Katzen."], "beam_size": 4}'

``POST /translate`` takes ``{"text": str | [str], "beam_size": int, "n_best": int}`` (both
optional) and answers ``{"translations": ...}``: a string per text, or with ``n_best`` a list of
``{"text", "score", "log_prob"}`` per text; one text gives one answer, a list a list.  ``GET
/health`` says the server is up.  The sentences of concurrent requests are decoded together
(``batching.Batcher``), and an answer is what the text alone gives (P0).  Bad input is one JSON
``{"error": ...}`` with 400 (not JSON), 422 (wrong fields or types) or 413 (past a limit); a full
queue is 503 with ``Retry-After``.  On SIGTERM the server stops taking connections, answers every
request it accepted, and exits 0.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from dataclasses import dataclass
from typing import Any

from .batching import Batcher, BatcherStopped, QueueFull
from .translator import Translator

__all__ = ["Limits", "build_app", "serve"]

FIELDS = ("text", "beam_size", "n_best")


@dataclass(frozen=True)
class Limits:
    max_sentences: int = 64        # texts in one request
    max_characters: int = 2000     # characters in one text
    max_batch_tokens: int = 4096   # source tokens decoded together
    max_wait_ms: float = 10.0      # how long a sentence waits for batch mates
    max_queue: int = 1024          # sentences waiting, past which requests get 503


class BadRequest(ValueError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def build_app(translator: Translator, limits: Limits):
    """The Starlette application: its batcher starts and stops with it."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    batcher = Batcher(lambda texts, settings: _decode(translator, texts, *settings),
                      lambda text: len(translator.codec.source_tokens(text)), limits.max_batch_tokens,
                      limits.max_wait_ms / 1000, limits.max_queue)

    async def translate(request: Request) -> JSONResponse:
        try:
            texts, single, settings = _parse(await request.body(), translator, limits)
            answer = batcher.submit(texts, settings)
        except BadRequest as error:
            return JSONResponse({"error": str(error)}, status_code=error.status)
        except QueueFull as error:
            return JSONResponse({"error": str(error)}, status_code=503,
                                headers={"Retry-After": str(int(error.retry_after))})
        except BatcherStopped as error:
            return JSONResponse({"error": str(error)}, status_code=503)
        results = await asyncio.wrap_future(answer)
        return JSONResponse({"translations": results[0] if single else results})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "waiting": batcher.waiting})

    @contextlib.asynccontextmanager
    async def lifespan(app):  # uvicorn answers the accepted requests before it leaves this
        batcher.start()
        try:
            yield
        finally:
            batcher.stop()

    return Starlette(routes=[Route("/translate", translate, methods=["POST"]), Route("/health", health)],
                     lifespan=lifespan)


def serve(translator: Translator, host: str, port: int, limits: Limits) -> None:
    """Serve ``translator`` on ``host:port`` until SIGTERM or Ctrl-C."""
    import uvicorn

    # uvicorn raises a SIGTERM again once its graceful shutdown is done; by then every accepted
    # request has its answer, so that second one is ignored and the server exits 0
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        uvicorn.run(build_app(translator, limits), host=host, port=port, log_level="warning")
    finally:
        signal.signal(signal.SIGTERM, previous)


def _decode(translator: Translator, texts: list[str], beam_size: int | None, n_best: int | None) -> list:
    found = translator.translate(texts, beam_size=beam_size, n_best=n_best)
    if n_best is None:
        return found
    return [[{"text": t.text, "score": t.score, "log_prob": t.log_prob} for t in hypotheses] for hypotheses in found]


def _parse(body: bytes, translator: Translator, limits: Limits) -> tuple[list[str], bool, tuple]:
    """``(texts, whether one text was sent, (beam_size, n_best))`` of a request body, or ``BadRequest``."""
    try:
        fields: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest(400, "the body is not JSON; send {\"text\": \"...\"}") from None
    if not isinstance(fields, dict):
        raise BadRequest(422, "the body must be a JSON object such as {\"text\": \"...\"}")
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise BadRequest(422, f"unknown field(s) {', '.join(unknown)}; the fields are {', '.join(FIELDS)}")
    text = fields.get("text")
    single = isinstance(text, str)
    texts = [text] if single else text
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise BadRequest(422, "text: expected a string or a non-empty list of strings")
    if len(texts) > limits.max_sentences:
        raise BadRequest(413, f"text: {len(texts)} texts; at most {limits.max_sentences} in one request")
    for i, t in enumerate(texts):
        if len(t) > limits.max_characters:
            raise BadRequest(413, f"text {i}: {len(t)} characters; at most {limits.max_characters} in one text")
        if not t.strip():
            raise BadRequest(422, f"text {i}: empty; send the text to translate")
    beam_size, n_best = (_positive(fields, name) for name in ("beam_size", "n_best"))
    beam = beam_size or translator.config.decoding.beam_size
    if n_best is not None and n_best > beam:
        raise BadRequest(422, f"n_best: {n_best} hypotheses need a beam_size of at least {n_best} (it is {beam})")
    return texts, single, (beam_size, n_best)


def _positive(fields: dict, name: str) -> int | None:
    value = fields.get(name)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise BadRequest(422, f"{name}: expected a positive integer, got {json.dumps(value)}")
    return value
