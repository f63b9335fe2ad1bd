#!/usr/bin/env python3
"""Transfer to a new language with few pairs: a parent (Multi30k de->en, the subword Transformer
config) and then cs->en from a few thousand pairs, (a) from scratch and (b) started from the parent
with its vocabulary extended (``training.init_from``, ``training.vocabulary: extend``), with the
same steps and settings; test BLEU (beam 5) of each.

    python scripts/transfer_benchmark.py --root ../shared/data/multi30k --out /tmp/transfer \
        --parent-epochs 12 --pairs 5000 --child-steps 800 --json transfer.json

``--parent CHECKPOINT`` reuses a trained parent.  The child reads ``train.SRC``/``train.en`` (its
first ``--pairs`` lines), ``val.*`` and ``test_2016_flickr.*`` under ``--root``; each child trains
its own SentencePiece pieces (``--child-pieces``), which (b) merges into the parent's.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cronos  # noqa: E402 - after the path
from cronos.config import config_to_dict  # noqa: E402


def parent_run(args: argparse.Namespace) -> Path:
    """The parent's best.pt: trained here from ``--parent-config`` unless ``--parent`` names one."""
    if args.parent is not None:
        return Path(args.parent)
    overrides = {"data.root": str(args.root), "output_dir": str(args.out / "parent"), "training.overwrite": True,
                 "training.epochs": args.parent_epochs, "training.keep_checkpoints": 0,
                 "training.progress": False}
    started = time.perf_counter()
    cronos.fit(cronos.load_config(args.parent_config, overrides=overrides))
    print(f"parent: trained in {time.perf_counter() - started:.0f} s", flush=True)
    return args.out / "parent" / "best.pt"


def child_files(args: argparse.Namespace) -> dict:
    """The child's data section: its first ``--pairs`` training lines, and the valid and test files."""
    folder = args.out / "child_data"
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for side in (args.source, args.target):
        lines = (args.root / f"train.{side}").read_text(encoding="utf-8").splitlines(keepends=True)[:args.pairs]
        (folder / f"train.{side}").write_text("".join(lines), encoding="utf-8")
    files["train"] = {"src": str(folder / f"train.{args.source}"), "tgt": str(folder / f"train.{args.target}")}
    for split, name in (("valid", "val"), ("test", args.test)):
        files[split] = {"src": str(args.root / f"{name}.{args.source}"), "tgt": str(args.root / f"{name}.{args.target}")}
    return files


def child(args: argparse.Namespace, parent: Path, name: str, start: dict) -> dict:
    """Train one child (``start``: its training keys for init_from) and score it on the test split."""
    config = config_to_dict(cronos.load_config(args.parent_config))
    config["output_dir"] = str(args.out / name)
    config["data"] = {**config["data"], **child_files(args), "root": None}
    if config["data"]["tokenizer"] == "sentencepiece":
        config["data"]["sentencepiece"] = {**config["data"]["sentencepiece"], "vocab_size": args.child_pieces}
    # the same optimiser steps for both (their vocabularies segment the data into other batches)
    config["training"] = {**config["training"], "epochs": 10_000, "max_steps": args.child_steps,
                          "validate_every": args.validate_every, "keep_checkpoints": 0, "overwrite": True,
                          "progress": False, **start}
    started = time.perf_counter()
    model = cronos.fit(cronos.load_config(config))
    seconds = time.perf_counter() - started
    scores = model.evaluate("test")
    lines = (args.out / name / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    result = {"test_bleu": scores["bleu"], "test_chrf": scores["chrf"], "steps": json.loads(lines[-1])["step"],
              "seconds": round(seconds), "vocabulary": len(model.codec.src_vocab)}
    print(f"{name}: {result}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="the Multi30k folder")
    parser.add_argument("--out", type=Path, required=True, help="a folder for the runs")
    parser.add_argument("--parent-config", default=str(ROOT / "configs" / "multi30k_transformer_spm.yaml"))
    parser.add_argument("--parent", default=None, help="a trained parent's checkpoint (else one is trained)")
    parser.add_argument("--parent-epochs", type=int, default=12)
    parser.add_argument("--source", default="cs", help="the child's source language [cs]")
    parser.add_argument("--target", default="en")
    parser.add_argument("--test", default="test_2016_flickr", help="the test files' name before the language")
    parser.add_argument("--pairs", type=int, default=5000, help="the child's training pairs [5000]")
    parser.add_argument("--child-steps", type=int, default=800, help="optimiser steps of each child [800]")
    parser.add_argument("--validate-every", type=int, default=100, help="a child's steps between validations")
    parser.add_argument("--child-pieces", type=int, default=4000, help="SentencePiece pieces of the child's data")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    parent = parent_run(args)
    results = {"scratch": child(args, parent, "scratch", {}),
               "from_parent": child(args, parent, "from_parent", {"init_from": str(parent), "vocabulary": "extend"})}
    gain = results["from_parent"]["test_bleu"] - results["scratch"]["test_bleu"]
    print("| child | test BLEU | chrF | steps | seconds | vocabulary |\n|---|---|---|---|---|---|")
    for name, row in results.items():
        print(f"| {name} | {row['test_bleu']:.2f} | {row['test_chrf']:.2f} | {row['steps']} | {row['seconds']} | "
              f"{row['vocabulary']} |")
    print(f"from the parent: {gain:+.2f} BLEU")
    if args.json is not None:
        args.json.write_text(json.dumps({**results, "gain": gain, "args": {k: str(v) for k, v in vars(args).items()}},
                                        indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
