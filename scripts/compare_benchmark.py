#!/usr/bin/env python3
"""Benchmark two versions of cronos in one run: a base commit (checked out beside this tree) and
this working tree, alternating, one process at a time, each measured by its own
``scripts/benchmark.py``; prints the medians (and ranges) of each side.

    python scripts/compare_benchmark.py c232eef configs/multi30k_gru.yaml --rounds 3 \\
        -- --set data.root=../shared/data/multi30k --steps 20 --mask-pairs 2 --decode 300

Arguments after ``--`` go to ``benchmark.py``.  Run it alone on the machine: two torch processes
on two cores slow each other down many times over.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MEASURES = (("train_target_tokens_per_s", "training target tokens/s"),
            ("train_sentences_per_s", "training sentences/s"),
            ("model_flops_per_step", "model FLOP per step"),
            ("decode_beam1_sentences_per_s", "decoding sentences/s, greedy"),
            ("decode_beam5_sentences_per_s", "decoding sentences/s, beam 5"),
            ("matmul_peak_flops", "fp32 matmul peak FLOP/s"))


# Runs a benchmark script on the package of its own checkout: an editable install of cronos puts
# an import hook ahead of sys.path (PYTHONPATH would not win), so the hook goes first, and the
# package imported is checked to be the checkout's before the script runs.
BOOTSTRAP = """
import runpy, sys
from pathlib import Path
code, script = Path(sys.argv[1]), sys.argv[2]
sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
sys.path.insert(0, str(code))
import cronos
if Path(cronos.__file__).resolve().parent != (code / "cronos").resolve():
    sys.exit(f"benchmarking {code} imported the cronos at {cronos.__file__}")
sys.argv = [script, *sys.argv[3:]]
runpy.run_path(script, run_name="__main__")
"""


def run_once(code: Path, config: str, extra: list[str], out: Path) -> dict:
    """``code``'s benchmark on ``code``'s package, from this tree's folder; a config given by a
    relative path is ``code``'s own copy of it (the one its version of cronos reads)."""
    script = str(code / "scripts" / "benchmark.py")
    own = code / config
    config = str(own) if not Path(config).is_absolute() and own.exists() else config
    command = [sys.executable, "-c", BOOTSTRAP, str(code), script, config, *extra, "--json", str(out)]
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text(encoding="utf-8"))


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.4g} ({min(values):.4g} - {max(values):.4g})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", help="the commit to compare with (any git revision)")
    parser.add_argument("config")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each side, alternating")
    parser.add_argument("--json", type=Path, default=None, help="also write every run's results here")
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args, extra = parser.parse_args(argv[:split]), argv[split + 1:]  # after --: benchmark.py's own arguments
    results: dict[str, list[dict]] = {"base": [], "this tree": []}
    with tempfile.TemporaryDirectory(prefix="cronos-base-") as scratch:
        base = Path(scratch) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(base), args.base], cwd=ROOT, check=True)
        try:
            for round_ in range(args.rounds):
                for side, code in (("base", base), ("this tree", ROOT)):
                    results[side].append(run_once(code, args.config, extra, Path(scratch) / f"{side}{round_}.json"))
                    print(f"round {round_ + 1}, {side}: {results[side][-1]['train_target_tokens_per_s']:.0f} "
                          "target tokens/s", file=sys.stderr)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, check=False)
    print(f"| measure: median (range) of {args.rounds} runs each | {args.base} | this tree |\n|---|---|---|")
    for key, name in MEASURES:
        if all(key in r for side in results.values() for r in side):
            print(f"| {name} | {summary([r[key] for r in results['base']])} | "
                  f"{summary([r[key] for r in results['this tree']])} |")
    if args.json:
        args.json.write_text(json.dumps({"base": args.base, **results}, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
