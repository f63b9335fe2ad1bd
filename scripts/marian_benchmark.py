#!/usr/bin/env python3
"""An imported OPUS-MT-sized model's decoding speed and memory: cronos float32 and int8,
transformers' ``generate`` and CTranslate2 (its own conversion of the same folder), beam 4, on the
CPU; and what fine-tuning it costs a step.

    python scripts/marian_benchmark.py --out /tmp/marian-bench --json marian.json
    python scripts/marian_benchmark.py --out /tmp/marian-small --size tiny      # a quick check

The model is a random ``MarianMTModel`` of OPUS-MT's size (d 512, 6+6 layers, 8 heads, ffn 2048,
a shared vocabulary of 58,101 tokens: the SentencePiece pieces of the dates data and filler
tokens), which cronos imports (``cronos import --from marian``) and CTranslate2 converts
(``TransformersConverter``).  Every engine decodes the same sources with every output exactly
``--length`` tokens long (minimum and maximum length both set), so all decode the same number of
tokens; speed is generated tokens (of the best hypothesis) per second, after one warm-up batch.
Each engine runs in a process of its own, with ``--threads`` threads, one after the other, and
reports its peak resident memory.  Fine-tuning: ``cronos train`` on the imported model's own
config (``OUT.yaml``) for ``--train-steps`` steps on the dates pairs, batches of 3,000 tokens;
its progress log's tokens/s after the first window.
"""
from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIZES = {"opus": {"d_model": 512, "encoder_layers": 6, "decoder_layers": 6, "encoder_attention_heads": 8,
                  "decoder_attention_heads": 8, "encoder_ffn_dim": 2048, "decoder_ffn_dim": 2048, "vocab": 58101},
         "tiny": {"d_model": 64, "encoder_layers": 2, "decoder_layers": 2, "encoder_attention_heads": 4,
                  "decoder_attention_heads": 4, "encoder_ffn_dim": 128, "decoder_ffn_dim": 128, "vocab": 2000}}
ENGINES = ("cronos float32", "cronos int8", "transformers", "ctranslate2")
SPEED = re.compile(r"step (\d+)/\d+ .*?, ([\d,]+) tok/s")


def make_model(folder: Path, size: str) -> Path:
    """A random MarianMTModel of ``size`` in ``folder``, laid out as an OPUS-MT folder."""
    import sentencepiece as spm
    import torch
    from transformers import MarianConfig, MarianMTModel

    folder.mkdir(parents=True)
    lines = (ROOT / "data" / "dates" / "train.tsv").read_text(encoding="utf-8").splitlines()
    for name, column, pieces in (("source", 0, 200), ("target", 1, 24)):
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(line.split("\t")[column] for line in lines), model_prefix=str(folder / name),
            vocab_size=pieces, unk_id=1, eos_id=0, bos_id=-1, pad_id=-1, unk_piece="<unk>", eos_piece="</s>",
            minloglevel=2, num_threads=1)
        (folder / f"{name}.model").rename(folder / f"{name}.spm")
        (folder / f"{name}.vocab").unlink()
    settings = dict(SIZES[size])
    vocab_size = settings.pop("vocab")
    vocabulary = {"</s>": 0, "<unk>": 1}
    for name in ("source", "target"):
        model = spm.SentencePieceProcessor(model_file=str(folder / f"{name}.spm"))
        for i in range(model.get_piece_size()):
            vocabulary.setdefault(model.id_to_piece(i), len(vocabulary))
    while len(vocabulary) < vocab_size - 1:
        vocabulary[f"\u2581filler{len(vocabulary)}"] = len(vocabulary)
    vocabulary["<pad>"] = len(vocabulary)
    (folder / "vocab.json").write_text(json.dumps(vocabulary, ensure_ascii=False))
    pad = vocabulary["<pad>"]
    config = MarianConfig(vocab_size=len(vocabulary), pad_token_id=pad, decoder_start_token_id=pad, eos_token_id=0,
                          forced_eos_token_id=0, activation_function="swish", scale_embedding=True,
                          max_position_embeddings=512, **settings)
    torch.manual_seed(0)
    MarianMTModel(config).save_pretrained(folder)
    return folder


def sources(count: int) -> list[str]:
    lines = (ROOT / "data" / "dates" / "test.tsv").read_text(encoding="utf-8").splitlines()
    return [line.split("\t")[0] for line in lines[:count]]


def run_engine(engine: str, folder: Path, texts: list[str], length: int, batch: int, threads: int) -> dict:
    """Decode ``texts`` with ``engine`` (in this process); tokens, seconds, peak memory."""
    if engine != "ctranslate2":  # CTranslate2 runs without torch: its memory is its own
        import torch

        torch.set_num_threads(threads)
    decode = _decoder(engine, folder, length, threads)
    decode(texts[:batch])  # warm-up
    started = time.perf_counter()
    tokens = sum(decode(texts[i:i + batch]) for i in range(0, len(texts), batch))
    seconds = time.perf_counter() - started
    return {"engine": engine, "tokens": tokens, "seconds": round(seconds, 2),
            "tokens_per_second": round(tokens / seconds, 1),
            "peak_memory_mib": peak_memory_mib()}


