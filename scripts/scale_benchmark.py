#!/usr/bin/env python3
"""Corpora of any size: synthetic corpora with Multi30k's length distribution (its pairs, the words
of each copy shuffled), prepared and trained on, with wall time and peak memory measured.

    python scripts/scale_benchmark.py --pairs 1000000 10000000 --dir /tmp/cronos-scale \\
        --multi30k ../shared/data/multi30k --base cd26015 --out scale.json
    python scripts/scale_benchmark.py --plot scale.json --png docs/scale_rss.png   # the README's picture

For each size and config (`multi30k_transformer.yaml`, words; `multi30k_transformer_spm.yaml`,
SentencePiece) it measures `cronos prepare` into a prepared folder with 1 and 2 workers (wall,
pairs/s, peak RSS of the process and its workers together), and `cronos train` for
`--steps` steps on the prepared folder, in memory and with `torchrun --nproc_per_node 2` on the
prepared folder (peak RSS, and of it the anonymous memory, that is without the mapped files' pages;
seconds from the command to the first step, steps/s after it), and the seconds to collate a batch
from the prepared folder (what a step waits for without loader workers). `--base REV` also
measures `cronos train` of another commit (the memory before prepared splits: 0.1.0 is
`cd26015`). Peak RSS is polled from /proc every 0.1 s (the process tree).
The corpora are deleted at the end unless `--keep`.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {"words": "configs/multi30k_transformer.yaml", "sentencepiece": "configs/multi30k_transformer_spm.yaml"}
STEP = re.compile(r"^step (\d+)/")  # training's log line of each step (training.log_every: 1)


def write_corpus(multi30k: Path, pairs: int, folder: Path, seed: int = 0) -> dict[str, str]:
    """``pairs`` pairs as parallel files: Multi30k's training pairs over and over, each copy after
    the first with the words of every sentence shuffled (same lengths, new sentences)."""
    folder.mkdir(parents=True, exist_ok=True)
    src, tgt = folder / f"train{pairs}.de", folder / f"train{pairs}.en"
    if src.exists() and tgt.exists():
        return {"src": str(src), "tgt": str(tgt)}
    sources = (multi30k / "train.de").read_text(encoding="utf-8").splitlines()
    targets = (multi30k / "train.en").read_text(encoding="utf-8").splitlines()
    generator = random.Random(seed)
    with open(src, "w", encoding="utf-8") as out_src, open(tgt, "w", encoding="utf-8") as out_tgt:
        for number in range(pairs):
            i = number % len(sources)
            source, target = sources[i], targets[i]
            if number >= len(sources):
                source, target = _shuffled(source, generator), _shuffled(target, generator)
            out_src.write(source + "\n")
            out_tgt.write(target + "\n")
    return {"src": str(src), "tgt": str(tgt)}


def _shuffled(text: str, generator: random.Random) -> str:
    words = text.split()
    generator.shuffle(words)
    return " ".join(words)


def measure(command: list[str], cwd: Path) -> dict:
    """Run ``command``; its wall time, the peak RSS of it and its children together (GiB), and when
    it logs training steps, the seconds until its first and the steps per second after it."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak, peak_anon, steps, lines = 0, 0, {}, []
    os.set_blocking(process.stdout.fileno(), False)
    while process.poll() is None:
        rss, anon = _tree_rss(process.pid)
        peak, peak_anon = max(peak, rss), max(peak_anon, anon)
        for line in _read_available(process):
            lines.append(line)
            if found := STEP.search(line):
                steps[int(found.group(1))] = time.perf_counter() - started
        time.sleep(0.1)
    lines += _read_available(process)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n" + "".join(lines[-30:]))
    result = {"wall_s": wall, "peak_rss_gib": peak / 2 ** 30, "peak_anonymous_gib": peak_anon / 2 ** 30,
              "log": "".join(lines[-8:])}
    if len(steps) >= 2:
        last = max(steps)
        result |= {"first_step_s": steps[min(steps)], "steps_per_s": (last - min(steps)) / (steps[last] - steps[min(steps)])}
    return result


