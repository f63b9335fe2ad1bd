#!/usr/bin/env python3
"""The largest P1 gap in half precision: each tiny test model of tests/test_padding_inert.py (every
encoder x decoder combination, float32 weights) runs a fixed three-example batch with three extra pad
columns under CPU autocast in bfloat16 and in float16, and each example alone; prints the largest
absolute difference of their log-probs per dtype (float16 skips LSTMs: oneDNN has none on the CPU).
This is the "largest gap on the fixed batch" docs/training.md gives beside the tests' tolerances.

    python scripts/half_precision_gap.py
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_padding_inert import COMBINATIONS, make_batch, tiny_model  # noqa: E402

PAIRS = [([4, 5, 6, 7, 8], [9, 10]), ([11], [12, 13, 14, 15]), ([4, 6, 8], [5])]


def log_probs(model, batch, dtype: torch.dtype) -> torch.Tensor:
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype):
        logits, _ = model(batch.src, batch.src_lengths, batch.tgt_in)
    return torch.log_softmax(logits.float(), dim=-1)


def main() -> None:
    for dtype in (torch.bfloat16, torch.float16):
        largest = 0.0
        for encoder, decoder in COMBINATIONS:
            if encoder == "lstm" and dtype == torch.float16:
                continue
            model = tiny_model(encoder, decoder, torch.float32)
            batched = log_probs(model, make_batch(PAIRS, 3), dtype)
            for i, (source, target) in enumerate(PAIRS):
                alone = log_probs(model, make_batch([(source, target)]), dtype)[0]
                largest = max(largest, (batched[i, : len(target) + 1] - alone).abs().max().item())
        print(f"{dtype}: largest P1 gap {largest:.2e}")


if __name__ == "__main__":
    main()
