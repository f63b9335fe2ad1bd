#!/usr/bin/env python3
"""What the decoding controls do on real test sets: terminology constraints (share met, BLEU,
speed against plain beam search), prefix completion (BLEU of the rest after the reference's first
k words), and the repetition and length controls (BLEU, outputs with a repeated word 3-gram).

    python scripts/controls_benchmark.py MODEL.pt --root ../shared/data/multi30k \
        --tests test_2016_flickr test_2017_flickr --source de --target en --json controls.json

Terminology: for each sentence, up to ``--terms`` reference words that the unconstrained output
misses (the longest first, words of at least 4 letters, as the reference spells them), given as
constraints.  Prefix completion scores the output after its first k words against the reference
after its first k words.  Times are the decoding's wall time in this process, plain and constrained
runs one after the other on the same sentences.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import sacrebleu

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cronos  # noqa: E402 - after the path

WORD = re.compile(r"\w+", re.UNICODE)


def words(text: str) -> list[str]:
    return WORD.findall(text)


def missing_terms(output: str, reference: str, count: int) -> list[str]:
    """Up to ``count`` reference words of 4 letters or more that ``output`` lacks, longest first."""
    present = set(words(output))
    candidates = sorted(dict.fromkeys(w for w in words(reference) if len(w) >= 4 and w not in present),
                        key=lambda w: (-len(w), w))
    return candidates[:count]


def repeated_trigram(text: str) -> bool:
    tokens = words(text.lower())
    grams = [tuple(tokens[i: i + 3]) for i in range(len(tokens) - 2)]
    return len(grams) != len(set(grams))


def bleu(outputs: list[str], references: list[str]) -> float:
    return round(sacrebleu.corpus_bleu(outputs, [references]).score, 2)


def timed(call):
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


def terminology(model, sources: list[str], references: list[str], plain: list[str], args) -> dict:
    terms = [missing_terms(o, r, args.terms) for o, r in zip(plain, references)]
    writable = []
    for phrases in terms:  # a word the model's vocabulary cannot write is left out (said in the count)
        kept = []
        for phrase in phrases:
            try:
                model.codec.output_ids(phrase, "term")
                kept.append(phrase)
            except ValueError:
                pass
        writable.append(kept)
    constrained, seconds = timed(lambda: model.translate(sources, beam_size=args.beam, constraints=writable))
    given = sum(map(len, writable))
    met = sum(phrase in output for output, phrases in zip(constrained, writable)
              for phrase in phrases)
    return {"sentences_with_terms": sum(1 for t in writable if t), "terms": given,
            "terms_left_out_unwritable": sum(map(len, terms)) - given,
            "met_share": round(met / max(given, 1), 4), "bleu_plain": bleu(plain, references),
            "bleu_constrained": bleu(constrained, references), "seconds_constrained": round(seconds, 3)}


def prefixes(model, sources: list[str], references: list[str], plain: list[str], args) -> dict:
    found = {}
    for k in args.prefix_words:
        chosen = [i for i, r in enumerate(references) if len(r.split()) > k]
        forced = [" ".join(references[i].split()[:k]) for i in chosen]
        outputs = model.translate([sources[i] for i in chosen], beam_size=args.beam, prefixes=forced)
        rest_of = [" ".join(references[i].split()[k:]) for i in chosen]
        found[str(k)] = {"sentences": len(chosen),
                         "bleu_rest_forced": bleu([" ".join(o.split()[k:]) for o in outputs], rest_of),
                         "bleu_rest_free": bleu([" ".join(plain[i].split()[k:]) for i in chosen], rest_of),
                         "starts_with_prefix": round(sum(o.startswith(p) for o, p in zip(outputs, forced)) / len(chosen), 4)}
    return found


def controls(model, sources: list[str], references: list[str], plain: list[str], args) -> dict:
    settings = {"no_repeat_ngram_size 3": {"no_repeat_ngram_size": 3},
                f"min_length {args.min_length}": {"min_length": args.min_length},
                "gnmt length penalty 0.6": {"length_penalty_form": "gnmt", "length_penalty": 0.6},
                "coverage penalty 0.2": {"coverage_penalty": 0.2}}
    found = {"none": {"bleu": bleu(plain, references), "outputs_with_a_repeated_3gram": sum(map(repeated_trigram, plain))}}
    for name, changes in settings.items():
        outputs = model.translate(sources, beam_size=args.beam, decoding=changes)
        found[name] = {"bleu": bleu(outputs, references),
                       "outputs_with_a_repeated_3gram": sum(map(repeated_trigram, outputs))}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--tests", nargs="+", default=["test_2016_flickr", "test_2017_flickr"])
    parser.add_argument("--source", default="de")
    parser.add_argument("--target", default="en")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--terms", type=int, default=2, help="constraints per sentence at most [2]")
    parser.add_argument("--prefix-words", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--min-length", type=int, default=8, help="the min_length tried, in tokens [8]")
    parser.add_argument("--limit", type=int, default=None, help="the first N sentences of each test set")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    model = cronos.Translator.load(args.checkpoint, device="cpu")
    report = {}
    for test in args.tests:
        sources, references = ((args.root / f"{test}.{side}").read_text(encoding="utf-8").splitlines()[:args.limit]
                               for side in (args.source, args.target))
        plain, seconds = timed(lambda: model.translate(sources, beam_size=args.beam))
        terms = terminology(model, sources, references, plain, args)
        report[test] = {"seconds_plain": round(seconds, 3), "terminology": terms,
                        "prefixes": prefixes(model, sources, references, plain, args),
                        "controls": controls(model, sources, references, plain, args)}
        print(json.dumps({test: report[test]}, indent=1), flush=True)
    for test, found in report.items():
        t = found["terminology"]
        print(f"\n{test}: {t['terms']} terms in {t['sentences_with_terms']} sentences, met {t['met_share']:.1%}; "
              f"BLEU {t['bleu_plain']} -> {t['bleu_constrained']}; {found['seconds_plain']} s plain, "
              f"{t['seconds_constrained']} s constrained ({t['seconds_constrained'] / max(found['seconds_plain'], 1e-9):.2f}x)")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
