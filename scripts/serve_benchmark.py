#!/usr/bin/env python3
"""``cronos serve`` under load, beside offline ``cronos translate`` on the same machine.

    python scripts/serve_benchmark.py runs/multi30k_transformer_spm/best.pt [--clients 1 8 64]

The split's sources (default: the 1,000 Multi30k test sentences) are translated with the model's
beam size offline (``Cronos.translate(sources, batch_size=128)``, what ``cronos translate
--batch-size 128`` runs, in a fresh process, timed after a warm-up call; and, for comparison, in
the sources' order as many at a time as the most clients: what a server that decodes the
sentences in flight can at best do), then by a ``cronos
serve`` process on a free port of 127.0.0.1, sent one sentence per request by 1, 8 and 64
concurrent clients, then offline again: the shares of offline are of the two offline figures'
mean, as the machine's speed drifts.  The clients are threads of this process with a connection
each (``http.client``: a third of a millisecond of CPU per request here, where httpx's asynchronous
client took five, which the server's decoding had to share the two cores with); each sends its
next sentence as soon as it has its answer.  Per client count: sentences/s, latency p50/p95/p99,
the batches the server formed (from its /metrics: how many, mean sentences per batch), errors
(answers other than 200), and the share of answers identical to the offline translations.  Both
sides use ``--threads`` torch threads (2).  Run it alone on the machine.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def offline(checkpoint: str, sources_file: str, threads: int, batch_size: int, in_order: int, output: str) -> None:
    """Translate the sources in this (fresh) process; write the outputs and the seconds taken, sorted
    by length into batches of ``batch_size`` (what ``cronos translate`` does) and ``in_order`` at a
    time in the sources' order (what a server decoding that many clients' sentences at once can do)."""
    import torch

    from cronos.model import Cronos

    torch.set_num_threads(threads)
    model = Cronos.load(checkpoint, device="cpu")
    sources = json.loads(Path(sources_file).read_text())
    model.translate(sources[:16], batch_size=batch_size)  # warm-up: the first calls set kernels up
    start = time.perf_counter()
    outputs = model.translate(sources, batch_size=batch_size)
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    for first in range(0, len(sources), in_order):
        model.translate(sources[first:first + in_order], batch_size=in_order)
    seconds_in_order = time.perf_counter() - start
    Path(output).write_text(json.dumps({"outputs": outputs, "seconds": seconds, "seconds_in_order": seconds_in_order}))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(port: int, path: str, timeout: float) -> tuple[int, str]:
    """``GET path`` from the server on ``port``: status and body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8")
    finally:
        connection.close()


def _start_server(checkpoint: str, threads: int, max_wait_ms: float, max_batch_tokens: int,
                  log: Path) -> tuple[subprocess.Popen, int]:
    """A ``cronos serve`` process on a free port, its stderr into ``log``, once it answers /health."""
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    with log.open("w") as stderr:  # a file, not a pipe: nothing has to read it while the server runs
        process = subprocess.Popen([sys.executable, "-m", "cronos", "serve", checkpoint, "--port", str(port), "--device",
                                    "cpu", "--max-wait-ms", str(max_wait_ms), "--max-batch-tokens",
                                    str(max_batch_tokens)], env=env, stderr=stderr)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited: {log.read_text()}")
        try:
            if _get(port, "/health", timeout=2)[0] == 200:
                return process, port
        except OSError:  # not listening yet
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the server did not come up within 120 s")


def _batch_metrics(port: int) -> dict[str, float]:
    found = {}
    for line in _get(port, "/metrics", timeout=30)[1].splitlines():
        if line.startswith("cronos_batch_sentences"):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


def _load(port: int, sources: list[str], clients: int) -> tuple[float, list[tuple[int, str | None, float]]]:
    """Send each source as one request, from ``clients`` threads with a connection each; the wall
    seconds and, per source, (status, translation, seconds).  Each client sends its next request as
    soon as it has its answer."""
    answers: list = [None] * len(sources)
    indices = iter(range(len(sources)))
    taking = threading.Lock()

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        try:
            while True:
                with taking:
                    index = next(indices, None)
                if index is None:
                    return
                start = time.perf_counter()
                connection.request("POST", "/translate", body=json.dumps({"text": sources[index]}),
                                   headers={"content-type": "application/json"})
                response = connection.getresponse()
                body = json.loads(response.read())
                text = body.get("translations") if response.status == 200 else None
                answers[index] = (response.status, text, time.perf_counter() - start)
        finally:
            connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start, answers


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _measure(port: int, sources: list[str], reference: list[str], clients: int) -> dict:
    _load(port, sources[:clients * 2], clients)  # warm-up
    before = _batch_metrics(port)
    seconds, answers = _load(port, sources, clients)
    after = _batch_metrics(port)
    batches = after["cronos_batch_sentences_count"] - before["cronos_batch_sentences_count"]
    sentences = after["cronos_batch_sentences_sum"] - before["cronos_batch_sentences_sum"]
    latencies = [latency for _, _, latency in answers]
    return {
        "clients": clients, "sentences_per_second": len(sources) / seconds, "seconds": seconds,
        "p50_ms": 1000 * _percentile(latencies, 0.50), "p95_ms": 1000 * _percentile(latencies, 0.95),
        "p99_ms": 1000 * _percentile(latencies, 0.99), "batches": batches,
        "mean_batch": sentences / batches if batches else 0.0,
        "errors": sum(status != 200 for status, _, _ in answers),
        "identical": sum(text == ref for (_, text, _), ref in zip(answers, reference)) / len(sources),
    }


