#!/usr/bin/env python3
"""An imported MarianMT model against transformers' own, on real text: a small MarianMT model
(SentencePiece models and a few hundred training steps of transformers' ``MarianMTModel`` on
Multi30k, as tests/marian_models.py makes its tiny ones) imported with ``cronos import``, then on
a test set: source and target ids against ``MarianTokenizer``'s, teacher-forced log-probabilities
against ``MarianMTModel``'s (its added ``<pad>`` column removed), greedy and beam-4 outputs (their
ids: as text, transformers' ``skip_special_tokens`` drops ``<unk>``, which SentencePiece writes as
" ⁇ ") against ``generate``'s (``bad_words_ids=[[pad]]``, ``early_stopping=True``, ``length_penalty`` 1.0, at most 80
new tokens, the last forced to ``</s>`` as OPUS-MT's configs say: cronos writes 79 tokens at most,
``<eos>`` included, so an output cut at the limit holds the same text).

    python scripts/marian_parity.py --root ../shared/data/multi30k --out /tmp/marian-parity --json parity.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the model maker the tests use

import torch  # noqa: E402

import cronos  # noqa: E402
from cronos.decoding.search import Beam, decode  # noqa: E402
from cronos.storage.checkpoint import save_checkpoint  # noqa: E402
from cronos.storage.marian import read_marian_folder, stored_payload  # noqa: E402
from marian_models import Pairs, make_marian  # noqa: E402


def lines(path: Path, count: int) -> list[str]:
    with open(path, encoding="utf-8") as file:
        return [line.rstrip("\n") for _, line in zip(range(count), file)]


def largest_log_prob_difference(ours, model, tokenizer, sources: list[str], targets: list[str]) -> float:
    """The largest difference of a target token's teacher-forced log-probability, cronos against
    MarianMTModel over Marian's vocabulary (its added ``<pad>`` column removed)."""
    pad, worst = model.config.pad_token_id, 0.0
    scored = ours.score(list(zip(sources, targets)), per_token=True)
    for start in range(0, len(sources), 50):
        batch = tokenizer(sources[start:start + 50], text_target=targets[start:start + 50], return_tensors="pt",
                          padding=True)
        with torch.no_grad():
            logits = model(**batch).logits
        logits[..., pad] = float("-inf")
        log_probs = torch.log_softmax(logits, dim=-1)
        for row, labels, mine in zip(log_probs, batch["labels"], scored[start:start + 50]):
            length = int((labels != pad).sum())
            theirs = row[torch.arange(length), labels[:length]]
            worst = max(worst, float((theirs - torch.tensor(mine.token_log_probs)).abs().max()))
    return worst


def generated(model, sources: list[str], tokenizer, beam: int) -> list[list[int]]:
    """``generate``'s outputs as Marian ids (to their end), as OPUS-MT's generation settings make them."""
    found = []
    for start in range(0, len(sources), 50):
        with torch.no_grad():
            out = model.generate(**tokenizer(sources[start:start + 50], return_tensors="pt", padding=True),
                                 num_beams=beam, do_sample=False, max_new_tokens=80, early_stopping=True,
                                 length_penalty=1.0, bad_words_ids=[[model.config.pad_token_id]])
        found += [_text_ids(row.tolist()[1:], model.config.eos_token_id) for row in out]
    return found


def _text_ids(ids: list[int], eos: int) -> list[int]:
    """An output's ids up to its end (an output cut at the length limit has no end token)."""
    return ids[: ids.index(eos)] if eos in ids else ids


def decoded(ours, sources: list[str], ids: dict[str, int], beam: int) -> list[list[int]]:
    """cronos's outputs as Marian ids, at most 79 tokens (``<eos>`` included)."""
    options = ours._decoding({"max_length_ratio": 0.0, "max_length_offset": 79})
    found = decode(ours.network, ours.codec.encode(sources), Beam(beam), options)
    return [_text_ids([ids[ours.codec.tgt_vocab.itos[i]] for i in hypotheses[0].tokens], ids["</s>"])
            for hypotheses in found]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="the Multi30k folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--test", default="test_2016_flickr", help="the test set's file stem")
    parser.add_argument("--train-pairs", type=int, default=29000)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import MarianMTModel, MarianTokenizer

    train = Pairs(lines(args.root / "train.en", args.train_pairs), lines(args.root / "train.de", args.train_pairs))
    started = time.perf_counter()
    folder = make_marian(args.out / "marian", train=train, pieces=(2000, 2000), steps=args.steps)
    checkpoint = args.out / "imported.pt"
    save_checkpoint(checkpoint, stored_payload(read_marian_folder(folder)))
    made = time.perf_counter() - started
    ours = cronos.Translator.load(checkpoint, "cpu")
    model, tokenizer = MarianMTModel.from_pretrained(folder).eval(), MarianTokenizer.from_pretrained(folder)
    sources = lines(args.root / f"{args.test}.en", args.sentences)
    targets = lines(args.root / f"{args.test}.de", args.sentences)
    ids = json.loads((folder / "vocab.json").read_text())
    ids.update({"<eos>": ids["</s>"], "<bos>": ids["<pad>"]})
    examples = ours.codec.encode(sources, targets)
    same_sources = sum([ids[ours.codec.src_vocab.itos[i]] for i in e.src] == tokenizer(s)["input_ids"]
                       for s, e in zip(sources, examples))
    same_targets = sum([ids[ours.codec.tgt_vocab.itos[i]] for i in e.tgt] + [ids["</s>"]]
                       == tokenizer(text_target=t)["input_ids"] for t, e in zip(targets, examples))
    worst = largest_log_prob_difference(ours, model, tokenizer, sources, targets)
    results = {"test": args.test, "sentences": len(sources), "model_seconds": round(made, 1),
               "source_ids_equal": same_sources, "target_ids_equal": same_targets,
               "max_log_prob_difference": worst}
    for beam in (1, 4):
        theirs, mine = generated(model, sources, tokenizer, beam), decoded(ours, sources, ids, beam)
        results[f"beam {beam}: outputs equal (ids)"] = sum(a == b for a, b in zip(mine, theirs))
        results[f"beam {beam}: outputs holding <unk>"] = sum(ids["<unk>"] in a for a in mine)
        results[f"beam {beam}: distinct outputs"] = len({tuple(a) for a in mine})
        results[f"beam {beam}: BLEU"] = round(ours.evaluate(list(zip(sources, targets)), beam_size=beam)["bleu"], 2)
    print(json.dumps(results, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
