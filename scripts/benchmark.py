#!/usr/bin/env python3
"""Benchmark cronos on a config: training throughput and FLOP/s against the machine's measured
matmul peak, padded share (bucketed vs random batching), the cost of the mask (masked and unmasked
steps interleaved), decoding throughput (greedy and beam 5), peak resident memory, and on a GPU
the memory a training step takes.
``--compile`` adds the same measures for a copy with ``compile_blocks()`` (what
``training.compile`` does), its steps alternating with the eager network's on the same batches.

    python scripts/benchmark.py configs/multi30k_gru.yaml --set data.root=../shared/data/multi30k
    python scripts/benchmark.py configs/dates.yaml --steps 20 --json runs/bench_dates.json
    python scripts/benchmark.py configs/multi30k_transformer.yaml --set data.root=../shared/data/multi30k --compile

Prints a markdown table and writes JSON (``--json``). ``--profile`` adds torch.profiler's top ops
for the training step.
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import resource
import statistics
import time
from pathlib import Path

import torch

import cronos
from torch.utils.flop_counter import FlopCounterMode

from cronos.config import TrainingConfig, load_config, parse_override
from cronos.data import (BucketBatchSampler, RandomBatchSampler, TextCodec, collate, load_split, load_training_data,
                         padded_share)
from cronos.device import resolve_device
from cronos.modules.network import Seq2Seq
from cronos.precision import MixedPrecision
from cronos.decoding.search import Beam, decode
from cronos.training.trainer import build_optimizer


def matmul_peak(device: torch.device, size: int = 2048, repeats: int = 20) -> float:
    """Best fp32 GEMM FLOP/s over ``repeats`` square products, with torch's current threads (on a
    GPU as torch's defaults compute float32: without TF32)."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best


class StepRunner:
    """One optimiser step on a batch, through the network's forward as training takes it (in
    ``training.precision``); ``flops`` counts a step's forward + backward FLOPs once."""

    def __init__(self, network: Seq2Seq, examples, training: TrainingConfig):
        self.network, self.examples, self.device = network, examples, network.device
        self.optimizer = build_optimizer(network, training)  # what fit uses
        self.precision = MixedPrecision(training.precision, self.device)
        self.clip, self.label_smoothing = training.clip_grad_norm, training.label_smoothing

    def batch(self, indices):
        return collate([self.examples[i] for i in indices]).to(self.device)

    def loss(self, batch) -> torch.Tensor:
        with self.precision.autocast():
            total, tokens = self.network(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out,
                                         label_smoothing=self.label_smoothing)
        return total / tokens

    def step(self, batch) -> None:
        self.network.train()
        self.optimizer.zero_grad(set_to_none=True)
        self.precision.backward(self.loss(batch))
        self.precision.unscale(self.optimizer)
        if self.clip is not None:
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.clip)
        self.precision.step(self.optimizer)
        synchronize(self.device)

    def flops(self, batch) -> int:
        self.network.train()
        self.optimizer.zero_grad(set_to_none=True)
        with FlopCounterMode(display=False) as counter:
            self.loss(batch).backward()
        self.optimizer.zero_grad(set_to_none=True)
        return counter.get_total_flops()


def step_memory(runner: StepRunner, batches: list) -> float:
    """The most GPU memory (MiB) a step of ``batches`` allocates above what stays allocated between
    steps (weights, optimiser state): its activations and gradients."""
    resident = torch.cuda.memory_allocated(runner.device)
    torch.cuda.reset_peak_memory_stats(runner.device)
    for batch in batches:
        runner.step(batch)
    return (torch.cuda.max_memory_allocated(runner.device) - resident) / 2 ** 20


def synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work, so that the clock measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
    parser.add_argument("--compile", action="store_true",
                        help="also measure a compiled copy (compile_blocks), alternating with the eager network")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = load_config(args.config, overrides=dict(parse_override(o) for o in args.overrides))
    torch.manual_seed(config.seed)
    data = load_training_data(config.data, seed=config.seed)
    device = resolve_device(config.training.device)
    network = Seq2Seq(config.model, len(data.src_vocab), len(data.tgt_vocab)).to(device)
    src = [e.src_length for e in data.examples]
    tgt = [e.tgt_length for e in data.examples]
    batching = dict(batch_size=config.training.batch_size, batch_tokens=config.training.batch_tokens, seed=config.seed)
    bucketed = BucketBatchSampler(src, tgt, **batching).batches(0)
    random_batches = RandomBatchSampler(src, tgt, **batching).batches(0)
    results = {
        "config": args.config, "overrides": args.overrides, "machine": platform.processor() or platform.machine(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "precision": config.training.precision,
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "package": str(Path(cronos.__file__).resolve().parent),  # which checkout's cronos was measured
        "parameters": sum(p.numel() for p in network.parameters()),
        "padded_share_bucketed": padded_share(bucketed, src, tgt),
        "padded_share_random": padded_share(random_batches, src, tgt),
        "matmul_peak_flops": matmul_peak(device),
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

    pairs = [runner.batch(indices) for indices in plan[args.warmup + args.steps:]]
    results.update(mask_overhead(runner, pairs))
    examples = []
    if args.decode and config.data.test is not None:
        codec = TextCodec.for_data(config.data, data.src_vocab, data.tgt_vocab, data.subwords)
        split = load_split("test", config.data, codec)
        examples = split.examples[: args.decode]
        results.update(decoding_speed(network, examples, config))
    if device.type == "cuda":
        results["step_gpu_memory_mib"] = step_memory(runner, measured)
    if args.compile:
        results["compiled"] = measure_compiled(runner, data.examples, config, measured, pairs, examples)
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


def mask_overhead(runner: StepRunner, batches: list) -> dict:
    """The mask's cost: masked and unmasked steps alternate, each pair on the same batch."""
    network, times = runner.network, {True: [], False: []}
    original = network.mask_padding
    for batch in batches[::2]:
        for mask_on in (True, False):
            network.mask_padding = mask_on
            start = time.perf_counter()
            runner.step(batch)
            times[mask_on].append(time.perf_counter() - start)
    network.mask_padding = original
    masked, unmasked = statistics.median(times[True]), statistics.median(times[False])
    return {"masked_step_median_s": masked, "unmasked_step_median_s": unmasked, "mask_overhead_ratio": masked / unmasked}


def decoding_speed(network: Seq2Seq, examples: list, config) -> dict:
    results = {}
    for beam in (1, 5):
        start = time.perf_counter()
        decode(network, examples, Beam(beam), config.decoding)
        results[f"decode_beam{beam}_sentences_per_s"] = len(examples) / (time.perf_counter() - start)
    return results


def measure_compiled(runner: StepRunner, training_examples, config, measured: list, pairs: list,
                     examples: list) -> dict:
    """A copy of the network with ``compile_blocks()``: the first steps (compiling) timed apart, then
    compiled and eager steps alternating on the same batches; the mask's cost and decoding, compiled."""
    compiled_network = copy.deepcopy(runner.network)
    compiled_network.compile_blocks()
    compiled = StepRunner(compiled_network, training_examples, config.training)
    start = time.perf_counter()
    for batch in measured[:2]:  # compiles (a second time for the first new shape: 0/1 specialisation aside)
        compiled.step(batch)
    results = {"first_two_steps_s": time.perf_counter() - start}
    if compiled.device.type == "cuda":
        results["step_gpu_memory_mib"] = step_memory(compiled, measured)
    times = {"eager": [], "compiled": []}
    for batch in measured:
        for name, stepper in (("eager", runner), ("compiled", compiled)):
            start = time.perf_counter()
            stepper.step(batch)
            times[name].append(time.perf_counter() - start)
    seconds = sum(times["compiled"])
    results.update(
        eager_step_median_s=statistics.median(times["eager"]), step_median_s=statistics.median(times["compiled"]),
        train_target_tokens_per_s=sum(b.num_target_tokens for b in measured) / seconds,
        eager_train_target_tokens_per_s=sum(b.num_target_tokens for b in measured) / sum(times["eager"]),
        achieved_flops=sum(runner.flops(batch) for batch in measured) / seconds)
    results["speedup"] = results["eager_step_median_s"] / results["step_median_s"]
    compiled_network.mask_padding = False  # the unmasked graphs compile before they are timed
    compiled.step(pairs[1])
    compiled_network.mask_padding = True
    results.update(mask_overhead(compiled, pairs))
    if examples:
        decoding_speed(compiled_network, examples[:50], config)  # compiles the decoding shapes
        results.update(decoding_speed(compiled_network, examples, config))
    return results


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
    if "step_gpu_memory_mib" in r:
        rows.append(("GPU memory of a step MiB (peak above resident)", f"{r['step_gpu_memory_mib']:.0f}"))
    if "compiled" in r:
        c = r["compiled"]
        rows += [("compiled: eager / compiled step time (alternating, medians)", f"{c['speedup']:.3f}"),
                 ("compiled: target tokens/s (eager in the same run)",
                  f"{c['train_target_tokens_per_s']:.0f} ({c['eager_train_target_tokens_per_s']:.0f})"),
                 ("compiled: first two steps s (compiling)", f"{c['first_two_steps_s']:.1f}"),
                 ("compiled: share of matmul peak", f"{c['achieved_flops'] / r['matmul_peak_flops']:.1%}"),
                 ("compiled: masked / unmasked step time", f"{c['mask_overhead_ratio']:.3f}")]
        if "step_gpu_memory_mib" in c:
            rows.append(("compiled: GPU memory of a step MiB", f"{c['step_gpu_memory_mib']:.0f}"))
        for beam in (1, 5):
            if f"decode_beam{beam}_sentences_per_s" in c:
                rows.append((f"compiled: decoding sentences/s, beam {beam}", f"{c[f'decode_beam{beam}_sentences_per_s']:.1f}"))
    where = r["device"] if r["device"] != "cpu" else f"{r['threads']} threads"
    print(f"| measure ({r['config']}, {where}, {r['precision']}, torch {r['torch']}) | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
