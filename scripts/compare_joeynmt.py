#!/usr/bin/env python3
"""Decoding speed beside JoeyNMT: the same test sources, the same beam, the same machine, one run.

Each round runs, per beam size, `cronos translate` and `python -m joeynmt translate` (JoeyNMT in
its own environment) on the source file, in turn, and times each whole command (start-up and
model loading included, both sides alike); JoeyNMT's own "Generation took" log line gives its
decoding time alone.  The report: the best of the rounds, sentences/s, and the BLEU of each
output against the references (sacrebleu), so that the two models are seen to be comparable.

    python scripts/compare_joeynmt.py --cronos runs/multi30k_transformer_spm/best.pt \\
        --joey-python /work/joey/.venv/bin/python --joey-config scripts/joeynmt/transformer_spm.yaml \\
        --src ../shared/data/multi30k/test_2016_flickr.de --ref ../shared/data/multi30k/test_2016_flickr.en

Run it alone on the machine.  The JoeyNMT config's ``testing.beam_size`` is replaced per beam.
JoeyNMT trains on the same SentencePiece pieces as the cronos model (its config,
``scripts/joeynmt/transformer_spm.yaml``, has the same architecture); first write them out:

    python scripts/compare_joeynmt.py --cronos runs/multi30k_transformer_spm/best.pt --export-subwords /work/joey/data
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sacrebleu
import yaml


def run(command: list[str], source: Path) -> tuple[float, str, str]:
    with source.open("rb") as stdin:
        started = time.perf_counter()
        result = subprocess.run(command, stdin=stdin, capture_output=True, timeout=3600)
        seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stderr.decode()[-3000:]}")
    return seconds, result.stdout.decode(), result.stderr.decode()


def joey_config(config: Path, beam: int, folder: Path) -> Path:
    settings = yaml.safe_load(config.read_text())
    settings["testing"]["beam_size"] = beam
    path = folder / f"joey_beam{beam}.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def export_subwords(checkpoint: str, folder: Path) -> None:
    import sentencepiece

    from cronos.model import Cronos

    subwords = Cronos.load(checkpoint, device="cpu").codec.subwords
    if subwords is None or not subwords.joint:
        sys.exit(f"{checkpoint}: expected a model on one joint SentencePiece model")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spm.model").write_bytes(subwords.source)
    processor = sentencepiece.SentencePieceProcessor(model_proto=subwords.source)
    pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size()) if not processor.is_control(i)
              and not processor.is_unknown(i)]
    (folder / "vocab.txt").write_text("".join(f"{p}\n" for p in pieces), encoding="utf-8")
    print(f"{folder}/spm.model, {folder}/vocab.txt ({len(pieces)} pieces)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cronos", required=True, help="cronos checkpoint")
    parser.add_argument("--export-subwords", type=Path, default=None, metavar="DIR",
                        help="only write the checkpoint's SentencePiece model (spm.model) and its pieces "
                             "(vocab.txt, specials left out) into DIR, for JoeyNMT")
    parser.add_argument("--joey-python", help="the python of JoeyNMT's environment")
    parser.add_argument("--joey-config", type=Path)
    parser.add_argument("--src", type=Path)
    parser.add_argument("--ref", type=Path)
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--batch-size", type=int, default=128, help="sentences per batch, both sides [128]")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if args.export_subwords:
        return export_subwords(args.cronos, args.export_subwords)
    if not (args.joey_python and args.joey_config and args.src and args.ref):
        parser.error("--joey-python, --joey-config, --src and --ref are needed to compare")
    sentences = len(args.src.read_text(encoding="utf-8").splitlines())
    references = args.ref.read_text(encoding="utf-8").splitlines()
    best: dict[tuple[str, int], dict] = {}
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(args.rounds):
            for beam in args.beams:
                commands = {
                    "cronos": [sys.executable, "-m", "cronos", "translate", args.cronos, "--beam", str(beam),
                               "--batch-size", str(args.batch_size), "--device", "cpu"],
                    "joeynmt": [args.joey_python, "-m", "joeynmt", "translate",
                                str(joey_config(args.joey_config, beam, Path(folder)))],
                }
                for name, command in commands.items():
                    seconds, out, err = run(command, args.src)
                    outputs = out.splitlines()
                    generation = re.findall(r"Generation took ([\d.]+)", err)
                    entry = {"seconds": seconds, "outputs": outputs,
                             "decoding": float(generation[-1]) if generation else None}
                    print(f"round {round_ + 1} beam {beam} {name}: {seconds:.1f} s", flush=True)
                    if (name, beam) not in best or seconds < best[name, beam]["seconds"]:
                        best[name, beam] = entry
    print(f"\n{sentences} sentences; best of {args.rounds} rounds; whole command (start-up and loading included)\n")
    print("| beam | system | seconds | sentences/s | decoding alone, s | BLEU | output/reference length |")
    print("|---|---|---|---|---|---|---|")
    for beam in args.beams:
        for name in ("cronos", "joeynmt"):
            entry = best[name, beam]
            if len(entry["outputs"]) != sentences:
                sys.exit(f"{name} wrote {len(entry['outputs'])} lines for {sentences} sentences")
            bleu = sacrebleu.corpus_bleu(entry["outputs"], [references])
            decoding = f"{entry['decoding']:.1f}" if entry["decoding"] is not None else "-"
            print(f"| {beam} | {name} | {entry['seconds']:.1f} | {sentences / entry['seconds']:.1f} | {decoding} | "
                  f"{bleu.score:.2f} | {bleu.sys_len / bleu.ref_len:.3f} |")


if __name__ == "__main__":
    main()
