#!/usr/bin/env python3
"""cronos beside CTranslate2 on the same weights: speed, quality, memory and agreement.

    python scripts/compare_ctranslate2.py runs/multi30k_transformer_spm/best.pt --set data.root=...

The checkpoint (a Transformer) is exported twice (``cronos export --format ctranslate2``, float32
and int8 weights).  Then each engine decodes a split's sources (default: the 1,000 Multi30k test
sentences) at ``--batch-size`` sentences (32) with ``--threads`` (2), for each beam size (1, 4, 5),
each run in a fresh process of its own, the four engines in turn, ``--repeats`` times (2):

- cronos float32 and int8 (``Translator.load``, ``quantize="int8"``),
- CTranslate2 float32 and int8 (``ctranslate2.Translator``; SentencePiece from the export folder).

Per engine and beam: sentences/s and target tokens/s (medians; tokens are the outputs' pieces),
BLEU and length ratio (sacrebleu, against the split's references), peak RSS of the process; and
how many outputs equal cronos float32's (CTranslate2 float32 against cronos float32 is the
export's parity; the int8 engines against their float32 selves).  Last, the largest difference
between cronos's and CTranslate2's log-probability of the same outputs (teacher-forced,
``Cronos.score`` against ``Translator.score_batch``).  Run it alone on the machine.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENGINES = ("cronos float32", "cronos int8", "CTranslate2 float32", "CTranslate2 int8")


def _sources_and_references(checkpoint: str, split: str) -> tuple[list[str], list[str]]:
    from cronos.data import load_split
    from cronos.model import Cronos

    model = Cronos.load(checkpoint, device="cpu")
    found = load_split(split, model.config.data, model.codec)
    return list(found.sources), list(found.targets)


def worker(engine: str, checkpoint: str, folder: str, sources_file: str, beam: int, batch_size: int, threads: int,
           output: str) -> None:
    """Decode the sources with one engine (timed, tokenisation included); write the outputs, the
    seconds and the process's peak RSS to ``output``."""
    sources = json.loads(Path(sources_file).read_text())
    if engine.startswith("cronos"):
        import torch

        from cronos.translator import Translator

        torch.set_num_threads(threads)
        model = Translator.load(checkpoint, device="cpu", quantize="int8" if engine.endswith("int8") else None)
        start = time.perf_counter()
        texts = model.translate(sources, beam_size=beam, batch_size=batch_size)
    else:
        texts, start = _ctranslate2_decode(folder, sources, beam, batch_size, threads)
    seconds = time.perf_counter() - start
    peak = _peak_rss_mib()
    Path(output).write_text(json.dumps({"seconds": seconds, "texts": texts, "peak_rss_mib": peak}))


