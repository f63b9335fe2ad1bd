#!/usr/bin/env python3
"""Decoding speed of a trained checkpoint: sentences/s for each beam size over a split's sources,
and with ``--profile`` cProfile's top functions of the last beam over the first 300 of them.

    python scripts/decode_speed.py runs/multi30k_transformer_spm/best.pt --beams 1 5 --profile

Run it alone on the machine.
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import time

from cronos.model import Cronos
from cronos.data import load_split
from cronos.search import Beam, decode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--data", default="test", help="split name or TSV file [test]")
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    model = Cronos.load(args.checkpoint, device=args.device)
    examples = load_split(args.data, model.config.data, model.codec).examples
    for beam in args.beams:
        start = time.perf_counter()
        decode(model.network, examples, Beam(beam), model.config.decoding)
        seconds = time.perf_counter() - start
        print(f"beam {beam}: {len(examples) / seconds:.1f} sentences/s ({len(examples)} in {seconds:.1f} s)")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        decode(model.network, examples[:300], Beam(args.beams[-1]), model.config.decoding)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
