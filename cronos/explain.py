"""Attention explanations, trimmed to true lengths: JSON and labelled heatmaps."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from .data import collate, encode_sources

__all__ = ["Explanation", "PlotDependencyError", "explain_decoded", "explain_forced"]


class PlotDependencyError(ImportError):
    """matplotlib is missing: it comes with the ``plot`` extra."""


@dataclass(frozen=True)
class Explanation:
    """Which source tokens each output token attended to.

    ``attention [len(output_tokens), len(source_tokens)]``: row ``i`` is the cross-attention when
    output token ``i`` was produced (transformer: last layer, averaged over heads); rows sum to 1.
    ``padding_attention`` is the attention mass that fell on padded source positions before
    trimming: exactly 0.0 when ``model.mask_padding`` is on.
    """

    source: str
    source_tokens: list[str]
    output: str
    output_tokens: list[str]
    attention: torch.Tensor
    score: float | None
    padding_attention: float
    forced: bool  # True when the output was given (``targets``), not decoded

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "source_tokens": self.source_tokens,
            "output": self.output, "output_tokens": self.output_tokens,
            "attention": [[round(float(x), 6) for x in row] for row in self.attention],
            "score": self.score, "padding_attention": self.padding_attention, "forced": self.forced,
        }

    def plot(self, path: str | Path, title: str | None = None) -> Path:
        """Write a heatmap PNG: output tokens down, source tokens across."""
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            raise PlotDependencyError("plotting needs matplotlib: pip install 'cronos[plot]'") from None
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        show = lambda tokens: [t if t.strip() else "␣" for t in tokens]  # noqa: E731 - spaces visible
        rows, cols = self.attention.shape
        figure, axes = plt.subplots(figsize=(max(4.0, 0.35 * cols + 1.5), max(3.0, 0.35 * rows + 1.5)))
        image = axes.imshow(self.attention.numpy(), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        axes.set_xticks(range(cols), show(self.source_tokens), rotation=90 if cols > 20 else 0)
        axes.set_yticks(range(rows), show(self.output_tokens))
        axes.set_xlabel("source")
        axes.set_ylabel("output")
        axes.set_title(title or f"{self.source}  →  {self.output}", fontsize=10)
        figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
        figure.tight_layout()
        figure.savefig(path, dpi=120)
        plt.close(figure)
        return path


def explain_decoded(model, sources: Sequence[str], beam_size: int) -> list[Explanation]:
    """Decode ``sources`` and explain each returned hypothesis."""
    from .evaluation import decode_examples

    examples = encode_sources(sources, model.tokenizer, model.src_vocab, max_length=model.config.data.max_length)
    evaluation = model.config.evaluation
    hypotheses = decode_examples(model, examples, beam_size, evaluation.length_penalty, evaluation.batch_size,
                                 need_attention=True)
    return [_explanation(model, source, example.src_length, [model.tgt_vocab.itos[t] for t in h.tokens],
                         model.detokenize(h.tokens), h.attention, h.score, forced=False)
            for source, example, h in zip(sources, examples, hypotheses)]


@torch.no_grad()
def explain_forced(model, sources: Sequence[str], targets: Sequence[str]) -> list[Explanation]:
    """Teacher-force ``targets`` and explain each of their tokens."""
    examples = encode_sources(sources, model.tokenizer, model.src_vocab, targets, model.tgt_vocab,
                              model.config.data.max_length)
    was_training = model.training
    model.eval()
    results: list[Explanation | None] = [None] * len(examples)
    batch_size = model.config.evaluation.batch_size
    for start in range(0, len(examples), batch_size):
        chunk = examples[start: start + batch_size]
        batch = collate(chunk).to(model.device)
        _, attention = model(batch.src, batch.src_lengths, batch.tgt_in)  # [B, T, S]
        for row, example in enumerate(chunk):
            output_tokens = model.tokenizer.tokenize(targets[example.index])[: example.tgt_length - 1]  # as read
            rows = attention[row, : len(output_tokens)].float().cpu()  # the <eos> row is not an output token
            results[example.index] = _explanation(model, sources[example.index], example.src_length, output_tokens,
                                                  targets[example.index], rows, None, forced=True)
    model.train(was_training)
    return results


def _explanation(model, source: str, source_length: int, output_tokens: list[str], output: str,
                 attention: torch.Tensor, score: float | None, forced: bool) -> Explanation:
    source_tokens = model.tokenizer.tokenize(source)[:source_length]  # as the model read it: cut to max_length
    return Explanation(source=source, source_tokens=source_tokens, output=output, output_tokens=output_tokens,
                       attention=attention[:, :source_length].clone(), score=score,
                       padding_attention=float(attention[:, source_length:].sum()), forced=forced)
