#!/usr/bin/env python3
"""What batch invariance costs in decoding, and what it changes: this tree against another.

    git worktree add /tmp/before <commit before batch invariance>
    python scripts/batch_invariance_cost.py runs/multi30k_transformer_spm/best.pt runs/multi30k_gru/best.pt \\
        --baseline /tmp/before

For each checkpoint and beam size (greedy and beam 5), each code tree (this one, "invariant", and
``--baseline``, "before") decodes a split's sources (default: the test split, 1,000 Multi30k
sentences) at batch size ``--batch-size`` (128), timed, and once more at batch size 1.  Runs of
the two trees alternate, ``--repeats`` times, each in a fresh process of its own; the table gives
the median sentences/s of each and, per tree, how many outputs (texts) and scores changed between
batch size 1 and ``--batch-size``.  Run it alone on the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def worker(checkpoint: str, split: str, beam: int, batch_size: int, output: str) -> None:
    """Decode ``split`` at ``batch_size`` (timed); write texts, scores and seconds to ``output``."""
    from cronos.data import load_split
    from cronos.model import Cronos
    from cronos.search import Beam, decode

    model = Cronos.load(checkpoint, device="cpu")
    examples = load_split(split, model.config.data, model.codec).examples
    start = time.perf_counter()
    found = decode(model.network, examples, Beam(beam), model.config.decoding, batch_size)
    seconds = time.perf_counter() - start
    Path(output).write_text(json.dumps({"seconds": seconds, "texts": [model.codec.to_text(h[0].tokens) for h in found],
                                        "scores": [h[0].score for h in found]}))


def run(tree: Path, checkpoint: str, split: str, beam: int, batch_size: int) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as output:
        environment = {**os.environ, "PYTHONPATH": str(tree)}
        subprocess.run([sys.executable, __file__, "--worker", checkpoint, split, str(beam), str(batch_size),
                        output.name], check=True, env=environment, cwd=tree)
        return json.loads(Path(output.name).read_text())


def changed(one: dict, many: dict) -> tuple[int, int]:
    """How many texts, and how many scores, differ between two runs."""
    return (sum(a != b for a, b in zip(one["texts"], many["texts"])),
            sum(a != b for a, b in zip(one["scores"], many["scores"])))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        checkpoint, split, beam, batch_size, output = sys.argv[2:]
        worker(checkpoint, split, int(beam), int(batch_size), output)
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--baseline", type=Path, required=True, help="a checkout of cronos before batch invariance")
    parser.add_argument("--split", default="test")
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    trees = {"invariant": ROOT, "before": args.baseline.resolve()}
    print(f"| checkpoint | beam | sentences/s before | invariant | invariant / before | outputs changed, batch "
          f"size 1 vs {args.batch_size}: before | invariant | scores changed: before | invariant |")
    print("|---|---|---|---|---|---|---|---|---|")
    for checkpoint in args.checkpoints:
        for beam in args.beams:
            speed: dict[str, list[float]] = {name: [] for name in trees}
            last: dict[str, dict] = {}
            for _ in range(args.repeats):
                for name, tree in trees.items():
                    last[name] = run(tree, checkpoint, args.split, beam, args.batch_size)
                    speed[name].append(len(last[name]["texts"]) / last[name]["seconds"])
            counts = {name: changed(run(tree, checkpoint, args.split, beam, 1), last[name])
                      for name, tree in trees.items()}
            before, after = (statistics.median(speed[name]) for name in ("before", "invariant"))
            print(f"| {Path(checkpoint).parent.name}/{Path(checkpoint).name} | {beam} | {before:.1f} | {after:.1f} | "
                  f"{after / before:.3f} | {counts['before'][0]} | {counts['invariant'][0]} | {counts['before'][1]} | "
                  f"{counts['invariant'][1]} |", flush=True)


if __name__ == "__main__":
    main()
