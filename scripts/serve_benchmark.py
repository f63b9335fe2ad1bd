#!/usr/bin/env python3
"""``cronos serve`` under load, beside offline ``cronos translate`` on the same machine.

    python scripts/serve_benchmark.py runs/multi30k_transformer_spm/best.pt [--clients 1 8 64]

The split's sources (default: the 1,000 Multi30k test sentences) are translated with the model's
beam size, first offline (``Cronos.translate(sources, batch_size=128)``, what ``cronos translate
--batch-size 128`` runs, in a fresh process, timed after a warm-up call), then by a ``cronos
serve`` process on a free port of 127.0.0.1, sent one sentence per request by 1, 8 and 64
concurrent clients (asyncio, httpx; the clients run in this process, on the same machine as the
server).  Per client count: sentences/s, latency p50/p95/p99, the batches the server formed (from
its /metrics: how many, mean sentences per batch), errors (answers other
than 200), and the share of answers identical to the offline translations.  Both sides use
``--threads`` torch threads (2).  Run it alone on the machine.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def offline(checkpoint: str, sources_file: str, threads: int, batch_size: int, output: str) -> None:
    """Translate the sources in this (fresh) process; write the outputs and the seconds taken."""
    import torch

    from cronos.model import Cronos

    torch.set_num_threads(threads)
    model = Cronos.load(checkpoint, device="cpu")
    sources = json.loads(Path(sources_file).read_text())
    model.translate(sources[:16], batch_size=batch_size)  # warm-up: the first calls set kernels up
    start = time.perf_counter()
    outputs = model.translate(sources, batch_size=batch_size)
    seconds = time.perf_counter() - start
    Path(output).write_text(json.dumps({"outputs": outputs, "seconds": seconds}))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_server(checkpoint: str, threads: int, max_wait_ms: float, max_batch_tokens: int):
    import httpx

    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    process = subprocess.Popen([sys.executable, "-m", "cronos", "serve", checkpoint, "--port", str(port), "--device",
                                "cpu", "--max-wait-ms", str(max_wait_ms), "--max-batch-tokens", str(max_batch_tokens)],
                               env=env, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited: {process.stderr.read()}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the server did not come up within 120 s")


def _batch_metrics(url: str) -> dict[str, float]:
    import httpx

    found = {}
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        if line.startswith("cronos_batch_sentences"):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


async def _load(url: str, sources: list[str], clients: int) -> tuple[float, list[tuple[int, str | None, float]]]:
    """Send each source as one request, ``clients`` at a time; the wall seconds and, per source,
    (status, translation, seconds)."""
    import httpx

    answers: list = [None] * len(sources)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(len(sources)):
        queue.put_nowait(index)

    async def client(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            index = queue.get_nowait()
            start = time.perf_counter()
            response = await http.post(f"{url}/translate", json={"text": sources[index]})
            text = response.json().get("translations") if response.status_code == 200 else None
            answers[index] = (response.status_code, text, time.perf_counter() - start)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=300) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        return time.perf_counter() - start, answers


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _measure(url: str, sources: list[str], reference: list[str], clients: int) -> dict:
    asyncio.run(_load(url, sources[:clients * 2], clients))  # warm-up
    before = _batch_metrics(url)
    seconds, answers = asyncio.run(_load(url, sources, clients))
    after = _batch_metrics(url)
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


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--offline-worker":
        offline(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None, help="the first N sources only (smoke runs)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--threads", type=int, default=2, help="torch threads offline and in the server")
    parser.add_argument("--server-threads", type=int, default=None, help="torch threads in the server [--threads]")
    parser.add_argument("--offline-batch-size", type=int, default=128)
    parser.add_argument("--max-wait-ms", type=float, default=10.0)
    parser.add_argument("--max-batch-tokens", type=int, default=4096)
    parser.add_argument("--json", type=Path, default=None, help="also write every figure here")
    args = parser.parse_args()

    from cronos.data import load_split
    from cronos.model import Cronos

    model = Cronos.load(args.checkpoint, device="cpu")
    sources = list(load_split(args.split, model.config.data, model.codec).sources)[: args.limit]
    del model
    with tempfile.TemporaryDirectory() as folder:
        sources_file, result_file = Path(folder) / "sources.json", Path(folder) / "offline.json"
        sources_file.write_text(json.dumps(sources))
        subprocess.run([sys.executable, __file__, "--offline-worker", args.checkpoint, str(sources_file),
                        str(args.threads), str(args.offline_batch_size), str(result_file)], check=True,
                       env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
        result = json.loads(result_file.read_text())
    reference, offline_speed = result["outputs"], len(sources) / result["seconds"]
    print(f"offline, batch size {args.offline_batch_size}: {offline_speed:.1f} sentences/s "
          f"({len(sources)} in {result['seconds']:.1f} s)", flush=True)

    process, url = _start_server(args.checkpoint, args.server_threads or args.threads, args.max_wait_ms, args.max_batch_tokens)
    try:
        runs = []
        for clients in args.clients:
            runs.append(_measure(url, sources, reference, clients))
            print(json.dumps(runs[-1]), flush=True)
    finally:
        process.terminate()
        process.wait(timeout=120)
    one = next((r["sentences_per_second"] for r in runs if r["clients"] == 1), None)
    print("\n| clients | sentences/s | of offline | x one client | p50 ms | p95 ms | p99 ms | batches | "
          "mean batch | errors | identical to offline |\n|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        versus_one = f"{r['sentences_per_second'] / one:.1f}x" if one else "-"
        print(f"| {r['clients']} | {r['sentences_per_second']:.1f} | {r['sentences_per_second'] / offline_speed:.0%} | "
              f"{versus_one} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['p99_ms']:.0f} | {r['batches']:.0f} | "
              f"{r['mean_batch']:.1f} | {r['errors']} | {r['identical']:.1%} |")
    print(f"| offline `--batch-size {args.offline_batch_size}` | {offline_speed:.1f} | 100% | | | | | | | | |")
    if args.json is not None:
        args.json.write_text(json.dumps({"offline_sentences_per_second": offline_speed, "runs": runs,
                                         "sentences": len(sources), "threads": args.threads}, indent=2))


if __name__ == "__main__":
    main()
