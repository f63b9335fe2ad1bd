"""``cronos serve``: one real server process on a port of 127.0.0.1 it chose itself (``--port 0``),
driven by concurrent clients; answers equal the model's own alone (translations, n-best lists,
samples, scores), bad input is one JSON error, overload is 503 and loses nothing, idle, slow and
surplus connections are closed, metrics count what happened, and SIGTERM loses nothing accepted and
waits for no half-sent request.  tests/test_server_app.py holds what needs the worker held still."""
from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers import cronos_command

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

CLIENT_TIMEOUT, MAX_CONNECTIONS = 1.0, 24
SOURCES = ["Thu 26 Nov 2026", "1/2/07", "the 21st of June 1950", "2000 01 01", "5 May 1999", "Dec 3, 1987",
           "March 4th, 2011", "12.12.12"]


@pytest.fixture(scope="module")
def server(trained_models, tmp_path_factory):
    """``(model, base URL, process)``: ``cronos serve`` on the tiny Transformer, stopped after the module."""
    model = trained_models["transformer"]
    checkpoint = model.save(tmp_path_factory.mktemp("serve") / "model.pt")
    process = subprocess.Popen(cronos_command("serve", str(checkpoint), "--port", "0", "--device", "cpu",
                                              "--max-wait-ms", "20", "--max-queue", "32", "--max-beam", "8",
                                              "--client-timeout", str(CLIENT_TIMEOUT), "--max-connections",
                                              str(MAX_CONNECTIONS), "--max-body-bytes", "100000"),
                               stderr=subprocess.PIPE, text=True)
    said = process.stderr.readline()
    port = re.search(r"on http://127\.0\.0\.1:(\d+) ", said)  # --port 0: the port it took
    assert port and int(port[1]) > 0, said
    url = f"http://127.0.0.1:{port[1]}"
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


def _alone(model, kind: str, text: str):
    """What the model gives for ``text`` alone, as the server answers a request of ``kind``."""
    if kind == "n_best":
        return [{"text": t.text, "score": t.score, "log_prob": t.log_prob}
                for t in model.translate([text], beam_size=3, n_best=2)[0]]
    if kind == "sampling":
        return model.sample([text], top_k=3, seed=7)[0]
    if kind == "score":
        score, = model.score([(text, "2000-01-01")])
        return {"log_prob": score.log_prob, "mean_log_prob": score.mean_log_prob, "tokens": score.tokens}
    if kind == "controlled":
        return model.translate([text], beam_size=4, decoding=CONTROLS)[0]
    if kind == "prefixed":
        return model.translate([text], beam_size=2, prefixes=["19"])[0]
    if kind == "greedy":
        return model.translate([text], beam_size=1)[0]
    return model.translate([text], beam_size=3)[0]


CONTROLS = {"min_length": 3, "no_repeat_ngram_size": 2, "length_penalty_form": "gnmt", "length_penalty": 0.6}


REQUESTS = {"beam": ("/translate", lambda t: {"text": t, "beam_size": 3}, "translations"),
            "n_best": ("/translate", lambda t: {"text": t, "beam_size": 3, "n_best": 2}, "translations"),
            "sampling": ("/translate", lambda t: {"text": t, "sampling": {"top_k": 3, "seed": 7}}, "translations"),
            "score": ("/score", lambda t: {"source": t, "target": ["2000-01-01"] * len(t)}, "scores"),
            "controlled": ("/translate", lambda t: {"text": t, "beam_size": 4, "decoding": CONTROLS}, "translations"),
            "prefixed": ("/translate", lambda t: {"text": t, "beam_size": 2, "prefix": ["19"] * len(t)}, "translations"),
            "greedy": ("/translate", lambda t: {"text": t, "beam_size": 1}, "translations")}


