#!/usr/bin/env python3
"""One model for several directions against one model per direction: en->{de, fr} on Multi30k,
(a) a bilingual model per direction and (b) one model on both corpora, each tagged with its
target language (``data.train`` as a list, ``tag: <2de>``), of the same size (the subword
Transformer config) and the same total steps; test BLEU per direction on each test set.

    python scripts/multilingual_benchmark.py --root ../shared/data/multi30k --out /tmp/multilingual \
        --epochs 4 --json multilingual.json

Each bilingual model trains ``--epochs`` epochs of its 29,000 pairs; the tagged model trains the
same epochs over both corpora, so as many steps as the two together.  Every model is scored with
its last weights (the tagged one validates on untagged sources, so its best.pt would be chosen by
another measure than theirs).
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


def files(args: argparse.Namespace, name: str, target: str) -> dict:
    return {"src": str(args.root / f"{name}.{args.source}"), "tgt": str(args.root / f"{name}.{target}")}


def train(args: argparse.Namespace, name: str, train_split: dict | list, target: str) -> tuple[Path, dict]:
    """Train one model (``train_split``: its data.train) and say how long it took and how many steps."""
    config = config_to_dict(cronos.load_config(args.config))
    config["output_dir"] = str(args.out / name)
    config["data"] = {**config["data"], "root": None, "train": train_split, "valid": files(args, "val", target),
                      "test": None}
    config["training"] = {**config["training"], "epochs": args.epochs, "warmup_steps": args.warmup_steps,
                          "keep_checkpoints": 0, "overwrite": True, "progress": False}
    started = time.perf_counter()
    cronos.fit(cronos.load_config(config))
    seconds = time.perf_counter() - started
    steps = json.loads((args.out / name / "metrics.jsonl").read_text(encoding="utf-8").splitlines()[-1])["step"]
    return args.out / name / "last.pt", {"steps": steps, "seconds": round(seconds)}


def scores(args: argparse.Namespace, checkpoint: Path, target: str, tag: str | None) -> dict:
    """Test BLEU and chrF of ``checkpoint`` into ``target`` on each test set (beam of the config)."""
    model = cronos.Translator.load(checkpoint, device="cpu")
    result = {}
    for test in args.tests:
        pairs = list(zip(*(Path(path).read_text(encoding="utf-8").splitlines()
                           for path in files(args, test, target).values())))
        found = model.evaluate(pairs, tag=tag)
        result[test] = {"bleu": round(found["bleu"], 2), "chrf": round(found["chrf"], 2)}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="the Multi30k folder")
    parser.add_argument("--out", type=Path, required=True, help="a folder for the runs")
    parser.add_argument("--config", default=str(ROOT / "configs" / "multi30k_transformer_spm.yaml"))
    parser.add_argument("--source", default="en")
    parser.add_argument("--targets", nargs="+", default=["de", "fr"])
    parser.add_argument("--tests", nargs="+", default=["test_2016_flickr", "test_2017_flickr"])
    parser.add_argument("--epochs", type=int, default=4, help="epochs of each model [4]")
    parser.add_argument("--warmup-steps", type=int, default=400, help="the schedule's warm-up, every model [400]")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for target in args.targets:
        checkpoint, facts = train(args, f"{args.source}-{target}", files(args, "train", target), target)
        results[f"{args.source}-{target}"] = {**facts, "scores": scores(args, checkpoint, target, None)}
        print(f"{args.source}-{target}: {results[f'{args.source}-{target}']}", flush=True)
    corpora = [{**files(args, "train", target), "tag": f"<2{target}>", "name": f"{args.source}-{target}"}
               for target in args.targets]
    checkpoint, facts = train(args, "tagged", corpora, args.targets[0])
    results["tagged"] = {**facts, "scores": {target: scores(args, checkpoint, target, f"<2{target}>")
                                             for target in args.targets}}
    print(f"tagged: {results['tagged']}", flush=True)
    print("| direction | test set | bilingual BLEU | tagged BLEU | difference |\n|---|---|---|---|---|")
    for target in args.targets:
        for test in args.tests:
            alone = results[f"{args.source}-{target}"]["scores"][test]["bleu"]
            together = results["tagged"]["scores"][target][test]["bleu"]
            print(f"| {args.source}->{target} | {test} | {alone:.2f} | {together:.2f} | {together - alone:+.2f} |")
    if args.json is not None:
        args.json.write_text(json.dumps({**results, "args": {k: str(v) for k, v in vars(args).items()}}, indent=2),
                             encoding="utf-8")


if __name__ == "__main__":
    main()
