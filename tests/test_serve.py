"""``cronos serve``: one real server process on a free port of 127.0.0.1, driven by concurrent
clients; answers equal the model's translations alone, bad input is one JSON error, and SIGTERM
loses nothing accepted."""
from __future__ import annotations

import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers import cronos_command

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

SOURCES = ["Thu 26 Nov 2026", "1/2/07", "the 21st of June 1950", "2000 01 01", "5 May 1999", "Dec 3, 1987",
           "March 4th, 2011", "12.12.12"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(trained_models, tmp_path_factory):
    """``(model, base URL, process)``: ``cronos serve`` on the tiny Transformer, stopped after the module."""
    model = trained_models["transformer"]
    checkpoint = model.save(tmp_path_factory.mktemp("serve") / "model.pt")
    port = _free_port()
    process = subprocess.Popen(cronos_command("serve", str(checkpoint), "--port", str(port), "--device", "cpu",
                                              "--max-wait-ms", "20"), stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        assert process.poll() is None, process.stderr.read()
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the server did not come up"
        time.sleep(0.1)
    yield model, url, process
    if process.poll() is None:
        process.kill()
        process.wait(timeout=30)


def test_concurrent_clients_get_the_models_translations_of_their_own_texts(server):
    model, url, _ = server
    alone = {source: model.translate([source], beam_size=3)[0] for source in SOURCES}

    def ask(i: int):
        texts = [SOURCES[i % 8], SOURCES[(i * 3) % 8]]
        response = httpx.post(f"{url}/translate", json={"text": texts, "beam_size": 3}, timeout=60)
        return texts, response.status_code, response.json()

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, range(32)))
    for texts, status, body in answers:
        assert status == 200 and body == {"translations": [alone[t] for t in texts]}, body
    one = httpx.post(f"{url}/translate", json={"text": SOURCES[0], "beam_size": 3, "n_best": 2}, timeout=60).json()
    expected = model.translate([SOURCES[0]], beam_size=3, n_best=2)[0]
    assert [h["text"] for h in one["translations"]] == [t.text for t in expected]


@pytest.mark.parametrize("body, status, message", [
    (b"{not json", 400, "the body is not JSON"),
    (b'["1/2/07"]', 422, "the body must be a JSON object"),
    (b'{"text": "1/2/07", "beam": 3}', 422, "unknown field(s) beam; the fields are text, beam_size, n_best"),
    (b'{"text": 7}', 422, "text: expected a string or a non-empty list of strings"),
    (b'{"text": []}', 422, "text: expected a string or a non-empty list of strings"),
    (b'{"text": ["1/2/07", "  "]}', 422, "text 1: empty"),
    (b'{"text": "1/2/07", "beam_size": 0}', 422, "beam_size: expected a positive integer, got 0"),
    (b'{"text": "1/2/07", "beam_size": 2, "n_best": 3}', 422, "n_best: 3 hypotheses need a beam_size of at least 3"),
    (b'{"text": "' + b"x" * 2001 + b'"}', 413, "text 0: 2001 characters; at most 2000 in one text"),
    (b'{"text": [' + b",".join([b'"1/2/07"'] * 65) + b']}', 413, "text: 65 texts; at most 64 in one request"),
])
def test_bad_requests_are_one_json_error_with_the_right_status(server, body, status, message):
    _, url, _ = server
    response = httpx.post(f"{url}/translate", content=body, headers={"content-type": "application/json"}, timeout=30)
    assert response.status_code == status and message in response.json()["error"], response.text


def test_sigterm_answers_every_accepted_request_and_exits_0(server):
    _, url, process = server
    with ThreadPoolExecutor(8) as pool:
        sent = [pool.submit(httpx.post, f"{url}/translate", json={"text": SOURCES, "beam_size": 4}, timeout=60)
                for _ in range(16)]
        time.sleep(0.3)  # some answered, some being decoded, some waiting
        process.send_signal(signal.SIGTERM)
        outcomes = []
        for future in sent:
            try:
                outcomes.append(future.result().status_code)
            except httpx.TransportError:  # sent after the server stopped taking connections
                outcomes.append("refused")
    assert process.wait(timeout=60) == 0
    assert set(outcomes) <= {200, "refused"} and 200 in outcomes, outcomes
