"""The server's application in this process (``cronos.server.build_app`` over ASGI, no sockets):
what needs the decoding worker held still to be deterministic (a full queue, a timeout, a client
that goes away) and what needs no process of its own (an ensemble refusing to score, the CLI's
checks).  tests/test_serve.py drives a real server process."""
from __future__ import annotations

import asyncio
import threading

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")
httpx = pytest.importorskip("httpx")

from cronos import Cronos  # noqa: E402
from cronos.server import Limits, build_app  # noqa: E402
from cronos.translator import Translator  # noqa: E402
from helpers import run_cli  # noqa: E402


class Held:
    """The tiny Transformer whose decoding waits for ``release`` and records the texts it decodes."""

    def __init__(self, model):
        self.translator = Translator(model.network, model.codec, model.config)
        self.release, self.decoding, self.decoded = threading.Event(), threading.Event(), []
        translate = self.translator.translate

        def held(texts, *args, **options):
            self.decoding.set()
            assert self.release.wait(30), "the test never released the worker"
            self.decoded.extend(texts)
            return translate(texts, *args, **options)

        self.translator.translate = held


def _run(app, scenario):
    """``await scenario(client)``, a client of ``app``, with the application's lifespan (its batcher)
    around it."""
    async def main():
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://cronos") as client:
                return await scenario(client)
    return asyncio.run(main())


@pytest.fixture
def held(trained_models):
    held = Held(trained_models["transformer"])
    yield held
    held.release.set()


async def _until(condition, seconds: float = 30) -> None:
    """Wait until ``condition()`` (a function, or a coroutine function) is true."""
    for _ in range(int(seconds / 0.01)):
        holds = condition()
        if await holds if asyncio.iscoroutine(holds) else holds:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out waiting")


async def _waiting(client, count: int) -> bool:
    return (await client.get("/health")).json()["waiting"] == count


def test_past_the_queue_limit_a_request_gets_503_with_retry_after_and_the_accepted_are_answered(held, trained_models):
    app = build_app(held.translator, Limits(max_queue=4, max_wait_ms=0))
    model = trained_models["transformer"]

    async def scenario(client):
        busy = asyncio.ensure_future(client.post("/translate", json={"text": "1/2/07", "beam_size": 2}))
        await _until(held.decoding.is_set)  # the worker holds it; the next ones wait in the queue
        accepted = asyncio.ensure_future(client.post("/translate", json={"text": ["5 May 1999"] * 4, "beam_size": 2}))
        await _until(lambda: _waiting(client, 4))
        refused = await client.post("/translate", json={"text": "Dec 3, 1987", "beam_size": 2})
        held.release.set()
        return refused, await busy, await accepted

    refused, busy, accepted = _run(app, scenario)
    assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1
    assert "4 sentences are waiting" in refused.json()["error"]
    assert busy.json() == {"translations": model.translate(["1/2/07"], beam_size=2)[0]}
    assert accepted.json() == {"translations": model.translate(["5 May 1999"], beam_size=2) * 4}


def test_past_its_timeout_a_request_gets_504_and_its_waiting_texts_are_never_decoded(held):
    app = build_app(held.translator, Limits(max_wait_ms=0, timeout=0.3))

    async def scenario(client):
        busy = asyncio.ensure_future(client.post("/translate", json={"text": "1/2/07"}))  # being decoded
        await _until(held.decoding.is_set)
        late = await client.post("/translate", json={"text": "Dec 3, 1987"})  # waiting behind it
        held.release.set()
        return late, await busy

    late, busy = _run(app, scenario)
    for response in (late, busy):
        assert response.status_code == 504 and "not answered within 0.3 s" in response.json()["error"]
    assert held.decoded == ["1/2/07"]


def test_a_client_that_disconnects_is_dropped_and_its_waiting_texts_are_never_decoded(held):
    app = build_app(held.translator, Limits(max_wait_ms=0))
    sent: list[dict] = []

    async def scenario(client):
        busy = asyncio.ensure_future(client.post("/translate", json={"text": "1/2/07"}))
        await _until(held.decoding.is_set)
        gone = asyncio.Event()
        body = [{"type": "http.request", "body": b'{"text": "Dec 3, 1987"}', "more_body": False}]

        async def receive():
            if body:
                return body.pop()
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/translate", "raw_path": b"/translate", "query_string": b"",
                 "root_path": "", "headers": [(b"content-type", b"application/json")],
                 "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000)}
        call = asyncio.ensure_future(app(scope, receive, send))
        await asyncio.sleep(0.2)
        gone.set()  # the client goes away while its text waits behind the held batch
        await asyncio.wait_for(call, 10)
        held.release.set()
        after = await client.post("/translate", json={"text": "5 May 1999"})
        return await busy, after

    busy, after = _run(app, scenario)
    assert busy.status_code == 200 and after.status_code == 200
    assert held.decoded == ["1/2/07", "5 May 1999"]  # "Dec 3, 1987" never decoded
    assert sent[0]["status"] == 499


def test_an_ensemble_translates_and_refuses_to_score(trained_models, tmp_path):
    model = trained_models["transformer"]
    members = [Cronos.load(model.save(tmp_path / f"{i}.pt"), "cpu") for i in range(2)]
    ensemble = Cronos.ensemble(members, "cpu")
    app = build_app(ensemble, Limits())

    async def scenario(client):
        return (await client.post("/translate", json={"text": "1/2/07", "beam_size": 2}),
                await client.post("/score", json={"source": "1/2/07", "target": "2007-01-02"}))

    translated, scored = _run(app, scenario)
    assert translated.json() == {"translations": ensemble.translate(["1/2/07"], beam_size=2)[0]}
    assert scored.status_code == 422 and "ensemble" in scored.json()["error"]


@pytest.mark.parametrize("option, value, message", [
    ("--timeout", "0", "--timeout: expected a number of seconds above 0, got 0.0"),
    ("--max-wait-ms", "-1", "--max-wait-ms: expected a number of 0 or more, got -1.0"),
    ("--host", "192.0.2.1", "--host: cannot listen on 192.0.2.1:"),  # an address for documentation only
])
def test_serve_refuses_bad_options_before_loading_the_model(option, value, message, capsys, monkeypatch, tmp_path):
    code, _, err = run_cli(["serve", str(tmp_path / "absent.pt"), option, value], "", capsys, monkeypatch)
    assert code == 2 and message in err, err