def test_concurrent_clients_get_the_models_answers_for_their_own_texts(server):
    """Mixed beam sizes (their batches joining the beam search of their settings in flight, each
    sentence answered as it ends), controls, prefixes, greedy search, sampling and scores, from 8
    clients at once: every answer is what its text alone gives."""
    model, url, _ = server
    kinds = list(REQUESTS)
    alone = {(kind, source): _alone(model, kind, source) for kind in kinds for source in SOURCES}

    def ask(i: int):
        kind, texts = kinds[i % len(kinds)], [SOURCES[i % 8], SOURCES[(i * 3) % 8]]
        path, body, field = REQUESTS[kind]
        response = httpx.post(f"{url}{path}", json=body(texts), timeout=60)
        return kind, texts, response.status_code, response.json().get(field)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, range(8 * len(kinds))))
    for kind, texts, status, answer in answers:
        assert status == 200 and answer == [alone[kind, t] for t in texts], (kind, texts, answer)
    one = httpx.post(f"{url}/translate", json={"text": SOURCES[0], "beam_size": 3, "scores": True}, timeout=60).json()
    assert one["translations"] == alone["n_best", SOURCES[0]][0]


def test_under_overload_requests_get_503_with_retry_after_and_no_answer_is_lost_or_mixed_up(server):
    model, url, _ = server
    alone = {source: model.translate([source], beam_size=4)[0] for source in SOURCES}

    def ask(i: int):
        texts = [SOURCES[(i + j) % 8] for j in range(8)]  # 8 texts: four requests fill the queue of 32
        return texts, httpx.post(f"{url}/translate", json={"text": texts, "beam_size": 4}, timeout=60)

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, range(32)))
    for texts, response in answers:
        if response.status_code == 503:
            assert int(response.headers["retry-after"]) >= 1 and "retry later" in response.json()["error"]
        else:
            assert response.status_code == 200 and response.json() == {"translations": [alone[t] for t in texts]}
    assert any(response.status_code == 200 for _, response in answers)


@pytest.mark.parametrize("path, body, status, message", [
    ("/translate", b"{not json", 400, "the body is not JSON"),
    ("/translate", b'{"text": "\xff"}', 400, "the body is not JSON"),
    ("/translate", b'["1/2/07"]', 422, "the body must be a JSON object"),
    ("/translate", b'{"text": "1/2/07", "beam": 3}', 422,
     "unknown field beam; the fields are text, beam_size, n_best, scores, sampling"),
    ("/translate", b'{"text": 7}', 422, "text: expected a string or a non-empty list of strings"),
    ("/translate", b'{"text": []}', 422, "text: expected a string or a non-empty list of strings"),
    ("/translate", b'{"text": ["1/2/07", "  "]}', 422, "text 1 is empty"),
    ("/translate", b'{"text": "1/2/07", "beam_size": 0}', 422, "beam_size: Input should be greater than 0"),
    ("/translate", b'{"text": "1/2/07", "beam_size": "4"}', 422, "beam_size: Input should be a valid integer"),
    ("/translate", b'{"text": "1/2/07", "beam_size": 2, "n_best": 3}', 422,
     "n_best: 3 hypotheses need a beam_size of at least 3"),
    ("/translate", b'{"text": "1/2/07", "sampling": {"top_k": 2, "top_p": 0.5}}', 422,
     "sampling: sample with top_k or with top_p, not both"),
    ("/translate", b'{"text": "1/2/07", "sampling": {"top_k": 2}, "beam_size": 2}', 422,
     "send sampling, or beam_size / n_best / scores / alignments, not both"),
    ("/translate", b'{"text": "' + b"x" * 2001 + b'"}', 413, "text 0: 2001 characters; at most 2000 in one text"),
    ("/translate", b'{"text": [' + b",".join([b'"1/2/07"'] * 33) + b']}', 413,
     "33 texts; this server queues at most 32 (--max-queue), so they could never be accepted"),
    ("/translate", b'{"text": "1/2/07", "beam_size": 10000}', 422,
     "beam_size: 10000; this server searches with at most 8 beams (--max-beam)"),
    ("/translate", b'{"text": "1/2/07", "beam_size": 9223372036854775808}', 422,
     "beam_size: 9223372036854775808; this server searches with at most 8 beams (--max-beam)"),
    ("/translate", b'{"text": "1/2/07", "beam_size": 4, "n_best": 100000}', 422,
     "n_best: 100000; this server searches with at most 8 beams (--max-beam)"),
    ("/translate", b'{"text": "1/2/07", "beam_size": 1e5}', 422, "beam_size: Input should be a valid integer"),
    ("/translate", b'{"text": "1/2/07", "sampling": "x"}', 422, "sampling: expected a JSON object"),
    ("/translate", b'{"text": ["1/2/07", "a\\ud800"]}', 422, "text 1 holds a lone surrogate (U+D800) at character 1"),
    ("/translate", json.dumps({"text": "1/2/07", **{f"f{i}": 1 for i in range(1000)}}).encode(), 422,
     "unknown fields f0, f1, f2, f3, f4 and 995 more; the fields are text, beam_size, n_best, scores, sampling"),
    ("/translate", b'{"text": "' + b"x" * 100001 + b'"}', 413,
     "the body is larger than 100,000 bytes, the most this server reads (--max-body-bytes)"),
    ("/score", b'{"source": "1/2/07", "target": ["a", "b"]}', 422, "send one of each, or two lists of the same length"),
    ("/score", b'{"source": "1/2/07"}', 422, "target: Field required"),
])
def test_bad_requests_are_one_json_error_with_the_right_status(server, path, body, status, message):
    _, url, _ = server
    response = httpx.post(f"{url}{path}", content=body, headers={"content-type": "application/json"}, timeout=30)
    assert response.status_code == status and message in response.json()["error"], response.text
    assert len(response.json()["error"]) < 400  # one line a person reads, whatever the body held


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)), timeout=10)
    return connection


