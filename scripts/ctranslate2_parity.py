#!/usr/bin/env python3
"""cronos and CTranslate2 on the same weights, with the decoding controls both engines have: the
share of identical outputs with a forced prefix, a minimum length, no repeated n-grams and a
length penalty, greedy and beam.

    python scripts/ctranslate2_parity.py MODEL.pt --sources ../shared/data/multi30k/test_2016_flickr.de \
        --references ../shared/data/multi30k/test_2016_flickr.en --json parity.json

The model is exported to a temporary folder (``cronos export --format ctranslate2``); both engines
read the same SentencePiece pieces; the prefix is each reference's first ``--prefix-words`` words.
Needs the ``ctranslate2`` extra.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cronos  # noqa: E402 - after the path
from cronos.storage.checkpoint import read_model_file  # noqa: E402
from cronos.storage.export import export_ctranslate2  # noqa: E402

LIMIT = {"max_length_ratio": 0.0, "max_length_offset": 200}  # both engines stop at <eos>, not at a limit


def settings(args: argparse.Namespace, prefixes: list[str]) -> dict[str, tuple[dict, dict]]:
    """Each control: (cronos's keywords, CTranslate2's)."""
    return {"none": ({}, {}),
            f"prefix of {args.prefix_words} words": ({"prefixes": prefixes}, {"target_prefix": prefixes}),
            f"min_length {args.min_length}": ({"decoding": {"min_length": args.min_length}},
                                               {"min_decoding_length": args.min_length}),
            "no_repeat_ngram_size 3": ({"decoding": {"no_repeat_ngram_size": 3}}, {"no_repeat_ngram_size": 3}),
            "length_penalty 0.6": ({"decoding": {"length_penalty": 0.6}}, {"length_penalty": 0.6})}


def main() -> None:
    import ctranslate2

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--sources", type=Path, required=True)
    parser.add_argument("--references", type=Path, required=True, help="for the prefixes")
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--prefix-words", type=int, default=2)
    parser.add_argument("--min-length", type=int, default=12)
    parser.add_argument("--limit", type=int, default=None, help="the first N sentences")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    model = cronos.Translator.load(args.checkpoint, device="cpu")
    sources = args.sources.read_text(encoding="utf-8").splitlines()[:args.limit]
    references = args.references.read_text(encoding="utf-8").splitlines()[:args.limit]
    prefixes = [" ".join(reference.split()[:args.prefix_words]) for reference in references]
    tokens = [[model.codec.src_vocab.itos[i] for i in example.src] for example in model.codec.encode(sources)]
    report = {}
    with tempfile.TemporaryDirectory() as folder:
        exported = export_ctranslate2(read_model_file(args.checkpoint), Path(folder) / "ct2")
        engine = ctranslate2.Translator(str(exported), device="cpu", inter_threads=1)
        for beam in args.beams:
            for name, (ours, theirs) in settings(args, prefixes).items():
                if "prefixes" in ours:
                    theirs = {"target_prefix": [model.codec.target_tokens(p) for p in prefixes]}
                mine = model.translate(sources, beam_size=beam, **{**ours, "decoding": {**LIMIT, **ours.get("decoding", {})}})
                found = engine.translate_batch(tokens, beam_size=beam, max_decoding_length=256, max_batch_size=64,
                                               **theirs)
                other = [model.codec.tgt_tokenizer.detokenize(result.hypotheses[0]) for result in found]
                same = sum(a == b for a, b in zip(mine, other)) / len(sources)
                report[f"beam {beam}, {name}"] = round(same, 4)
                print(f"| {beam} | {name} | {same:.1%} |", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
