#!/usr/bin/env python3
"""Sentences joining a search in flight, against batches that decode until their last sentence
ends: what a server with ``--clients`` clients at a time can reach, without the server.

    python scripts/in_flight_benchmark.py runs/multi30k_transformer_spm/best.pt --sentences 1000 --clients 64

Three ways over the same sources, one after the other in this process (run it alone on the machine):

- sorted: ``decode`` in batches of ``--sorted-batch`` of similar length (offline decoding's best);
- in order: batches of ``--clients`` sentences in their order, each decoded until its longest ends
  (a server without continuous batching, with that many clients in flight);
- in flight: ``--clients`` sentences in flight in groups of ``--group``; when a group ends, the next
  ``--group`` sentences join the search in flight at its next step (``decoding/in_flight.py``);
- joining: ``--clients`` sentences in flight in one beam search (``decoding/beam.py``), each
  answered the step it ends; once ``--group`` have their answers, as many next sentences join it
  as one batch (a server's clients sending their next text, ``cronos serve`` without HTTP).

Every sentence's hypotheses must be the same in the four (bit for bit); the script says so.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from cronos.data import load_split
from cronos.decoding.in_flight import InFlight
from cronos.decoding.inference import one_batch
from cronos.decoding.search import Beam, arrival_of, decode, searching
from cronos.model import Cronos


def in_flight(model: Cronos, examples: list, beam: int, clients: int, group: int) -> list:
    """Each example's hypotheses, ``clients`` of them in flight, ``group`` joining at a time."""
    network, options = model.network, model.config.decoding
    found: list = [None] * len(examples)
    next_one = 0

    def join() -> None:
        nonlocal next_one
        positions = list(range(next_one, min(next_one + group, len(examples))))
        next_one += len(positions)
        batch = one_batch(network, [examples[p] for p in positions])

        def done(hypotheses, positions=positions) -> None:
            if isinstance(hypotheses, Exception):
                raise hypotheses
            for position, found_here in zip(positions, hypotheses):
                found[position] = found_here
            if next_one < len(examples):
                join()
        flight.join(searching(network, batch, Beam(beam), options), done)

    with InFlight(network) as flight:
        while next_one < min(clients, len(examples)):
            join()
        while flight:
            flight.step()
    return found


def joining(model: Cronos, examples: list, beam: int, clients: int, group: int) -> list:
    """Each example's hypotheses, ``clients`` of them in one search in flight, the next ``group``
    joining it once ``group`` have been answered."""
    network, options, strategy = model.network, model.config.decoding, Beam(beam)
    found: list = [None] * len(examples)
    next_one, answered = 0, 0

    def arrive(count: int) -> None:
        nonlocal next_one
        positions = list(range(next_one, min(next_one + count, len(examples))))
        next_one += len(positions)

        def answer(index: int, hypotheses, positions=positions) -> None:
            nonlocal answered
            found[positions[index]] = hypotheses
            answered += 1
        batch = one_batch(network, [examples[p] for p in positions])
        flight.arrive("beam", arrival_of(batch, options, None, answer, failed=_raise),
                      lambda queue: strategy.in_flight(network, queue, options))

    with InFlight(network) as flight:
        arrive(clients)
        while flight:
            if answered >= group and next_one < len(examples):
                arrive(answered)
                answered = 0
            flight.step()
    return found


def _raise(error: Exception) -> None:
    raise error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--data", default="test", help="split name or TSV file [test]")
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--clients", type=int, default=64, help="sentences in flight at a time [64]")
    parser.add_argument("--group", type=int, default=4, help="sentences that join together [4]")
    parser.add_argument("--sorted-batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = Cronos.load(args.checkpoint, device="cpu")
    examples = load_split(args.data, model.config.data, model.codec).examples[: args.sentences]
    options = model.config.decoding
    ways = {"sorted": lambda: decode(model.network, examples, Beam(args.beam), options, args.sorted_batch),
            "in order": lambda: [h for start in range(0, len(examples), args.clients)
                                 for h in decode(model.network, examples[start: start + args.clients], Beam(args.beam),
                                                 options, args.clients)],
            "in flight": lambda: in_flight(model, examples, args.beam, args.clients, args.group),
            "joining": lambda: joining(model, examples, args.beam, args.clients, args.group)}
    report, outputs = {}, {}
    for name, run in ways.items():
        start = time.perf_counter()
        outputs[name] = run()
        seconds = time.perf_counter() - start
        report[name] = round(len(examples) / seconds, 1)
        print(f"{name}: {report[name]} sentences/s ({len(examples)} in {seconds:.1f} s)", flush=True)
    same = {name: sum(a[0].tokens == b[0].tokens and a[0].score == b[0].score
                      for a, b in zip(found, outputs["sorted"])) for name, found in outputs.items()}
    print("the same as sorted:", ", ".join(f"{name} {count} of {len(examples)}" for name, count in same.items()))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump({"sentences_per_second": report, "same_as_sorted": same, **vars(args)}, file, indent=1)


if __name__ == "__main__":
    main()
