#!/usr/bin/env python3
"""The masking ablation: train {mask_padding on, off} x {freeze_pad_embedding on, off} for several
seeds and report mean +- std of validation loss, exact match (and BLEU), the share of attention
that falls on padded positions when evaluating in batches of mixed lengths, and how much an
unmasked model's output depends on its batch (the same input alone vs inside a padded batch).

    python scripts/ablation.py configs/dates.yaml --seeds 1 2 3 --set training.epochs=2 --out docs/ablation_dates.md
    python scripts/ablation.py --merge seed1.json seed2.json --out table.md   # runs made in several processes
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from pathlib import Path

import torch

import cronos
from cronos.config import load_config, parse_override
from cronos.data import load_split
from cronos.decoding.evaluation import evaluate_split
from cronos.decoding.search import Beam, search_batch

SETTINGS = list(itertools.product((True, False), (True, False)))  # (mask_padding, freeze_pad_embedding)


def padding_attention_share(model: cronos.Cronos, sources: list[str], targets: list[str]) -> float:
    """Attention mass on padded source positions / all attention mass, forced to the references,
    in input order (so every batch mixes lengths)."""
    explanations = model.explain(sources, targets)
    rows = sum(e.attention.shape[0] for e in explanations)
    return sum(e.padding_attention for e in explanations) / rows


@torch.no_grad()
def batch_dependence(model: cronos.Cronos, sources: list[str], targets: list[str], batch_size: int = 32) -> dict:
    """Outputs and log-probs of each input alone vs inside a mixed-length batch (input order)."""
    model.eval()
    strategy = Beam(model.config.decoding.beam_size)
    changed, worst = 0, 0.0
    for start in range(0, len(sources), batch_size):
        chunk_s, chunk_t = sources[start: start + batch_size], targets[start: start + batch_size]
        batch = model.prepare(chunk_s, chunk_t)
        together = [found[0] for found in search_batch(model.network, batch, strategy, model.config.decoding)]
        logits, _ = model(batch.src, batch.src_lengths, batch.tgt_in)
        for i, (source, target) in enumerate(zip(chunk_s, chunk_t)):
            alone = model.prepare([source], [target])
            single = search_batch(model.network, alone, strategy, model.config.decoding)[0][0]
            changed += single.tokens != together[i].tokens
            alone_logits, _ = model(alone.src, alone.src_lengths, alone.tgt_in)
            steps = alone_logits.size(1)
            gap = (torch.log_softmax(logits[i, :steps], -1) - torch.log_softmax(alone_logits[0], -1)).abs().max()
            worst = max(worst, float(gap))
    return {"outputs_changed": changed / len(sources), "max_log_prob_gap": worst}


def run(config_path: str, overrides: dict, mask: bool, freeze: bool, seed: int, folder: Path, probe: int) -> dict:
    config = load_config(config_path, overrides={**overrides, "seed": seed, "model.mask_padding": mask,
                                                 "model.freeze_pad_embedding": freeze, "training.progress": False,
                                                 "training.overwrite": True,  # the script owns these folders
                                                 "output_dir": str(folder / f"mask{int(mask)}_freeze{int(freeze)}_seed{seed}")})
    started = time.perf_counter()
    model = cronos.Cronos.from_config(config)
    pad_row_before = model.network.src_embedding.weight[0].detach().cpu().clone()  # fit may move the model to a GPU
    model.fit()
    valid = load_split("valid", config.data, model.codec)
    scores = evaluate_split(model.network, model.codec, valid, config.decoding)
    sources, targets = valid.sources[:probe], valid.targets[:probe]
    return {"mask_padding": mask, "freeze_pad_embedding": freeze, "seed": seed,
            "valid_loss": scores["loss"], "exact_match": scores["sequence_accuracy"], "bleu": scores["bleu"],
            "padding_attention_share": padding_attention_share(model, sources, targets),
            "pad_row_changed": not torch.equal(model.network.src_embedding.weight[0].detach().cpu(), pad_row_before),
            **batch_dependence(model, sources, targets), "seconds": time.perf_counter() - started}


def mean_std(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.4g}"
    return f"{statistics.mean(values):.4g} ± {statistics.stdev(values):.2g}"


def table(results: list[dict]) -> str:
    lines = ["| mask_padding | freeze_pad_embedding | valid loss | exact match | BLEU | attention on padding | "
             "outputs changed by batching | max log-prob gap alone vs batched | pad row changed |",
             "|---|---|---|---|---|---|---|---|---|"]
    for mask, freeze in SETTINGS:
        rows = [r for r in results if r["mask_padding"] == mask and r["freeze_pad_embedding"] == freeze]
        if not rows:
            continue
        col = lambda key: mean_std([float(r[key]) for r in rows])  # noqa: E731
        lines.append(f"| {'on' if mask else 'off'} | {'on' if freeze else 'off'} | {col('valid_loss')} | "
                     f"{col('exact_match')} | {col('bleu')} | {col('padding_attention_share')} | "
                     f"{col('outputs_changed')} | {col('max_log_prob_gap')} | "
                     f"{sum(r['pad_row_changed'] for r in rows)}/{len(rows)} |")
    return "\n".join(lines)


def read_results(path: Path) -> list[dict]:
    """Results from a ``--out`` .json file (a list) or from a log of the JSON lines a run prints."""
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", help="YAML config (not with --merge)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--probe", type=int, default=300, help="validation inputs for the padding probes")
    parser.add_argument("--work", type=Path, default=Path("runs/ablation"))
    parser.add_argument("--out", type=Path, default=None, help="write the markdown table (and .json) here")
    parser.add_argument("--merge", type=Path, nargs="+", default=None, metavar="JSON",
                        help="train nothing: tabulate the results that earlier runs wrote (their --out .json "
                             "files, or their printed JSON lines)")
    args = parser.parse_args()
    if (args.config is None) == (args.merge is None):
        parser.error("give a config to train, or --merge JSON files, not both")
    if args.merge is not None:
        results = [result for path in args.merge for result in read_results(path)]
    else:
        overrides = dict(parse_override(o) for o in args.overrides)
        results = []
        for seed in args.seeds:
            for mask, freeze in SETTINGS:
                results.append(run(args.config, overrides, mask, freeze, seed, args.work, args.probe))
                print(json.dumps(results[-1]), flush=True)
    text = table(results)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
