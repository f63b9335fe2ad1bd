#!/usr/bin/env python3
"""What each way of training costs a step: training tokens/s of one config, as it is and with one
feature on at a time (weight averaging, several corpora with tags), in interleaved rounds in one
process (so the machine's drift falls on every variant alike); and the preparation time of the
training split with and without the filters.

    python scripts/feature_cost.py configs/multi30k_transformer_spm.yaml --set data.root=../shared/data/multi30k \
        --steps 100 --rounds 2 --json cost.json

Speed is the mean of the progress log's windows (``--log-every`` steps each) after the first
``--skip`` steps, which hold compilation and the first batches.  A run that starts from a model
(``training.init_from``) trains the same network, so its steps cost what the baseline's do.
"""
from __future__ import annotations

import argparse
import json
import logging
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cronos  # noqa: E402 - after the path
from cronos.config import config_to_dict, parse_override  # noqa: E402
from cronos.data import load_training_data  # noqa: E402
from cronos.data.preparation import training_files  # noqa: E402
from cronos.data.readers import read_pairs  # noqa: E402

SPEED = re.compile(r"^step (\d+)/\d+ .*?, ([\d,]+) tok/s")


class Speeds(logging.Handler):
    """The step and tokens/s of each progress line."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.found: list[tuple[int, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        match = SPEED.match(record.getMessage())
        if match:
            self.found.append((int(match.group(1)), float(match.group(2).replace(",", ""))))


def halves(config: dict, folder: Path) -> list[dict]:
    """The training split as two tagged corpora of half its pairs each."""
    pairs = read_pairs(training_files(cronos.load_config(config).data)[0])
    corpora = []
    for number, part in enumerate((pairs[: len(pairs) // 2], pairs[len(pairs) // 2:])):
        files = {side: folder / f"half{number}.{side}" for side in ("src", "tgt")}  # text may hold tabs: no TSV
        files["src"].write_text("".join(f"{p.source}\n" for p in part), encoding="utf-8")
        files["tgt"].write_text("".join(f"{p.target}\n" for p in part), encoding="utf-8")
        corpora.append({"src": str(files["src"]), "tgt": str(files["tgt"]), "tag": f"<2half{number}>"})
    return corpora


def variants(config: dict, folder: Path) -> dict[str, dict]:
    training, data = config["training"], config["data"]
    return {"baseline": config,
            "weight averaging (ema_decay 0.999)": {**config, "training": {**training, "ema_decay": 0.999}},
            "two tagged corpora": {**config, "data": {**data, "train": halves(config, folder)}}}


def speed(config: dict, args: argparse.Namespace, folder: Path) -> float:
    """Training tokens/s of ``config`` over ``args.steps`` steps after the first ``args.skip``."""
    handler = Speeds()
    logging.getLogger("cronos").addHandler(handler)
    try:
        cronos.fit(cronos.load_config({**config, "output_dir": str(folder / "run"), "training": {
            **config["training"], "epochs": 1000, "max_steps": args.steps, "log_every": args.log_every,
            "progress": False, "overwrite": True, "keep_checkpoints": 0, "validate_every": 10 * args.steps}}))
    finally:
        logging.getLogger("cronos").removeHandler(handler)
    return statistics.mean(s for step, s in handler.found if step > args.skip)


def preparation_seconds(config: dict, filters: dict) -> float:
    started = time.perf_counter()
    load_training_data(cronos.load_config({**config, "data": {**config["data"], "filters": filters}}).data)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--skip", type=int, default=40)
    parser.add_argument("--log-every", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    overrides = dict(parse_override(item) for item in args.set)
    config = config_to_dict(cronos.load_config(args.config, overrides=overrides))
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("cronos").setLevel(logging.INFO)
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="feature-cost-") as temporary:
        folder = Path(temporary)
        chosen = variants(config, folder)
        for round_number in range(args.rounds):
            for name, variant in chosen.items():
                results.setdefault(name, []).append(speed(variant, args, folder))
                print(f"round {round_number + 1}: {name}: {results[name][-1]:,.0f} tok/s", flush=True)
        filters = {"max_length_ratio": 3.0, "min_length": 2, "copies": False}
        preparation = {"without filters": [preparation_seconds(config, {}) for _ in range(args.rounds)],
                       "with filters": [preparation_seconds(config, filters) for _ in range(args.rounds)]}
    base = statistics.mean(results["baseline"])
    print("| training | tokens/s (mean of rounds) | against the baseline |\n|---|---|---|")
    for name, found in results.items():
        print(f"| {name} | {statistics.mean(found):,.0f} | {statistics.mean(found) / base - 1:+.1%} |")
    print("| preparation | seconds (best of rounds) |\n|---|---|")
    for name, found in preparation.items():
        print(f"| {name} | {min(found):.2f} |")
    if args.json is not None:
        args.json.write_text(json.dumps({"training": results, "preparation": preparation}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
