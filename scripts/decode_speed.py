#!/usr/bin/env python3
"""Decoding speed of a trained checkpoint: sentences/s for each beam size over a split's sources;
with ``--breakdown`` where the time goes, with ``--ops`` torch.profiler's top operations of the
last beam over the first 320 of them, and with ``--profile`` cProfile's top functions over 300.

    python scripts/decode_speed.py runs/multi30k_transformer_spm/best.pt --beams 1 4 --batch-size 32 --breakdown

The breakdown times the encoder, the decoder's layers and the output projection over the
vocabulary (wall clock around each call); the rest is the search itself (choosing tokens, moving
the beams, finishing hypotheses) and batching.  It also counts the decoder's steps and the rows
they ran (rows x steps: the work a step's matrix products scale with).  Run it alone on the machine.
"""
from __future__ import annotations

import argparse
import cProfile
import collections
import pstats
import time
from typing import Callable

import torch

from cronos.model import Cronos
from cronos.data import load_split
from cronos.decoding.search import Beam, decode


def timed(seconds: collections.Counter, name: str, function: Callable) -> Callable:
    def run(*args, **kwargs):
        start = time.perf_counter()
        result = function(*args, **kwargs)
        seconds[name] += time.perf_counter() - start
        return result
    return run


def breakdown(model: Cronos, examples, beam: int, batch_size: int) -> None:
    """Decode once with the network's parts timed; print each part's share and the rows decoded."""
    network, seconds, rows = model.network, collections.Counter(), collections.Counter()
    decoder_forward = network.decoder.forward

    def counted(embedded, state, need_weights=True):
        rows["steps"] += 1
        rows["rows"] += embedded.size(0)
        return decoder_forward(embedded, state, need_weights)

    network.encode = timed(seconds, "encoder", network.encode)
    network.decoder.forward = timed(seconds, "decoder layers", counted)
    network.output_projection.forward = timed(seconds, "output projection", network.output_projection.forward)
    try:
        start = time.perf_counter()
        decode(network, examples, Beam(beam), model.config.decoding, batch_size)
        total = time.perf_counter() - start
    finally:  # the network's own methods again
        del network.encode, network.decoder.forward, network.output_projection.forward
    seconds["search and batching"] = total - sum(seconds.values())
    print(f"beam {beam} breakdown: {total:.2f} s, {rows['steps']} decoder steps, {rows['rows']} rows "
          f"({rows['rows'] / max(rows['steps'], 1):.1f} per step)")
    for name, value in seconds.items():
        print(f"  {name}: {value:.2f} s ({value / total:.1%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--data", default="test", help="split name or TSV file [test]")
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--batch-size", type=int, default=None, help="sentences per batch [the model's decoding.batch_size]")
    parser.add_argument("--threads", type=int, default=None, help="torch threads [torch's default]")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--breakdown", action="store_true", help="time the encoder, decoder layers, projection, search")
    parser.add_argument("--ops", action="store_true", help="torch.profiler's operations by CPU time (last beam)")
    parser.add_argument("--profile", action="store_true", help="cProfile's Python functions (last beam)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = Cronos.load(args.checkpoint, device=args.device)
    examples = load_split(args.data, model.config.data, model.codec).examples
    for beam in args.beams:
        start = time.perf_counter()
        decode(model.network, examples, Beam(beam), model.config.decoding, args.batch_size)
        seconds = time.perf_counter() - start
        print(f"beam {beam}: {len(examples) / seconds:.1f} sentences/s ({len(examples)} in {seconds:.1f} s)")
        if args.breakdown:
            breakdown(model, examples, beam, args.batch_size)
    if args.ops:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as profiled:
            decode(model.network, examples[:320], Beam(args.beams[-1]), model.config.decoding, args.batch_size)
        print(profiled.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        decode(model.network, examples[:300], Beam(args.beams[-1]), model.config.decoding, args.batch_size)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