def _peak_rss_mib() -> float:
    """This process's peak resident memory (``VmHWM``: unlike ``ru_maxrss``, not inherited from the
    parent that started it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _ctranslate2_decode(folder: str, sources: list[str], beam: int, batch_size: int, threads: int):
    """What a deployment of the exported folder does: lowercase if the model does, SentencePiece,
    CTranslate2, SentencePiece back.  Returns the texts and the time the work started."""
    import ctranslate2
    import sentencepiece as spm

    description = json.loads((Path(folder) / "cronos_export.json").read_text())
    pieces = description["sentencepiece"]
    source_model = spm.SentencePieceProcessor(model_file=str(Path(folder) / pieces["source"]))
    target_model = spm.SentencePieceProcessor(model_file=str(Path(folder) / pieces["target"]))
    translator = ctranslate2.Translator(folder, device="cpu", intra_threads=threads, inter_threads=1)
    start = time.perf_counter()
    texts = [text.lower() for text in sources] if description["lowercase"] else sources
    tokens = [source_model.encode(text, out_type=str)[: description["max_source_tokens"]] for text in texts]
    decoding = description["decoding"]
    order = sorted(range(len(tokens)), key=lambda i: len(tokens[i]))  # batches of similar length, as cronos's
    texts = [""] * len(tokens)
    for first in range(0, len(order), batch_size):
        batch = order[first:first + batch_size]
        # cronos's limit, ceil(ratio x source tokens) + offset outputs (<eos> included), for the batch's longest
        limit = math.ceil(decoding["max_length_ratio"] * len(tokens[batch[-1]])) + decoding["max_length_offset"]
        results = translator.translate_batch([tokens[i] for i in batch], beam_size=beam, max_decoding_length=limit,
                                             length_penalty=decoding["length_penalty"])
        for i, result in zip(batch, results):
            texts[i] = target_model.decode_pieces(result.hypotheses[0])
    return texts, start


def score_gap(checkpoint: str, folder: str, sources_file: str, outputs_file: str, output: str) -> None:
    """The largest difference between cronos's and CTranslate2's log-probability of the same
    (source, output) pairs, and its mean."""
    import ctranslate2

    from cronos.model import Cronos

    sources, outputs = json.loads(Path(sources_file).read_text()), json.loads(Path(outputs_file).read_text())
    pairs = [(s, o) for s, o in zip(sources, outputs) if o.strip()]
    model = Cronos.load(checkpoint, device="cpu")
    ours = [score.log_prob for score in model.score(pairs)]
    examples = model.codec.encode([s for s, _ in pairs], [o for _, o in pairs])
    src = [[model.codec.src_vocab.itos[i] for i in e.src] for e in examples]
    tgt = [[model.codec.tgt_vocab.itos[i] for i in e.tgt] for e in examples]
    theirs = [sum(r.log_probs) for r in ctranslate2.Translator(folder, device="cpu").score_batch(src, tgt)]
    gaps = [abs(a - b) for a, b in zip(ours, theirs)]
    Path(output).write_text(json.dumps({"largest": max(gaps), "mean": statistics.mean(gaps), "pairs": len(gaps)}))


def _run(*args: str) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as output:
        subprocess.run([sys.executable, __file__, *args, output.name], check=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
        return json.loads(Path(output.name).read_text())


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        engine, checkpoint, folder, sources, beam, batch_size, threads, output = sys.argv[2:]
        worker(engine, checkpoint, folder, sources, int(beam), int(batch_size), int(threads), output)
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--score-gap":
        score_gap(*sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--split", default="test")
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 4, 5])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="the first N sources only (smoke runs)")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure here")
    args = parser.parse_args()

    import sacrebleu
    import sentencepiece as spm

    from cronos.storage.export import export_ctranslate2
    from cronos.storage.checkpoint import read_model_file

    work = Path(tempfile.mkdtemp(prefix="cronos-ct2-"))
    stored = read_model_file(args.checkpoint)
    folders = {q: str(export_ctranslate2(stored, work / q, q)) for q in ("float32", "int8")}
    sources, references = _sources_and_references(args.checkpoint, args.split)
    sources, references = sources[: args.limit], references[: args.limit]
    sources_file = work / "sources.json"
    sources_file.write_text(json.dumps(sources))
    pieces = spm.SentencePieceProcessor(model_file=str(Path(folders["float32"]) / "sentencepiece.model"))

    report: dict = {"sources": len(sources), "batch_size": args.batch_size, "threads": args.threads, "beams": {}}
    print("| beam | engine | sentences/s | target tokens/s | BLEU | length ratio | peak RSS MiB | "
          "outputs equal to cronos float32 |")
    print("|---|---|---|---|---|---|---|---|")
    for beam in args.beams:
        runs: dict[str, list[dict]] = {engine: [] for engine in ENGINES}
        for _ in range(args.repeats):
            for engine in ENGINES:
                folder = folders["int8" if engine.endswith("int8") else "float32"]
                runs[engine].append(_run("--worker", engine, args.checkpoint, folder, str(sources_file), str(beam),
                                         str(args.batch_size), str(args.threads)))
        reference_texts = runs["cronos float32"][-1]["texts"]
        rows = {}
        for engine in ENGINES:
            texts = runs[engine][-1]["texts"]
            seconds = statistics.median(r["seconds"] for r in runs[engine])
            tokens = sum(len(p) for p in pieces.encode(texts, out_type=str))
            bleu = sacrebleu.corpus_bleu(texts, [references])
            rows[engine] = {"sentences_per_s": len(texts) / seconds, "target_tokens_per_s": tokens / seconds,
                            "bleu": bleu.score, "length_ratio": bleu.sys_len / bleu.ref_len,
                            "peak_rss_mib": max(r["peak_rss_mib"] for r in runs[engine]),
                            "equal_to_cronos_float32": sum(a == b for a, b in zip(texts, reference_texts)),
                            "seconds": [r["seconds"] for r in runs[engine]]}
            r = rows[engine]
            print(f"| {beam} | {engine} | {r['sentences_per_s']:.1f} | {r['target_tokens_per_s']:.0f} | "
                  f"{r['bleu']:.2f} | {r['length_ratio']:.3f} | {r['peak_rss_mib']:.0f} | "
                  f"{r['equal_to_cronos_float32']} of {len(texts)} |", flush=True)
        rows["int8 equal to float32"] = {
            "cronos": sum(a == b for a, b in zip(runs["cronos int8"][-1]["texts"], reference_texts)),
            "CTranslate2": sum(a == b for a, b in zip(runs["CTranslate2 int8"][-1]["texts"],
                                                       runs["CTranslate2 float32"][-1]["texts"]))}
        report["beams"][beam] = rows
        if beam == args.beams[0]:
            outputs_file = work / "outputs.json"
            outputs_file.write_text(json.dumps(reference_texts))
            report["score_gap"] = _run("--score-gap", args.checkpoint, folders["float32"], str(sources_file),
                                       str(outputs_file))
    gap = report["score_gap"]
    print(f"\nlog-probability of cronos float32's beam-{args.beams[0]} outputs, cronos against CTranslate2 float32: "
          f"largest difference {gap['largest']:.2e}, mean {gap['mean']:.2e} over {gap['pairs']} pairs")
    for beam, rows in report["beams"].items():
        same = rows["int8 equal to float32"]
        print(f"beam {beam}: int8 outputs equal to float32's: cronos {same['cronos']}, CTranslate2 {same['CTranslate2']}")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