def _offline(args: argparse.Namespace, sources_file: Path, result_file: Path) -> tuple[list[str], float, float]:
    """The offline translations and sentences/s, sorted and in order (``offline``), in a fresh process."""
    subprocess.run([sys.executable, __file__, "--offline-worker", args.checkpoint, str(sources_file),
                    str(args.threads), str(args.offline_batch_size), str(max(args.clients)), str(result_file)],
                   check=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
    result = json.loads(result_file.read_text())
    count = len(result["outputs"])
    return result["outputs"], count / result["seconds"], count / result["seconds_in_order"]


def _serve(args: argparse.Namespace, sources: list[str], reference: list[str], log: Path) -> list[dict]:
    """Each client count's figures against one server process (its stderr into ``log``)."""
    process, port = _start_server(args.checkpoint, args.server_threads or args.threads, args.max_wait_ms,
                                  args.max_batch_tokens, log)
    try:
        runs = []
        for clients in args.clients:
            runs.append(_measure(port, sources, reference, clients))
            print(json.dumps(runs[-1]), flush=True)
        return runs
    finally:
        process.terminate()
        process.wait(timeout=120)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--offline-worker":
        offline(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None, help="the first N sources only (smoke runs)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--threads", type=int, default=2, help="torch threads offline and in the server")
    parser.add_argument("--server-threads", type=int, default=None, help="torch threads in the server [--threads]")
    parser.add_argument("--offline-batch-size", type=int, default=128)
    parser.add_argument("--max-wait-ms", type=float, default=100.0)
    parser.add_argument("--max-batch-tokens", type=int, default=4096)
    parser.add_argument("--json", type=Path, default=None, help="also write every figure here")
    args = parser.parse_args()

    from cronos.data import load_split
    from cronos.model import Cronos

    model = Cronos.load(args.checkpoint, device="cpu")
    sources = list(load_split(args.split, model.config.data, model.codec).sources)[: args.limit]
    del model
    with tempfile.TemporaryDirectory() as folder:
        sources_file = Path(folder) / "sources.json"
        sources_file.write_text(json.dumps(sources))
        reference, *before = _offline(args, sources_file, Path(folder) / "before.json")
        runs = _serve(args, sources, reference, Path(folder) / "server.log")
        _, *after = _offline(args, sources_file, Path(folder) / "after.json")
    offline_speed, in_order_speed = (before[0] + after[0]) / 2, (before[1] + after[1]) / 2
    print(f"offline, batch size {args.offline_batch_size}: {before[0]:.1f} and {after[0]:.1f} sentences/s (before and "
          f"after the server); {max(args.clients)} at a time in order: {before[1]:.1f} and {after[1]:.1f}; the shares "
          "below are of the means", flush=True)
    one = next((r["sentences_per_second"] for r in runs if r["clients"] == 1), None)
    print("\n| clients | sentences/s | of offline | x one client | p50 ms | p95 ms | p99 ms | batches | "
          "mean batch | errors | identical to offline |\n|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        versus_one = f"{r['sentences_per_second'] / one:.1f}x" if one else "-"
        print(f"| {r['clients']} | {r['sentences_per_second']:.1f} | {r['sentences_per_second'] / offline_speed:.0%} | "
              f"{versus_one} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['p99_ms']:.0f} | {r['batches']:.0f} | "
              f"{r['mean_batch']:.1f} | {r['errors']} | {r['identical']:.1%} |")
    print(f"| offline `--batch-size {args.offline_batch_size}` | {offline_speed:.1f} | 100% | | | | | | | | |")
    print(f"| offline, {max(args.clients)} at a time in order | {in_order_speed:.1f} | {in_order_speed / offline_speed:.0%} "
          "| | | | | | | | |")
    if args.json is not None:
        args.json.write_text(json.dumps({"offline_sentences_per_second": [before[0], after[0]],
                                         "in_order_sentences_per_second": [before[1], after[1]], "runs": runs,
                                         "sentences": len(sources), "threads": args.threads}, indent=2))


if __name__ == "__main__":
    main()
