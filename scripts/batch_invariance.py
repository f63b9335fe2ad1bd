#!/usr/bin/env python3
"""P0 probe: does an example's result depend on its batch, to the bit? (CPU, float32)

    python scripts/batch_invariance.py                      # every family, torch's threads
    python scripts/batch_invariance.py --threads 1 --trace  # and the first layers that differ

For each model family (a GRU with additive attention, an LSTM with general attention, a
Transformer; each trained one epoch on the embedded dates data, dropout 0) it compares, on the
first ``--pairs`` test pairs, the results of batch size 1 with those of batch size 64: per-token
log-probs (`score`), greedy and beam-5 translations and their scores.  It counts the examples whose
results are not bit-identical and the largest difference.  ``--trace`` runs the teacher-forced
forward of the first example alone and in a batch of mixed lengths with a hook on every module,
and prints where the two first differ (on the example's real positions): the layer that makes
the arithmetic depend on the batch.  ``--kernels`` runs the primitive experiments behind those
layers instead (docs/batch_invariance.md).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import cronos  # noqa: E402
import cronos.modules.masking  # noqa: E402
from cronos.data import collate  # noqa: E402
from cronos.decoding.inference import teacher_forced  # noqa: E402
from helpers import DATES, tiny_config  # noqa: E402


def _rnn(cell: str, size: int = 32) -> dict:
    return {"type": "rnn", "cell": cell, "hidden_size": size, "dropout": 0.0}


TRANSFORMER = {"type": "transformer", "hidden_size": 32, "layers": 2, "heads": 4, "ff_size": 64, "dropout": 0.0}
FAMILIES = {
    "gru-additive": {"encoder": _rnn("gru"), "decoder": {**_rnn("gru", 64), "attention": "additive"}},
    "lstm-general": {"encoder": _rnn("lstm"), "decoder": {**_rnn("lstm", 64), "attention": "general"}},
    "transformer": {"encoder": TRANSFORMER, "decoder": TRANSFORMER},
}


def trained(family: str, folder: Path) -> cronos.Cronos:
    config = tiny_config(folder, model={"embedding_size": 16, **FAMILIES[family]}, training={"epochs": 1})
    return cronos.fit(cronos.load_config(config))


def compare(model: cronos.Cronos, pairs: list[tuple[str, str]]) -> dict[str, tuple[int, float]]:
    """Per result: (examples not bit-identical between batch sizes 1 and 64, largest difference)."""
    found = {}
    alone, batched = (model.score(pairs, per_token=True, batch_size=size) for size in (1, 64))
    found["score (per-token log-probs)"] = (
        sum(a.token_log_probs != b.token_log_probs for a, b in zip(alone, batched)),
        max(max(abs(x - y) for x, y in zip(a.token_log_probs, b.token_log_probs)) for a, b in zip(alone, batched)))
    sources = [source for source, _ in pairs]
    for beam in (1, 5):
        one, many = (model.translate(sources, beam_size=beam, batch_size=size, n_best=1) for size in (1, 64))
        found[f"beam {beam}: texts"] = (sum(a[0].text != b[0].text for a, b in zip(one, many)), 0.0)
        found[f"beam {beam}: scores"] = (sum(a[0].score != b[0].score for a, b in zip(one, many)),
                                         max(abs(a[0].score - b[0].score) for a, b in zip(one, many)))
    return found


def trace(model: cronos.Cronos, pairs: list[tuple[str, str]], shown: int = 4) -> list[str]:
    """The first ``shown`` modules whose output for the first example differs between alone and a batch."""
    examples = model.codec.encode([s for s, _ in pairs], [t for _, t in pairs])
    outputs: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(module, inputs, output):
            output = output[0] if isinstance(output, tuple) else output
            if isinstance(output, torch.Tensor) and name not in outputs:
                outputs[name] = output.detach()[:1].clone()
        return hook

    network = model.network.eval()
    handles = [module.register_forward_hook(keep(name)) for name, module in network.named_modules() if name]
    runs = []
    with torch.no_grad():
        for batch in (examples[:1], examples):
            outputs.clear()
            teacher_forced(network, collate(batch))
            runs.append(dict(outputs))
    for handle in handles:
        handle.remove()
    lines = []
    for name, alone in runs[0].items():
        batched = runs[1].get(name)
        if batched is None or alone.dim() != batched.dim():
            continue
        real = tuple(slice(0, min(a, b)) for a, b in zip(alone.shape, batched.shape))
        if not torch.equal(alone[real], batched[real]):
            gap = float((alone[real] - batched[real]).abs().max())
            lines.append(f"{name}: {tuple(alone.shape)} alone, {tuple(batched.shape)} in the batch, differs by {gap:.1e}")
            if len(lines) == shown:
                break
    return lines


def kernels(threads: int) -> list[str]:
    """The primitive experiments behind the traces, at ``threads`` threads: which row counts M give
    each row of ``X[:M] @ W.T`` the bits it has in a 256-row product (``F.linear``, MKL: what
    training and gradients use; cronos's ``Linear`` in inference, oneDNN with a packed weight), and
    whether a softmax over keys (and its weights times values) keeps its bits when the keys are
    padded, by how much."""
    from cronos.modules.linear import Linear, packed_for_inference

    torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(0)
    lines = []
    for k, n in ((11, 11), (64, 15), (256, 256), (256, 1024), (512, 9923)):  # the first three: MKL's product
        layer = Linear(k, n, bias=False)
        with torch.no_grad():
            layer.weight.copy_(torch.randn(n, k, generator=generator))
        rows = torch.randn(256, k, generator=generator)
        for name, product in (("F.linear", lambda x: torch.nn.functional.linear(x, layer.weight)),
                              ("cronos Linear, inference", layer)):
            with torch.no_grad(), packed_for_inference(layer):
                full = product(rows)
                differ = [m for m in range(1, 65) if not torch.equal(product(rows[:m]), full[:m])]
            lines.append(f"{threads} thread(s), [M, {k}] @ [{k}, {n}], {name}: rows differ for M in {differ} "
                         "(of 1-64)")
    for multiple in (1, 8, 16):
        cases = differ = fused = 0
        for length in range(1, 70):
            for extra in (1, 5, 13, 30, 70):
                padded = [-(-size // multiple) * multiple for size in (length, length + extra)]
                query = torch.randn(1, 4, 7, 8, generator=generator)
                keys, values = (torch.randn(1, 4, padded[1], 8, generator=generator) for _ in range(2))
                results, fused_results = [], []
                for size in padded:
                    mask = torch.zeros(1, size, dtype=torch.bool)
                    mask[:, :length] = True
                    weights = cronos.modules.masking.masked_softmax(query @ keys[:, :, :size].transpose(-1, -2), mask)
                    results.append(weights @ values[:, :, :size])
                    fused_results.append(torch.nn.functional.scaled_dot_product_attention(
                        query, keys[:, :, :size], values[:, :, :size], attn_mask=mask[:, None, None, :]))
                cases, differ = cases + 1, differ + (not torch.equal(*results))
                fused += not torch.equal(*fused_results)
        lines.append(f"{threads} thread(s), attention with keys padded to a multiple of {multiple}: "
                     f"{differ} of {cases} (length, padding) cases differ; by scaled_dot_product_attention: {fused}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--pairs", type=int, default=300, help="test pairs compared")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--trace", action="store_true", help="also print the first layers whose outputs differ")
    parser.add_argument("--kernels", action="store_true",
                        help="only the primitive experiments (products by row count, padded softmax), at 1 and 2 threads")
    args = parser.parse_args()
    if args.kernels:
        print("\n".join(kernels(1) + kernels(2)))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    lines = (DATES / "test.tsv").read_text(encoding="utf-8").splitlines()[: args.pairs]
    pairs = [tuple(line.split("\t")) for line in lines]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {len(pairs)} pairs, "
          "batch size 1 against 64: examples not bit-identical (largest difference)")
    for family in args.families:
        with tempfile.TemporaryDirectory() as folder:
            model = trained(family, Path(folder))
            for what, (count, gap) in compare(model, pairs).items():
                print(f"{family:14s} {what:30s} {count:4d} of {len(pairs)} ({gap:.1e})")
            if args.trace:
                for line in trace(model, pairs[:40]):
                    print(f"{family:14s}   first differing: {line}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
