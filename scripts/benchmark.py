#!/usr/bin/env python3
"""Benchmark cronos on a config: training throughput and FLOP/s against the machine's measured
matmul peak, padded share (bucketed vs random batching), the cost of the mask (masked and unmasked
steps interleaved), decoding throughput (greedy and beam 5), and peak resident memory.

    python scripts/benchmark.py configs/multi30k_gru.yaml --set data.root=../shared/data/multi30k
    python scripts/benchmark.py configs/dates.yaml --steps 20 --json runs/bench_dates.json

Prints a markdown table and writes JSON (``--json``). ``--profile`` adds torch.profiler's top ops
for the training step.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from cronos.config import TrainingConfig, load_config, parse_override
from cronos.data import BucketBatchSampler, RandomBatchSampler, collate, load_eval_split, load_training_data, padded_share
from cronos.network import Seq2Seq
from cronos.search import decode_examples
from cronos.training import build_optimizer


def matmul_peak(size: int = 2048, repeats: int = 20) -> float:
    """Best fp32 GEMM FLOP/s over ``repeats`` square products, with torch's current threads."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best


class StepRunner:
    """One optimiser step on a batch, through the network's forward as training takes it;
    ``flops`` counts a step's forward + backward FLOPs once."""

    def __init__(self, network: Seq2Seq, examples, training: TrainingConfig):
        self.network, self.examples = network, examples
        self.optimizer = build_optimizer(network, training)  # what fit uses
        self.clip, self.label_smoothing = training.clip_grad_norm, training.label_smoothing

    def batch(self, indices):
        return collate([self.examples[i] for i in indices])

    def loss(self, batch) -> torch.Tensor:
        total, tokens = self.network(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out,
                                     label_smoothing=self.label_smoothing)
        return total / tokens

    def step(self, batch) -> None:
        self.network.train()
        self.optimizer.zero_grad(set_to_none=True)
        self.loss(batch).backward()
        if self.clip is not None:
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.clip)
        self.optimizer.step()

    def flops(self, batch) -> int:
        self.network.train()
        self.optimizer.zero_grad(set_to_none=True)
        with FlopCounterMode(display=False) as counter:
            self.loss(batch).backward()
        self.optimizer.zero_grad(set_to_none=True)
        return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured steps first")
    parser.add_argument("--steps", type=int, default=30, help="measured training steps")
    parser.add_argument("--mask-pairs", type=int, default=15, help="interleaved masked/unmasked step pairs")
    parser.add_argument("--decode", type=int, default=500, help="test sentences to decode (0: skip)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--profile", action="store_true", help="print torch.profiler's top ops of a step")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = load_config(args.config, overrides=dict(parse_override(o) for o in args.overrides))
    torch.manual_seed(config.seed)
    data = load_training_data(config.data)
    network = Seq2Seq(config.model, len(data.src_vocab), len(data.tgt_vocab))
    src = [e.src_length for e in data.examples]
    tgt = [e.tgt_length for e in data.examples]
    batching = dict(batch_size=config.training.batch_size, batch_tokens=config.training.batch_tokens, seed=config.seed)
    bucketed = BucketBatchSampler(src, tgt, **batching).batches(0)
    random_batches = RandomBatchSampler(src, tgt, **batching).batches(0)
    results = {
        "config": args.config, "overrides": args.overrides, "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "parameters": sum(p.numel() for p in network.parameters()),
        "padded_share_bucketed": padded_share(bucketed, src, tgt),
        "padded_share_random": padded_share(random_batches, src, tgt),
        "matmul_peak_flops": matmul_peak(),
    }

    runner = StepRunner(network, data.examples, config.training)
    needed = args.warmup + args.steps + 2 * args.mask_pairs
    plan = (bucketed * (needed // len(bucketed) + 1))[:needed]
    for indices in plan[: args.warmup]:
        runner.step(runner.batch(indices))
    measured = [runner.batch(indices) for indices in plan[args.warmup: args.warmup + args.steps]]
    start = time.perf_counter()
    for batch in measured:
        runner.step(batch)
    seconds = time.perf_counter() - start
    flops = sum(runner.flops(batch) for batch in measured)
    target_tokens = sum(b.num_target_tokens for b in measured)
    source_tokens = sum(int(b.src_lengths.sum()) for b in measured)
    results.update(
        train_steps=args.steps, train_seconds=seconds,
        train_target_tokens_per_s=target_tokens / seconds, train_source_tokens_per_s=source_tokens / seconds,
        train_sentences_per_s=sum(b.size for b in measured) / seconds,
        model_flops_per_step=flops / args.steps, achieved_flops=flops / seconds,
    )
    results["share_of_matmul_peak"] = results["achieved_flops"] / results["matmul_peak_flops"]

    # the mask's cost: masked and unmasked steps alternate on the same batches
    masked_times, unmasked_times = [], []
    pairs = plan[args.warmup + args.steps:]
    for i in range(args.mask_pairs):
        for mask_on, times in ((True, masked_times), (False, unmasked_times)):
            batch = runner.batch(pairs[2 * i])
            network.mask_padding = mask_on
            start = time.perf_counter()
            runner.step(batch)
            times.append(time.perf_counter() - start)
    network.mask_padding = config.model.mask_padding
    results.update(masked_step_median_s=statistics.median(masked_times),
                   unmasked_step_median_s=statistics.median(unmasked_times))
    results["mask_overhead_ratio"] = results["masked_step_median_s"] / results["unmasked_step_median_s"]

    if args.decode and config.data.test is not None:
        split = load_eval_split(config.data.test, config.data, data.src_vocab, data.tgt_vocab)
        examples = split.examples[: args.decode]
        for beam in (1, 5):
            start = time.perf_counter()
            decode_examples(network, examples, config.evaluation, beam)
            results[f"decode_beam{beam}_sentences_per_s"] = len(examples) / (time.perf_counter() - start)
    results["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            for batch in measured[:5]:
                runner.step(batch)
        table = profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)
        print(table)
        results["profile_top_ops"] = table

    print_table(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


def print_table(r: dict) -> None:
    rows = [
        ("training target tokens/s", f"{r['train_target_tokens_per_s']:.0f}"),
        ("training source tokens/s", f"{r['train_source_tokens_per_s']:.0f}"),
        ("training sentences/s", f"{r['train_sentences_per_s']:.1f}"),
        ("model GFLOP per step (fwd+bwd)", f"{r['model_flops_per_step'] / 1e9:.2f}"),
        ("achieved GFLOP/s", f"{r['achieved_flops'] / 1e9:.1f}"),
        ("fp32 matmul peak GFLOP/s (measured)", f"{r['matmul_peak_flops'] / 1e9:.1f}"),
        ("share of matmul peak", f"{r['share_of_matmul_peak']:.1%}"),
        ("padded share, bucketed", f"{r['padded_share_bucketed']:.2%}"),
        ("padded share, random batching", f"{r['padded_share_random']:.2%}"),
        ("masked / unmasked step time", f"{r['mask_overhead_ratio']:.3f}"),
    ]
    for beam in (1, 5):
        if f"decode_beam{beam}_sentences_per_s" in r:
            rows.append((f"decoding sentences/s, beam {beam}", f"{r[f'decode_beam{beam}_sentences_per_s']:.1f}"))
    rows.append(("peak resident memory MiB", f"{r['peak_rss_mib']:.0f}"))
    print(f"| measure ({r['config']}, {r['threads']} threads, torch {r['torch']}) | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