def _read_available(process: subprocess.Popen) -> list[str]:
    try:
        data = process.stdout.read()
    except (BlockingIOError, TypeError):
        return []
    return data.splitlines(keepends=True) if data else []


def _tree_rss(pid: int) -> tuple[int, int]:
    """Resident bytes of ``pid`` and all its descendants, and of those the anonymous ones (the
    processes' own memory; the rest are pages of mapped files, such as a prepared split's arrays,
    which the page cache holds once for every process and can drop)."""
    total, anonymous, todo = 0, 0, [pid]
    while todo:
        current = todo.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024
            anonymous += int(re.search(r"RssAnon:\s+(\d+) kB", status).group(1)) * 1024
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, AttributeError):
            continue
    return total, anonymous


def cronos(*args: str) -> list[str]:
    return [sys.executable, "-m", "cronos", *args]


# ``python -m cronos`` of another checkout (an editable install's import hook would win over sys.path)
OTHER = """
import runpy, sys
sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
sys.path.insert(0, sys.argv[1])
sys.argv = ["cronos", *sys.argv[2:]]
runpy.run_module("cronos", run_name="__main__")
"""


def base_train(base: Path, config_name: str, data: list[str], args: argparse.Namespace) -> dict:
    """``cronos train`` of the checkout ``base`` (its own copy of the config), the data in memory."""
    return train(str(base / CONFIGS[config_name]), data, args, [sys.executable, "-c", OTHER, str(base)])


def run(args: argparse.Namespace) -> dict:
    results: dict = {"machine": os.cpu_count(), "runs": []}
    for pairs in args.pairs:
        corpus = write_corpus(args.multi30k, pairs, args.dir)
        for name in args.configs:
            config = str(ROOT / CONFIGS[name])
            data = [f"--set=data.root={args.multi30k}", f"--set=data.train.src={corpus['src']}",
                    f"--set=data.train.tgt={corpus['tgt']}"]
            for workers in args.workers:
                folder = args.dir / f"prepared-{name}-{pairs}-{workers}"
                shutil.rmtree(folder, ignore_errors=True)
                found = measure(cronos("prepare", config, *data, f"--set=data.prepared={folder}",
                                       "--workers", str(workers)), ROOT)
                results["runs"].append({"what": "prepare", "pairs": pairs, "config": name, "workers": workers,
                                        **found, "pairs_per_s": pairs / found["wall_s"]})
                print(json.dumps(results["runs"][-1]), file=sys.stderr)
            prepared = [f"--set=data.prepared={args.dir / f'prepared-{name}-{pairs}-{args.workers[-1]}'}"]
            for where in [w for w in ("prepared", "memory", "torchrun") if w in args.train]:
                found = train(config, data + (prepared if where != "memory" else []), args,
                              TORCHRUN if where == "torchrun" else None)
                results["runs"].append({"what": "train", "where": where, "pairs": pairs, "config": name, **found})
                print(json.dumps(results["runs"][-1]), file=sys.stderr)
            if "loading" in args.train:
                results["runs"].append({"what": "loading", "pairs": pairs, "config": name,
                                        **loading(config, data + prepared, args.steps)})
                print(json.dumps(results["runs"][-1]), file=sys.stderr)
            if args.base is not None and "base" in args.train:
                found = base_train(args.base, name, data, args)
                results["runs"].append({"what": "train", "where": f"memory, {args.base_name}", "pairs": pairs,
                                        "config": name, **found})
                print(json.dumps(results["runs"][-1]), file=sys.stderr)
        if not args.keep:
            for path in args.dir.glob(f"*{pairs}*"):
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink()
    return results


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "cronos"]


