#!/usr/bin/env python3
"""Measure how inert padding is: the largest P1 (log-prob) and P6 (gradient) differences between an
example run inside a padded batch with random batch mates and the same example run alone, over every
encoder x decoder/attention combination, in float64 and float32.

    python scripts/padding_report.py --batches 50
    python scripts/padding_report.py --device cuda     # the same on a GPU
"""
from __future__ import annotations

import argparse
import random

import torch

from cronos.config import ConfigError, load_config
from cronos.data import Vocabulary, collate
from cronos.data.preprocess import Example
from cronos.device import resolve_device
from cronos.modules.network import Seq2Seq

VOCAB = Vocabulary(["<pad>", "<unk>", "<bos>", "<eos>"] + [chr(c) for c in range(ord("a"), ord("a") + 20)])
TRANSFORMER = {"type": "transformer", "layers": 2, "heads": 4, "ff_size": 64}
ENCODERS = {"rnn-gru": {"type": "rnn", "cell": "gru"}, "rnn-lstm": {"type": "rnn", "cell": "lstm"},
            "transformer": {**TRANSFORMER, "hidden_size": 32}}
DECODERS = {f"rnn-{a}": {"type": "rnn", "attention": a} for a in ("additive", "dot", "general")}
DECODERS["rnn-multihead"] = {"type": "rnn", "attention": "multihead", "heads": 4}
DECODERS["transformer"] = TRANSFORMER


def build(encoder: str, decoder: str, dtype: torch.dtype, device: torch.device) -> Seq2Seq:
    enc = {"hidden_size": 16, "dropout": 0.0, **ENCODERS[encoder]}
    dec = {"hidden_size": 32, "dropout": 0.0, **DECODERS[decoder]}
    if enc["type"] == dec["type"] == "rnn":
        dec["cell"] = enc["cell"]
    torch.manual_seed(0)
    config = load_config({"model": {"embedding_size": 16, "encoder": enc, "decoder": dec}})
    # training mode with no dropout computes what eval mode does, and cuDNN's RNN backward needs it
    return Seq2Seq(config.model, len(VOCAB), len(VOCAB)).to(device=device, dtype=dtype).train()


def batch_of(pairs, extra: int, device: torch.device):
    batch = collate([Example(i, tuple(s), tuple(t), len(s), len(t) + 1) for i, (s, t) in enumerate(pairs)])
    pad = lambda x: torch.nn.functional.pad(x, (0, extra))  # noqa: E731
    padded = batch.__class__(pad(batch.src), batch.src_lengths, pad(batch.tgt_in), pad(batch.tgt_out),
                             batch.tgt_lengths, batch.indices)
    return padded.to(device)


def grads(model: Seq2Seq, batch) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss, _ = model(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out)  # the training step's summed loss
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def gaps(model: Seq2Seq, pairs, extra: int) -> tuple[float, float]:
    device = model.device
    batch = batch_of(pairs, extra, device)
    with torch.no_grad():
        batched = torch.log_softmax(model(batch.src, batch.src_lengths, batch.tgt_in)[0], -1)
        p1 = 0.0
        for i, pair in enumerate(pairs):
            alone_batch = batch_of([pair], 0, device)
            alone = torch.log_softmax(model(alone_batch.src, alone_batch.src_lengths, alone_batch.tgt_in)[0], -1)
            p1 = max(p1, (batched[i, : len(pair[1]) + 1] - alone[0]).abs().max().item())
    together = grads(model, batch)
    singles = [grads(model, batch_of([pair], 0, device)) for pair in pairs]
    p6 = max((g - sum(s[n] for s in singles if n in s)).abs().max().item() for n, g in together.items())
    return p1, p6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N [cpu]")
    args = parser.parse_args()
    try:
        device = resolve_device(args.device, "--device", "")
    except ConfigError as error:
        parser.error(str(error))
    rng = random.Random(args.seed)
    draws = []
    for _ in range(args.batches):
        pairs = [([rng.randrange(4, len(VOCAB)) for _ in range(rng.randint(1, 20))],
                  [rng.randrange(4, len(VOCAB)) for _ in range(rng.randint(1, 15))]) for _ in range(rng.randint(2, 8))]
        draws.append((pairs, rng.randint(0, 5)))
    print("| encoder | decoder | P1 fp64 | P1 fp32 | P6 fp64 | P6 fp32 |\n|---|---|---|---|---|---|")
    worst = {}
    for encoder in ENCODERS:
        for decoder in DECODERS:
            row = []
            for dtype in (torch.float64, torch.float32):
                model = build(encoder, decoder, dtype, device)
                p1, p6 = (max(values) for values in zip(*(gaps(model, pairs, extra) for pairs, extra in draws)))
                row.append((p1, p6))
                for name, value in ((f"P1 {dtype}", p1), (f"P6 {dtype}", p6)):
                    worst[name] = max(worst.get(name, 0.0), value)
            (p1_64, p6_64), (p1_32, p6_32) = row
            print(f"| {encoder} | {decoder} | {p1_64:.1e} | {p1_32:.1e} | {p6_64:.1e} | {p6_32:.1e} |")
    print("largest:", ", ".join(f"{k} {v:.2e}" for k, v in worst.items()))


if __name__ == "__main__":
    main()
