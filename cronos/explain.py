"""Attention explanations, trimmed to true lengths: JSON and labelled heatmaps."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from .config import EvaluationConfig
from .data import TextCodec, collate, length_batches
from .network import Seq2Seq, evaluating
from .search import decode_examples

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


def explain_decoded(network: Seq2Seq, codec: TextCodec, sources: Sequence[str], options: EvaluationConfig,
                    beam_size: int | None = None) -> list[Explanation]:
    """Decode ``sources`` and explain each returned hypothesis."""
    examples = codec.encode(sources)
    hypotheses = decode_examples(network, examples, options, beam_size, need_weights=True)
    return [_explanation(codec, source, example.src_length, codec.output_tokens(h.tokens), codec.decode(h.tokens),
                         h.attention, h.score, forced=False)
            for source, example, h in zip(sources, examples, hypotheses)]


def explain_forced(network: Seq2Seq, codec: TextCodec, sources: Sequence[str], targets: Sequence[str],
                   batch_size: int) -> list[Explanation]:
    """Teacher-force ``targets`` and explain each of their tokens."""
    examples = codec.encode(sources, targets)
    results: list[Explanation | None] = [None] * len(examples)
    with evaluating(network):
        for positions in length_batches(examples, batch_size):
            batch = collate([examples[i] for i in positions]).to(network.device)
            _, attention = network(batch.src, batch.src_lengths, batch.tgt_in)  # [B, T, S]
            for row, i in enumerate(positions):
                output_tokens = codec.read_tokens(targets[i])  # as the model read them
                rows = attention[row, : len(output_tokens)].float().cpu()  # the <eos> row is not an output token
                results[i] = _explanation(codec, sources[i], examples[i].src_length, output_tokens, targets[i],
                                          rows, None, forced=True)
    return results


def _explanation(codec: TextCodec, source: str, source_length: int, output_tokens: list[str], output: str,
                 attention: torch.Tensor, score: float | None, forced: bool) -> Explanation:
    source_tokens = codec.read_tokens(source)  # as the model read it: cut to max_length
    return Explanation(source=source, source_tokens=source_tokens, output=output, output_tokens=output_tokens,
                       attention=attention[:, :source_length].clone(), score=score,
                       padding_attention=float(attention[:, source_length:].sum()), forced=forced)
