"""The server's application in this process (``cronos.server.build_app`` over ASGI, no sockets):
what needs the decoding worker held still to be deterministic (a full queue, a timeout, a client
that goes away, a batch no one waits for) and what needs no process of its own (an ensemble
scoring, a model that computes no numbers, the API key, the CLI's checks).  tests/test_serve.py
drives a real server process."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import threading
import time

import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")
httpx = pytest.importorskip("httpx")

from cronos import Cronos  # noqa: E402
from cronos.cli import main  # noqa: E402
from cronos.decoding.search import SearchStopped  # noqa: E402
from cronos.server import Limits, build_app  # noqa: E402
from cronos.server.connections import quiet_loop_errors  # noqa: E402
from cronos.server.bodies import TranslateRequest  # noqa: E402
from cronos.translator import Translator  # noqa: E402
from helpers import run_cli  # noqa: E402


class Held:
    """The tiny Transformer whose decoding waits for ``release`` and records the examples it decodes."""

    def __init__(self, model):
        self.translator = Translator(model.network, model.codec, model.config)
        self.release, self.decoding, self.decoded = threading.Event(), threading.Event(), []
        searching, arrival = self.translator.searching, self.translator.arrival

        def hold(examples) -> None:
            self.decoding.set()
            assert self.release.wait(30), "the test never released the worker"
            self.decoded.extend(examples)

        def held(examples, *args, **options):  # a search that waits before it joins the flight
            hold(examples)
            return (yield from searching(examples, *args, **options))

        def held_arrival(examples, *args, **options):  # a batch that waits before it joins the search in flight
            joined = arrival(examples, *args, **options)
            if joined is not None:
                hold(examples)
            return joined

        self.translator.searching, self.translator.arrival = held, held_arrival

    def examples(self, *texts: str) -> list:
        """What the server decodes of ``texts``, each sent alone."""
        return [self.translator.codec.encode([text])[0] for text in texts]


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
    assert held.decoded == held.examples("1/2/07")


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
    assert held.decoded == held.examples("1/2/07", "5 May 1999")  # "Dec 3, 1987" never decoded
    assert sent[0]["status"] == 499


def test_an_ensemble_translates_and_scores_as_the_library_does(trained_models, tmp_path):
    model = trained_models["transformer"]
    members = [Cronos.load(model.save(tmp_path / f"{i}.pt"), "cpu") for i in range(2)]
    ensemble = Cronos.ensemble(members, "cpu")
    app = build_app(ensemble, Limits())

    async def scenario(client):
        return (await client.post("/translate", json={"text": "1/2/07", "beam_size": 2}),
                await client.post("/score", json={"source": "1/2/07", "target": "2007-01-02"}))

    translated, scored = _run(app, scenario)
    assert translated.json() == {"translations": ensemble.translate(["1/2/07"], beam_size=2)[0]}
    expected = ensemble.score([("1/2/07", "2007-01-02")])[0]
    assert scored.status_code == 200 and scored.json() == {"scores": {
        "log_prob": expected.log_prob, "mean_log_prob": expected.mean_log_prob, "tokens": expected.tokens}}


@pytest.mark.parametrize("options, message", [
    (["--timeout", "0"], "--timeout: expected a number of seconds above 0, got 0.0"),
    (["--max-wait-ms", "-1"], "--max-wait-ms: expected a number of 0 or more, got -1.0"),
    (["--max-wait-ms", "5000", "--timeout", "2"], "--max-wait-ms: 5000 ms is not shorter than --timeout (2 s): a lone "
                                                  "request would time out waiting for company"),
    (["--client-timeout", "inf"], "--client-timeout: expected a number of seconds above 0, got inf"),
    (["--max-connections", "100000000"], "--max-connections: 100000000 connections need 100000064 open files, and "
                                         "this process may open"),
    (["--host", "192.0.2.1"], "--host: cannot listen on 192.0.2.1:"),  # an address for documentation only
    (["--api-key-file", "EMPTY"], "--api-key-file: --api-key-file EMPTY holds no key"),
])
def test_serve_refuses_bad_options_before_loading_the_model(options, message, capsys, monkeypatch, tmp_path):
    empty = tmp_path / "empty"
    empty.write_text(" \n", encoding="utf-8")
    options = [str(empty) if option == "EMPTY" else option for option in options]
    code, _, err = run_cli(["serve", str(tmp_path / "absent.pt"), *options], "", capsys, monkeypatch)
    assert code == 2 and message.replace("EMPTY", str(empty)) in err, err


@pytest.mark.parametrize("options, message", [
    (["--port", "70000"], "argument --port: expected a port number, 0 to 65535, got 70000"),
    (["--port", "-1"], "argument --port: expected a port number, 0 to 65535, got -1"),
    (["--max-beam", "2000"], "argument --max-beam: at most 1,000"),
])
def test_serve_options_out_of_range_are_one_line_naming_the_option(options, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exited:
        main(["serve", str(tmp_path / "absent.pt"), *options])
    assert exited.value.code == 2 and message in capsys.readouterr().err


def test_a_server_says_the_port_it_took_and_warns_when_other_machines_can_reach_it(trained_models, tmp_path, capsys,
                                                                                     monkeypatch):
    """--port 0 takes a free port, and the line says which; every interface is said aloud, and so
    is the want of an API key; a model whose beam is wider than --max-beam is refused."""
    checkpoint = trained_models["transformer"].save(tmp_path / "model.pt")
    served = []
    monkeypatch.setattr("cronos.server.serve", lambda model, sock, limits, api_key: served.append(
        (sock.getsockname(), limits, api_key)))
    code, _, err = run_cli(["serve", str(checkpoint), "--host", "0.0.0.0", "--port", "0", "--device", "cpu"], "",
                           capsys, monkeypatch)
    (host, port), limits, api_key = served[0]
    assert code == 0 and port > 0 and f"on http://0.0.0.0:{port} (POST /translate" in err, err
    assert "listening on every interface of this machine: anyone who can reach it can use this server, and it asks " \
           "for no API key (--api-key-file)" in err
    monkeypatch.setenv("CRONOS_API_KEY", "s3cret")
    code, _, err = run_cli(["serve", str(checkpoint), "--port", "0", "--device", "cpu"], "", capsys, monkeypatch)
    assert code == 0 and served[1][2] == "s3cret" and "warning" not in err, err
    wide = Cronos.load(checkpoint, "cpu")
    wide.config = dataclasses.replace(wide.config, decoding=dataclasses.replace(wide.config.decoding, beam_size=20))
    wide.save(tmp_path / "wide.pt")
    code, _, err = run_cli(["serve", str(tmp_path / "wide.pt"), "--port", "0", "--device", "cpu"], "", capsys,
                           monkeypatch)
    assert code == 2 and "--max-beam: 16 is below the model's beam size (20, decoding.beam_size)" in err, err


def test_an_api_key_is_asked_of_every_request_but_health_and_the_docs(trained_models):
    model = trained_models["transformer"]
    app = build_app(model, Limits(max_wait_ms=0), api_key="s3cret")

    async def scenario(client):
        body = {"text": "1/2/07"}
        return (await client.post("/translate", json=body),
                await client.post("/translate", json=body, headers={"authorization": "Bearer wrong"}),
                await client.post("/translate", json=body, headers={"authorization": "Bearer s3cret"}),
                await client.get("/metrics"), await client.get("/health"), await client.get("/openapi.json"))

    missing, wrong, right, metrics, health, docs = _run(app, scenario)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert missing.json() == {"error": "this server needs an API key: send the header Authorization: Bearer KEY"}
    assert wrong.status_code == 401 and wrong.json() == {"error": "the API key is not this server's"}
    assert right.json() == {"translations": model.translate(["1/2/07"])[0]}
    assert metrics.status_code == 401 and health.status_code == 200 and docs.status_code == 200


def test_a_batch_whose_requests_all_timed_out_stops_decoding_and_frees_the_worker(trained_models):
    """Decoding asks at each step whether anyone still waits: once the one request timed out, the
    search ends at its next step instead of running its 500 steps."""
    model = trained_models["transformer"]
    translator = Translator(model.network, model.codec, model.config)
    steps = []

    def slow_search(texts, *args, stop=None, **options):  # its 500 steps run as it joins the flight
        yield from ()
        for step in range(500):
            if stop():
                raise SearchStopped()
            steps.append(step)
            time.sleep(0.01)
        return ["never"] * len(texts)

    translator.searching = slow_search
    app = build_app(translator, Limits(max_wait_ms=0, timeout=0.3))

    async def scenario(client):
        late = await client.post("/translate", json={"text": "1/2/07"})
        await asyncio.sleep(0.5)  # the worker's next step asks, and stops
        return late, (await client.get("/metrics")).text

    late, metrics = _run(app, scenario)
    assert late.status_code == 504 and 20 <= len(steps) < 100, len(steps)
    assert "cronos_abandoned_batches_total 1.0" in metrics


def test_a_model_that_computes_no_numbers_and_a_failure_of_the_servers_own_are_json_500s(trained_models, tmp_path,
                                                                                         monkeypatch, caplog):
    model = Cronos.load(trained_models["transformer"].save(tmp_path / "model.pt"), "cpu")
    with torch.no_grad():
        model.network.output_projection.weight.mul_(1e38)
    app = build_app(model, Limits(max_wait_ms=0))

    def broken(self):
        raise KeyError("a bug")

    async def scenario(client):
        overflowing = await client.post("/translate", json={"text": "1/2/07"})
        monkeypatch.setattr(TranslateRequest, "texts", broken)
        return overflowing, await client.post("/translate", json={"text": "1/2/07"})

    with caplog.at_level(logging.ERROR, logger="cronos"):
        overflowing, failed = _run(app, scenario)
    assert overflowing.status_code == 500
    assert overflowing.json()["error"].startswith("the model computed log-probabilities that are not numbers")
    assert failed.status_code == 500 and failed.json() == {"error": "the server failed: KeyError: 'a bug'"}
    assert [record.getMessage().count("\n") for record in caplog.records] == [0, 0]  # one line each, no traceback


def test_bodies_are_parsed_off_the_event_loop_and_a_request_larger_than_its_limit_is_413(trained_models,
                                                                                         monkeypatch):
    parsed_on = []
    real_loads = json.loads

    def loads(text, *args, **kwargs):
        parsed_on.append(threading.current_thread())
        return real_loads(text, *args, **kwargs)

    monkeypatch.setattr("cronos.server.app.json.loads", loads)
    app = build_app(trained_models["transformer"], Limits(max_wait_ms=0))

    async def scenario(client):
        large = b'{"text": "1/2/07"' + b" " * (100 << 10) + b"}"  # 100 KiB: parsed on a thread
        return (await client.post("/translate", content=large, headers={"content-type": "application/json"}),
                await client.post("/translate", json={"text": ["1/2/07"] * 65}), threading.current_thread())

    answered, too_many, loop_thread = _run(app, scenario)
    assert answered.status_code == 200 and len(parsed_on) == 2  # the large body, and the small one
    assert parsed_on[0] is not loop_thread and parsed_on[1] is loop_thread
    assert too_many.status_code == 413 and too_many.json() == {"error": "65 texts; at most 64 in one request"}


def test_the_event_loop_says_each_kind_of_error_in_one_line_at_most_every_ten_seconds(caplog):
    """At the file limit, ``accept`` fails once per waiting client: the loop would log a traceback
    each time (245,603 in 10 s were seen)."""
    loop = asyncio.new_event_loop()
    quiet_loop_errors(loop)
    with caplog.at_level(logging.WARNING, logger="cronos"):
        for _ in range(10000):
            loop.call_exception_handler({"message": "socket.accept() out of system resource",
                                         "exception": OSError(24, "Too many open files")})
    loop.close()
    assert caplog.messages == ["server: socket.accept() out of system resource: OSError: [Errno 24] Too many open "
                               "files"]


def _events(text: str) -> list[tuple[str, dict]]:
    """Server-sent events ``event: NAME`` / ``data: JSON``, in order."""
    found = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        found.append((lines["event"], json.loads(lines["data"])))
    return found


@pytest.mark.parametrize("body", [{"beam_size": 3}, {"beam_size": 2, "n_best": 2}, {"beam_size": 1, "scores": True},
                                  {"sampling": {"top_k": 3, "seed": 1}}],
                         ids=["beam", "n-best", "greedy, scores", "sampling"])
def test_a_streamed_request_gets_each_translation_as_an_event_then_done(trained_models, body):
    """Each text's event holds what it gets unstreamed (its translation alone), once, whatever the order."""
    model = trained_models["transformer"]
    app = build_app(model, Limits(max_wait_ms=0))
    texts = ["Thu 26 Nov 2026", "1/2/07", "the 21st of June 1950", "5 May 1999"]

    async def scenario(client):
        streamed = await client.post("/translate", json={"text": texts, "stream": True, **body})
        return streamed, await client.post("/translate", json={"text": texts, **body})

    streamed, plain = _run(app, scenario)
    assert streamed.status_code == 200 and streamed.headers["content-type"].startswith("text/event-stream")
    events = _events(streamed.text)
    assert [name for name, _ in events] == ["translation"] * 4 + ["done"]
    by_index = {data["index"]: data["translation"] for _, data in events[:-1]}
    assert sorted(by_index) == [0, 1, 2, 3] and [by_index[i] for i in range(4)] == plain.json()["translations"]


def test_a_streamed_request_refused_before_its_first_translation_gets_its_json_error(trained_models):
    app = build_app(trained_models["transformer"], Limits(max_wait_ms=0))

    async def scenario(client):
        return await client.post("/translate", json={"text": ["1/2/07", "   "], "stream": True, "beam_size": 2})

    refused = _run(app, scenario)
    assert refused.status_code == 422 and refused.json() == {"error": "text 1 is empty (no text, or only white "
                                                                      "space); send the text itself"}
