#!/usr/bin/env python3
"""Two ways to run a model's linear layers in int8, measured on the same checkpoint: cronos's
(``quantize="int8"``: each row quantized with its own scale) and torch's dynamic quantization
(``torch.ao.quantization.quantize_dynamic``: one scale for the whole input tensor of a layer).

    python scripts/int8_schemes.py runs/multi30k_transformer_spm/best.pt --set data.root=...

For float32 and each scheme: decoding speed (sentences/s, greedy and beam, at ``--batch-size``),
BLEU of the outputs, and how many of the split's examples get another log-probability, or
another output, at batch size 1 than at ``--batch-size``: with one scale per tensor, the largest
activation of any sentence in the batch (padding included) sets every sentence's rounding.
Runs alternate in one process, ``--repeats`` times (medians).  Run it alone on the machine.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--split", default="test")
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="the first N examples only (smoke runs)")
    args = parser.parse_args()

    import sacrebleu

    from cronos.data import load_split
    from cronos.model import Cronos
    from cronos.modules.quantized import quantize_linear_layers
    from cronos.scoring import score_examples
    from cronos.search import Beam, decode

    model = Cronos.load(args.checkpoint, device="cpu")
    split = load_split(args.split, model.config.data, model.codec)
    examples, references = split.examples[: args.limit], split.targets[: args.limit]
    networks = {"float32": model.network,
                "cronos int8 (a scale per row)": quantize_linear_layers(copy.deepcopy(model.network)),
                "torch.ao dynamic int8 (a scale per tensor)": torch.ao.quantization.quantize_dynamic(
                    copy.deepcopy(model.network), {torch.nn.Linear}, dtype=torch.qint8)}
    print(f"| scheme | beam | sentences/s | BLEU | outputs that differ, batch size 1 vs {args.batch_size} | "
          f"log-probs that differ | largest log-prob difference |")
    print("|---|---|---|---|---|---|---|")
    for beam in args.beams:
        seconds: dict[str, list[float]] = {name: [] for name in networks}
        outputs: dict[str, list] = {}
        for _ in range(args.repeats):
            for name, network in networks.items():
                start = time.perf_counter()
                outputs[name] = decode(network, examples, Beam(beam), model.config.decoding, args.batch_size)
                seconds[name].append(time.perf_counter() - start)
        for name, network in networks.items():
            alone = decode(network, examples, Beam(beam), model.config.decoding, 1)
            texts = [model.codec.to_text(h[0].tokens) for h in outputs[name]]
            changed = sum(a[0].tokens != b[0].tokens for a, b in zip(alone, outputs[name]))
            scores_one = score_examples(network, examples, 1)
            scores_many = score_examples(network, examples, args.batch_size)
            gaps = [abs(a.log_prob - b.log_prob) for a, b in zip(scores_one, scores_many)]
            bleu = sacrebleu.corpus_bleu(texts, [list(references)]).score
            print(f"| {name} | {beam} | {len(examples) / statistics.median(seconds[name]):.1f} | {bleu:.2f} | "
                  f"{changed} of {len(examples)} | {sum(g > 0 for g in gaps)} | {max(gaps):.2e} |", flush=True)


if __name__ == "__main__":
    main()
