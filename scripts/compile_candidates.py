#!/usr/bin/env python3
"""Which blocks pay for ``torch.compile``: each candidate compiled alone in a copy of the network,
its training steps alternating with the eager network's on the same batches.

    python scripts/compile_candidates.py configs/multi30k_transformer.yaml --set data.root=../shared/data/multi30k
    python scripts/compile_candidates.py configs/multi30k_gru.yaml --set data.root=../shared/data/multi30k

Prints, per candidate that the config's model has, the seconds of its first two steps
(compiling), the medians of eager and compiled step times and their ratio, and the graphs
compiled.  ``Seq2Seq.compile_blocks`` compiles the candidates that won here (docs/BENCHMARKS.md).
Run it alone on the machine.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch._dynamo
from torch._dynamo.utils import counters

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark import StepRunner  # noqa: E402

from cronos.config import load_config, parse_override  # noqa: E402
from cronos.data import BucketBatchSampler, load_training_data  # noqa: E402
from cronos.loss import projected_cross_entropy  # noqa: E402
from cronos.modules.attention import AdditiveAttention  # noqa: E402
from cronos.modules.decoders import TransformerDecoderLayer  # noqa: E402
from cronos.modules.encoders import FeedForward, TransformerLayer  # noqa: E402
from cronos.network import Seq2Seq  # noqa: E402


def compile_modules(kinds: tuple[type, ...]) -> Callable[[Seq2Seq], int]:
    def compile_them(network: Seq2Seq) -> int:
        found = [m for m in network.modules() if isinstance(m, kinds)]
        for module in found:
            module.compile(dynamic=True)
        return len(found)
    return compile_them


def compile_loss_head(network: Seq2Seq) -> int:
    network.loss_head = torch.compile(projected_cross_entropy, dynamic=True)
    return 1


CANDIDATES = {
    "transformer layers": compile_modules((TransformerLayer, TransformerDecoderLayer)),
    "feed-forward blocks": compile_modules((FeedForward,)),
    "additive attention": compile_modules((AdditiveAttention,)),
    "loss head": compile_loss_head,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--warmup", type=int, default=5, help="eager steps first, and compiled steps before timing")
    parser.add_argument("--steps", type=int, default=24, help="measured pairs of steps per candidate")
    args = parser.parse_args()
    config = load_config(args.config, overrides=dict(parse_override(o) for o in args.overrides))
    torch.manual_seed(config.seed)
    data = load_training_data(config.data)
    eager = StepRunner(Seq2Seq(config.model, len(data.src_vocab), len(data.tgt_vocab)), data.examples,
                       config.training)
    lengths = [e.src_length for e in data.examples], [e.tgt_length for e in data.examples]
    plan = BucketBatchSampler(*lengths, batch_size=config.training.batch_size,
                              batch_tokens=config.training.batch_tokens, seed=config.seed).batches(0)
    batches = [eager.batch(indices) for indices in plan[: args.warmup + args.steps]]
    for batch in batches[: args.warmup]:
        eager.step(batch)
    print(f"| candidate ({args.config}, {torch.get_num_threads()} threads) | first two steps s | eager step s "
          "| compiled step s | eager / compiled | graphs |\n|---|---|---|---|---|---|")
    for name, compile_candidate in CANDIDATES.items():
        network = copy.deepcopy(eager.network)
        if not compile_candidate(network):
            continue  # this model has no such block
        torch._dynamo.reset()
        counters.clear()
        compiled = StepRunner(network, data.examples, config.training)
        start = time.perf_counter()
        for batch in batches[:2]:
            compiled.step(batch)
        first = time.perf_counter() - start
        for batch in batches[2: args.warmup]:
            compiled.step(batch)
        times = {"eager": [], "compiled": []}
        for batch in batches[args.warmup:]:
            for side, runner in (("eager", eager), ("compiled", compiled)):
                start = time.perf_counter()
                runner.step(batch)
                times[side].append(time.perf_counter() - start)
        eager_s, compiled_s = statistics.median(times["eager"]), statistics.median(times["compiled"])
        print(f"| {name} | {first:.1f} | {eager_s:.3f} | {compiled_s:.3f} | {eager_s / compiled_s:.3f} "
              f"| {counters['stats']['unique_graphs']} |", flush=True)


if __name__ == "__main__":
    main()