def _read_all(connection: socket.socket) -> bytes:
    """What the server sends until it closes the connection."""
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return received


def _error(response: bytes) -> tuple[int, str]:
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)["error"]


def test_idle_slow_and_malformed_clients_are_closed_with_a_json_error_and_others_are_served(server):
    """Idle: closed after --client-timeout; a request that stops half way: 408; not HTTP: 400; a
    body announced past --max-body-bytes: 413 before it is sent.  None of them delays the others."""
    _, url, _ = server
    idle, slow, garbage, huge, kept = (_connect(url) for _ in range(5))
    slow.sendall(b"POST /translate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                 b"content-length: 100\r\n\r\n{\"text\": ")
    kept.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")  # one whole request, answered
    assert kept.recv(65536).startswith(b"HTTP/1.1 200")
    kept.sendall(b"GET /health HTTP/1.1\r\nhost")  # then the next one's first bytes, and no more
    garbage.sendall(b"NOT HTTP AT ALL\r\n\r\n")
    huge.sendall(b"POST /translate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                 b"content-length: 26000000\r\n\r\n")
    assert _error(_read_all(garbage)) == (400, "the request is not valid HTTP/1.1")
    assert _error(_read_all(huge))[0] == 413
    streamed = httpx.post(f"{url}/translate", content=iter([b'{"text": "' + b"x" * 60000, b"x" * 60000 + b'"}']),
                          headers={"content-type": "application/json"}, timeout=30)  # chunked: no size announced
    assert streamed.status_code == 413 and "(--max-body-bytes)" in streamed.json()["error"]
    assert httpx.get(f"{url}/health", timeout=5).status_code == 200  # meanwhile
    started = time.monotonic()
    assert _error(_read_all(slow)) == (408, f"the request did not arrive whole within {CLIENT_TIMEOUT:g} s")
    assert _read_all(idle) == b""
    assert _error(_read_all(kept)) == (408, f"the request did not arrive whole within {CLIENT_TIMEOUT:g} s")
    assert time.monotonic() - started < CLIENT_TIMEOUT + 3


def test_past_the_connection_limit_new_connections_get_503_and_the_limit_frees_as_they_close(server):
    _, url, _ = server
    time.sleep(CLIENT_TIMEOUT + 0.5)  # connections of earlier tests closed
    held = [_connect(url) for _ in range(MAX_CONNECTIONS)]
    time.sleep(0.2)
    extra = _connect(url)
    status, message = _error(_read_all(extra))
    assert status == 503 and f"holds {MAX_CONNECTIONS} connections, its most" in message
    for connection in held:
        assert _read_all(connection) == b""  # idle: closed after --client-timeout
    assert httpx.post(f"{url}/translate", json={"text": "1/2/07"}, timeout=30).status_code == 200


def test_answers_are_sent_at_once_not_held_back_for_the_clients_acknowledgement(server):
    """Nagle's algorithm held each answer's second write until the client acknowledged the first
    (40 ms of Linux's delayed acknowledgement per request); on one kept-alive connection, 20
    health checks take a millisecond or two each."""
    _, url, _ = server
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    took = []
    for _ in range(20):
        started = time.perf_counter()
        connection.request("GET", "/health")
        assert connection.getresponse().read()
        took.append(time.perf_counter() - started)
    connection.close()
    assert sorted(took)[10] < 0.02, took


def test_a_body_not_sent_as_json_is_415_naming_the_header(server):
    _, url, _ = server
    response = httpx.post(f"{url}/translate", data={"text": "1/2/07"}, timeout=30)  # a form, as curl -d sends
    assert response.status_code == 415 and "content-type: application/json" in response.json()["error"]


def test_metrics_count_requests_batches_and_the_queue_and_openapi_describes_the_endpoints(server):
    _, url, _ = server
    httpx.post(f"{url}/translate", json={"text": "1/2/07"}, timeout=60)
    metrics = httpx.get(f"{url}/metrics", timeout=30)
    assert metrics.headers["content-type"].startswith("text/plain")
    values = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
              for line in metrics.text.splitlines() if line and not line.startswith("#")}
    assert values['cronos_requests_total{endpoint="/translate",status="200"}'] >= 1
    assert values['cronos_requests_total{endpoint="/translate",status="422"}'] >= 1  # the bad requests above
    assert values["cronos_batch_sentences_count"] >= 1 and "cronos_queue_sentences" in values
    assert values['cronos_request_seconds_count{endpoint="/translate"}'] >= 1
    paths = httpx.get(f"{url}/openapi.json", timeout=30).json()["paths"]
    assert {"/translate", "/score", "/health", "/metrics"} <= set(paths)
    assert "TranslateRequest" in str(paths["/translate"]["post"]["requestBody"])


def test_a_second_server_on_a_taken_port_says_so_before_loading_its_model(server):
    model, url, _ = server
    port = url.rsplit(":", 1)[1]
    checkpoint = next(arg for arg in server[2].args if arg.endswith(".pt"))
    second = subprocess.run(cronos_command("serve", checkpoint, "--port", port, "--device", "cpu"),
                            capture_output=True, text=True, timeout=120)
    assert second.returncode == 2, second.stderr
    assert f"--port: 127.0.0.1:{port} is in use (another server?); choose another port" in second.stderr


def test_sigterm_answers_every_accepted_request_and_exits_0(server):
    """Also with a client that sent its headers and part of its body: that request was never
    accepted, and the server does not wait for the rest."""
    _, url, process = server
    half = _connect(url)
    half.sendall(b"POST /translate HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"te")
    with ThreadPoolExecutor(8) as pool:
        body = {"text": SOURCES[:2], "beam_size": 4}  # 16 requests of 2 texts: within the queue of 32
        sent = [pool.submit(httpx.post, f"{url}/translate", json=body, timeout=60) for _ in range(16)]
        time.sleep(0.3)  # some answered, some being decoded, some waiting
        process.send_signal(signal.SIGTERM)
        outcomes = []
        for future in sent:
            try:
                outcomes.append(future.result().status_code)
            except httpx.TransportError:  # sent after the server stopped taking connections
                outcomes.append("refused")
    assert process.wait(timeout=10) == 0
    assert set(outcomes) <= {200, "refused"} and 200 in outcomes, outcomes
    rest = _read_all(half)
    assert rest == b"" or _error(rest)[0] == 408, rest
    assert "Traceback" not in process.stderr.read()