def loading(config_path: str, overrides: list[str], batches: int) -> dict:
    """What the training loop waits for with ``data.loader_workers: 0``: the seconds to collate each
    of the first ``batches`` batches of epoch 0 from the (prepared) training split."""
    from cronos.config import load_config
    from cronos.data import BucketBatchSampler, collate, load_training_data

    config = load_config(config_path, overrides=dict(o.removeprefix("--set=").split("=", 1) for o in overrides))
    data = load_training_data(config.data, seed=config.seed)
    planned = BucketBatchSampler(data.examples.src_lengths, data.examples.tgt_lengths,
                                 batch_size=config.training.batch_size, batch_tokens=config.training.batch_tokens,
                                 seed=config.seed).batches(0)[:batches]
    started = time.perf_counter()
    for batch in planned:
        collate([data.examples[int(i)] for i in batch])
    return {"batches": len(planned), "collate_s_per_batch": (time.perf_counter() - started) / len(planned)}


def train(config: str, data: list[str], args: argparse.Namespace, command: list[str] | None = None) -> dict:
    output = args.dir / "run"
    shutil.rmtree(output, ignore_errors=True)
    return measure((command or cronos())[:] + ["train", config, *data, f"--set=output_dir={output}", f"--set=training.max_steps={args.steps}",
                          "--set=training.validate_every=null", "--set=training.checkpoint_every=null",
                          "--set=training.progress=false", "--set=training.log_every=1", "--set=training.device=cpu",
                          "--set=data.valid=null", "--set=data.test=null"], ROOT)


def plot(results: dict, png: Path) -> None:
    """Peak RSS of ``cronos train`` against corpus size, one line per data path and config."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    lines: dict[tuple[str, str, str], dict[int, float]] = {}
    for run in results["runs"]:
        if run["what"] == "train" and run["where"] != "torchrun":  # one process each
            lines.setdefault((run["where"], run["config"], "peak RSS"), {})[run["pairs"]] = run["peak_rss_gib"]
            if run["where"] == "prepared" and "peak_anonymous_gib" in run:
                lines.setdefault((run["where"], run["config"], "its own memory"), {})[run["pairs"]] = \
                    run["peak_anonymous_gib"]
    for (where, config, measure), points in sorted(lines.items()):
        pairs = sorted(points)
        axes.plot(pairs, [points[p] for p in pairs], marker="o", linestyle="--" if measure != "peak RSS" else "-",
                  label=f"{'in memory' if where == 'memory' else where} ({config})"
                  + (": its own memory, without the mapped files' pages" if measure != "peak RSS" else ""))
    axes.set_xscale("log")
    axes.set_xlabel("training pairs")
    axes.set_ylabel("peak RSS of cronos train (GiB)")
    axes.set_title("Memory of training against corpus size")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(png)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--train", nargs="*", default=["prepared", "memory", "base", "torchrun", "loading"],
                        choices=["prepared", "memory", "base", "torchrun", "loading"],
                        help="which trainings to measure (none: prepare only): on the prepared split, in memory, "
                             "with --base, on the prepared split with torchrun --nproc_per_node 2; and the time "
                             "to collate a batch from the prepared split")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/cronos-scale"))
    parser.add_argument("--multi30k", type=Path, default=ROOT.parent / "shared" / "data" / "multi30k")
    parser.add_argument("--keep", action="store_true", help="keep the corpora and prepared folders")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    parser.add_argument("--base", default=None, help="also train with this commit (the memory before prepared splits)")
    parser.add_argument("--plot", type=Path, nargs="+", default=None, metavar="JSON",
                        help="plot these results (from --out) into --png instead of measuring")
    parser.add_argument("--png", type=Path, default=ROOT / "docs" / "scale_rss.png")
    args = parser.parse_args()
    if args.plot:
        plot({"runs": [run for path in args.plot for run in json.loads(path.read_text())["runs"]]}, args.png)
        return
    args.multi30k = args.multi30k.resolve()
    args.base_name, checkout = args.base, None
    if args.base is not None:
        checkout = args.dir / "base"
        args.dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(checkout), args.base], cwd=ROOT, check=True)
        args.base = checkout
    try:
        results = run(args)
    finally:
        if checkout is not None:
            subprocess.run(["git", "worktree", "remove", "--force", str(checkout)], cwd=ROOT, check=False)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