def peak_memory_mib() -> int:
    """This process's peak resident memory (``VmHWM``: its own, where ``ru_maxrss`` may carry the
    parent's peak across fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def _decoder(engine: str, folder: Path, length: int, threads: int):
    """A function: a batch of texts -> the number of tokens its best outputs hold."""
    if engine.startswith("cronos"):
        import cronos
        from cronos.decoding.search import Beam, decode

        translator = cronos.Translator.load(folder.parent / "imported.pt", "cpu",
                                            quantize="int8" if engine.endswith("int8") else None)
        options = translator._decoding({"min_length": length, "max_length_ratio": 0.0, "max_length_offset": length})
        return lambda texts: sum(len(found[0].tokens) for found in decode(
            translator.network, translator.codec.encode(texts), Beam(4), options))
    if engine == "transformers":
        import torch
        from transformers import MarianMTModel, MarianTokenizer

        model, tokenizer = MarianMTModel.from_pretrained(folder).eval(), MarianTokenizer.from_pretrained(folder)

        def generate(texts):
            with torch.inference_mode():
                out = model.generate(**tokenizer(texts, return_tensors="pt", padding=True), num_beams=4,
                                     min_new_tokens=length, max_new_tokens=length,
                                     bad_words_ids=[[model.config.pad_token_id]])
            return int((out[:, 1:] != model.config.pad_token_id).sum())
        return generate
    import ctranslate2
    import sentencepiece as spm

    translator = ctranslate2.Translator(str(folder.parent / "ct2"), device="cpu", intra_threads=threads)
    pieces = spm.SentencePieceProcessor(model_file=str(folder / "source.spm"))

    def translate(texts):
        tokens = [t + ["</s>"] for t in pieces.encode(texts, out_type=str)]
        results = translator.translate_batch(tokens, beam_size=4, min_decoding_length=length,
                                             max_decoding_length=length, return_end_token=True)
        return sum(len(r.hypotheses[0]) for r in results)
    return translate


def fine_tuning_speed(out: Path, steps: int, threads: int) -> float:
    """Training tokens/s of ``cronos train`` on the imported model's config (dates pairs)."""
    command = [sys.executable, "-m", "cronos", "train", str(out / "imported.yaml"),
               "--set", f"data.train={ROOT / 'data' / 'dates' / 'train.tsv'}",
               "--set", f"data.valid={ROOT / 'data' / 'dates' / 'valid.tsv'}",
               "--set", f"output_dir={out / 'fine-tune'}", "--set", f"training.max_steps={steps}",
               "--set", "training.batch_tokens=3000", "--set", f"training.log_every={max(1, steps // 4)}",
               "--set", "training.progress=false", "--set", f"training.num_threads={threads}",
               "--set", "training.validate_every=100000"]
    log = subprocess.run(command, capture_output=True, text=True, check=True).stderr
    speeds = [float(m.group(2).replace(",", "")) for m in SPEED.finditer(log)]
    return round(sum(speeds[1:]) / len(speeds[1:]), 1) if len(speeds) > 1 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="a new folder for the model and its conversions")
    parser.add_argument("--size", choices=SIZES, default="opus")
    parser.add_argument("--sentences", type=int, default=64)
    parser.add_argument("--length", type=int, default=30, help="tokens every output has")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=40)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--engine", choices=ENGINES, default=None, help=argparse.SUPPRESS)  # a child's
    args = parser.parse_args()
    texts = sources(args.sentences)
    folder = args.out / "marian"
    if args.engine is not None:
        print(json.dumps(run_engine(args.engine, folder, texts, args.length, args.batch, args.threads)))
        return
    import ctranslate2

    make_model(folder, args.size)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cronos", "import", "--from", "marian", str(folder),
                    str(args.out / "imported.pt")], check=True)
    imported = time.perf_counter() - started
    ctranslate2.converters.TransformersConverter(str(folder)).convert(str(args.out / "ct2"))
    results = {"size": args.size, "sentences": args.sentences, "length": args.length, "beam": 4,
               "threads": args.threads, "import_seconds": round(imported, 1), "engines": []}
    for engine in ENGINES:
        child = subprocess.run([sys.executable, __file__, "--out", str(args.out), "--size", args.size,
                                "--sentences", str(args.sentences), "--length", str(args.length), "--batch",
                                str(args.batch), "--threads", str(args.threads), "--engine", engine],
                               capture_output=True, text=True, check=True)
        results["engines"].append(json.loads(child.stdout.strip().splitlines()[-1]))
        print(results["engines"][-1], flush=True)
    results["fine_tuning_tokens_per_second"] = fine_tuning_speed(args.out, args.train_steps, args.threads)
    print(json.dumps(results, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
