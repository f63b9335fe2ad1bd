#!/usr/bin/env python3
"""Do explanations point at the year?  On a trained dates model (character tokens), for the first N
test dates whose source spells the year's four digits once: how often each of the output's four
year digits gets its largest attribution (in magnitude) from the source's year, per method, how
often from the very digit it copies, and how well the methods agree (Spearman's rank correlation
of the year digits' rows, averaged).  Outputs are forced to the references.  Also the time per
example of each method.

    python scripts/attribution_study.py runs/dates/best.pt --examples 100 --markdown docs/attribution_study.md

Run it alone on the machine (the times are measured).
"""
from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import torch

from cronos.data import load_split
from cronos.explain import EXPLAIN_METHODS
from cronos.model import Cronos


def year_positions(source: str, year: str) -> list[int] | None:
    """The character positions of ``year`` in ``source`` when it occurs exactly once."""
    start = source.find(year)
    if start < 0 or source.find(year, start + 1) >= 0:
        return None
    return list(range(start, start + len(year)))


def ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks with ties averaged (Spearman's correlation is Pearson's on these)."""
    order = values.argsort()
    ranked = torch.empty_like(values, dtype=torch.float64)
    ranked[order] = torch.arange(len(values), dtype=torch.float64)
    for value in values.unique():
        tied = values == value
        ranked[tied] = ranked[tied].mean()
    return ranked


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / denominator if denominator else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--examples", type=int, default=100)
    parser.add_argument("--steps", type=int, default=50, help="integrated gradients' path points [50]")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the tables here")
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = Cronos.load(args.checkpoint, device="cpu")
    split = load_split("test", model.config.data, model.codec)
    chosen = [(s, t, p) for s, t in zip(split.sources, split.targets)
              if (p := year_positions(s, t[:4])) is not None][: args.examples]
    sources, targets, years = map(list, zip(*chosen))
    rows: dict[str, list[torch.Tensor]] = {}
    lines = [f"{len(chosen)} test dates of `{args.checkpoint}` (first of the test split whose source spells the "
             f"year once), outputs forced to the references; integrated gradients with {args.steps} steps.", "",
             "| method | year digit's largest from the source's year | from the digit it copies | "
             "seconds per example |", "|---|---|---|---|"]
    for method in EXPLAIN_METHODS:
        started = time.perf_counter()
        explanations = model.explain(sources, targets, method=method, steps=args.steps)
        seconds = (time.perf_counter() - started) / len(chosen)
        in_year = copies = 0
        rows[method] = []
        for explanation, positions in zip(explanations, years):
            matrix = explanation.attention if method == "attention" else explanation.attribution
            for digit in range(4):  # output characters 0-3: the year
                largest = int(matrix[digit].abs().argmax())
                in_year += largest in positions
                copies += largest == positions[digit]
                rows[method].append(matrix[digit].abs().double())
        total = 4 * len(chosen)
        lines.append(f"| {method} | {in_year / total:.1%} | {copies / total:.1%} | {seconds:.4f} |")
    lines += ["", "Agreement: Spearman's rank correlation between the methods' year-digit rows (magnitudes), mean "
              "over rows.", "", "| | " + " | ".join(EXPLAIN_METHODS) + " |", "|---" * (len(EXPLAIN_METHODS) + 1) + "|"]
    agreement = {}
    for a, b in itertools.combinations(EXPLAIN_METHODS, 2):
        values = [spearman(x, y) for x, y in zip(rows[a], rows[b])]
        agreement[a, b] = agreement[b, a] = sum(values) / len(values)
    for a in EXPLAIN_METHODS:
        lines.append(f"| {a} | " + " | ".join("1" if a == b else f"{agreement[a, b]:.2f}" for b in EXPLAIN_METHODS)
                     + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        args.markdown.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
