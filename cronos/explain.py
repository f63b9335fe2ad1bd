"""Attention explanations, trimmed to true lengths: JSON and labelled heatmaps."""
from __future__ import annotations

import dataclasses
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from .config import EvaluationConfig
from .data import Batch, TextCodec
from .data.subwords import WORD_START
from .network import Seq2Seq
from .search import decode_examples, in_length_batches, teacher_forced

__all__ = ["Explanation", "PlotDependencyError", "explain_decoded", "explain_forced"]


class PlotDependencyError(ImportError):
    """matplotlib is missing: it comes with the ``plot`` extra."""


@dataclass(frozen=True)
class Explanation:
    """Which source tokens each output token attended to.

    ``attention [len(output_tokens), len(source_tokens)]``: row ``i`` is the cross-attention when
    output token ``i`` was produced (transformer: last layer, averaged over heads); rows sum to 1.
    ``padding_attention`` is the attention mass that fell on padded source positions before
    trimming: exactly 0.0 when ``model.mask_padding`` is on.  ``word_pieces``: the tokens are
    SentencePiece pieces (``"▁"`` starts a word), so ``to_words`` can join them into words.
    """

    source: str
    source_tokens: list[str]
    output: str
    output_tokens: list[str]
    attention: torch.Tensor
    score: float | None
    padding_attention: float
    forced: bool  # True when the output was given (``targets``), not decoded
    word_pieces: bool = False

    def to_words(self) -> "Explanation":
        """The same explanation over words: a source word's attention is the sum over its pieces, an
        output word's row the mean of its pieces' rows, so rows still sum to 1.  Itself when the
        tokens are no word pieces."""
        if not self.word_pieces:
            return self
        source_words, source_groups = _words(self.source_tokens)
        output_words, output_groups = _words(self.output_tokens)
        columns = torch.stack([self.attention[:, group].sum(dim=1) for group in source_groups], dim=1)  # [T, W_s]
        rows = torch.stack([columns[group].mean(dim=0) for group in output_groups]) if output_groups else columns[:0]
        return dataclasses.replace(self, source_tokens=source_words, output_tokens=output_words, attention=rows,
                                   word_pieces=False)

    def to_dict(self) -> dict[str, Any]:
        entry = {
            "source": self.source, "source_tokens": self.source_tokens,
            "output": self.output, "output_tokens": self.output_tokens,
            "attention": [[round(float(x), 6) for x in row] for row in self.attention],
            "score": self.score, "padding_attention": self.padding_attention, "forced": self.forced,
        }
        if self.word_pieces:
            words = self.to_words()
            entry["words"] = {"source_words": words.source_tokens, "output_words": words.output_tokens,
                              "attention": [[round(float(x), 6) for x in row] for row in words.attention]}
        return entry

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
        show = _piece_labels if self.word_pieces else _token_labels
        rows, cols = self.attention.shape
        across = show(self.source_tokens)
        upright = max(map(len, across), default=0) > 2 or cols > 20  # words and pieces: read bottom-up
        width = max(4.0, 0.35 * cols + 1.5)
        height = max(3.0, 0.35 * rows + 1.5) + (0.07 * max(map(len, across), default=0) if upright else 0.0)
        figure, axes = plt.subplots(figsize=(width, height))
        image = axes.imshow(self.attention.numpy(), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        axes.set_xticks(range(cols), across, rotation=90 if upright else 0)
        axes.set_yticks(range(rows), show(self.output_tokens))
        axes.set_xlabel("source")
        axes.set_ylabel("output")
        axes.set_title(textwrap.fill(title or f"{self.source}  →  {self.output}", width=int(width * 11)), fontsize=9)
        figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
        figure.tight_layout()
        figure.savefig(path, dpi=120)
        plt.close(figure)
        return path


def _words(pieces: Sequence[str]) -> tuple[list[str], list[list[int]]]:
    """Pieces -> words, and each word's piece positions: a piece with ``▁`` starts a word."""
    words, groups = [], []
    for position, piece in enumerate(pieces):
        if piece.startswith(WORD_START) or not groups:
            words.append(piece.removeprefix(WORD_START))
            groups.append([position])
        else:
            words[-1] += piece
            groups[-1].append(position)
    return words, groups


def _token_labels(tokens: Sequence[str]) -> list[str]:
    return [t if t.strip() else "␣" for t in tokens]  # spaces visible


def _piece_labels(pieces: Sequence[str]) -> list[str]:
    """Readable piece labels: a word's first piece as the text it starts with, a continuation after "·"."""
    return [p.removeprefix(WORD_START) or "▁" if p.startswith(WORD_START) else f"·{p}" for p in pieces]


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

    def explain_batch(batch: Batch, positions: list[int]) -> list[Explanation]:
        _, attention = teacher_forced(network, batch)  # [B, T, S]
        explanations = []
        for row, i in enumerate(positions):
            output_tokens = codec.read_target(targets[i])  # as the model read them
            rows = attention[row, : len(output_tokens)].float().cpu()  # the <eos> row is not an output token
            explanations.append(_explanation(codec, sources[i], examples[i].src_length, output_tokens, targets[i],
                                             rows, None, forced=True))
        return explanations
    return in_length_batches(network, examples, batch_size, explain_batch)


def _explanation(codec: TextCodec, source: str, source_length: int, output_tokens: list[str], output: str,
                 attention: torch.Tensor, score: float | None, forced: bool) -> Explanation:
    source_tokens = codec.read_source(source)  # as the model read it: cut to max_length
    return Explanation(source=source, source_tokens=source_tokens, output=output, output_tokens=output_tokens,
                       attention=attention[:, :source_length].clone(), score=score,
                       padding_attention=float(attention[:, source_length:].sum()), forced=forced,
                       word_pieces=codec.subwords is not None)
