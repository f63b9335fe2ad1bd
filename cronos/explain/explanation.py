"""Explanations, trimmed to true lengths: attention, and gradient attributions (``attribution.py``)
beside it; JSON and labelled heatmaps."""
from __future__ import annotations

import dataclasses
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from .attribution import ATTRIBUTION_METHODS, attribute
from ..config import DecodingConfig
from ..data import Batch, Example, TextCodec
from ..data.preprocess import TokenizedPair
from ..data.subwords import WORD_START
from ..data.vocab import EOS
from ..modules.network import Seq2Seq
from ..decoding.inference import in_length_batches, teacher_forced
from ..decoding.search import Beam, decode

__all__ = ["EXPLAIN_METHODS", "Explanation", "PlotDependencyError", "explain_decoded", "explain_forced",
           "piece_labels"]

EXPLAIN_METHODS = ("attention", *ATTRIBUTION_METHODS)


class PlotDependencyError(ImportError):
    """matplotlib is missing: it comes with the ``plot`` extra."""


@dataclass(frozen=True)
class Explanation:
    """Which source tokens each output token attended to, and, for a gradient ``method``, how much
    each moved its log-probability.

    ``attention [len(output_tokens), len(source_tokens)]``: row ``i`` is the cross-attention when
    output token ``i`` was produced (transformer: last layer, averaged over heads); rows sum to 1.
    ``padding_attention`` is the attention mass that fell on padded source positions before
    trimming: exactly 0.0 when ``model.mask_padding`` is on.  ``word_pieces``: the tokens are
    SentencePiece pieces (``"▁"`` starts a word), so ``to_words`` can join them into words.

    ``method``: ``attention`` (nothing more), or ``saliency``, ``input_x_gradient`` or
    ``integrated_gradients``, whose scores are ``attribution`` (the same shape as ``attention``;
    see ``cronos.explain.attribution``); ``padding_attribution``: the absolute attribution that fell on
    padded positions before trimming, exactly 0.0; ``completeness_gaps``: per output token,
    integrated gradients' sum of scores minus the log-prob's difference to the baseline.
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
    method: str = "attention"
    attribution: torch.Tensor | None = None
    padding_attribution: float | None = None
    completeness_gaps: list[float] | None = None

    def to_words(self) -> "Explanation":
        """The same explanation over words: a source word's attention is the sum over its pieces, an
        output word's row the mean of its pieces' rows, so rows still sum to 1.  Itself when the
        tokens are no word pieces.  A side written as one word becomes one column or row
        (``words_hide_pieces``): the pieces are then the view to show."""
        if not self.word_pieces:
            return self
        source_words, source_groups = _words(self.source_tokens)
        output_words, output_groups = _words(self.output_tokens)
        return dataclasses.replace(self, source_tokens=source_words, output_tokens=output_words,
                                   attention=_word_matrix(self.attention, source_groups, output_groups),
                                   attribution=None if self.attribution is None else
                                   _word_matrix(self.attribution, source_groups, output_groups),
                                   completeness_gaps=None, word_pieces=False)

    @property
    def words_hide_pieces(self) -> bool:
        """Whether the word view would hide what the pieces show: a side of several pieces that is one
        word (``1,234`` or ``2026-11-26`` written without spaces), where every attention cell would be 1."""
        if not self.word_pieces:
            return False
        return any(len(_words(tokens)[0]) == 1 < len(tokens) for tokens in (self.source_tokens, self.output_tokens))

    def to_dict(self) -> dict[str, Any]:
        entry = {
            "source": self.source, "source_tokens": self.source_tokens,
            "output": self.output, "output_tokens": self.output_tokens,
            "attention": _rounded(self.attention),
            "score": self.score, "padding_attention": self.padding_attention, "forced": self.forced,
            "method": self.method,
        }
        if self.attribution is not None:
            entry.update(attribution=_rounded(self.attribution), padding_attribution=self.padding_attribution,
                         completeness_gaps=self.completeness_gaps)
        if self.word_pieces:
            words = self.to_words()
            entry["words"] = {"source_words": words.source_tokens, "output_words": words.output_tokens,
                              "attention": _rounded(words.attention)}
            if words.attribution is not None:
                entry["words"]["attribution"] = _rounded(words.attribution)
        return entry

    def plot(self, path: str | Path, title: str | None = None) -> Path:
        """Write a heatmap PNG: output tokens down, source tokens across; the attribution beside the
        attention when there is one (diverging colours, 0 white, scaled to the largest magnitude)."""
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            raise PlotDependencyError("plotting needs matplotlib: pip install 'cronos[plot]'") from None
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        show = piece_labels if self.word_pieces else _token_labels
        rows, cols = self.attention.shape
        across = show(self.source_tokens)
        upright = max(map(len, across), default=0) > 2 or cols > 20  # words and pieces: read bottom-up
        panels = [("attention", self.attention, "viridis", 0.0, 1.0)]
        if self.attribution is not None:
            largest = float(self.attribution.abs().max()) if self.attribution.numel() else 0.0
            panels.append((self.method.replace("_", " "), self.attribution, "RdBu_r", -largest or -1.0, largest or 1.0))
        width = max(4.0, 0.35 * cols + 1.5)
        height = max(3.0, 0.35 * rows + 1.5) + (0.07 * max(map(len, across), default=0) if upright else 0.0)
        figure, all_axes = plt.subplots(1, len(panels), figsize=(width * len(panels), height), squeeze=False)
        for axes, (name, matrix, colours, low, high) in zip(all_axes[0], panels):
            image = axes.imshow(matrix.numpy(), cmap=colours, vmin=low, vmax=high, aspect="auto")
            axes.set_xticks(range(cols), across, rotation=90 if upright else 0)
            axes.set_yticks(range(rows), show(self.output_tokens))
            axes.set_xlabel(f"source ({name})" if len(panels) > 1 else "source")
            axes.set_ylabel("output")
            figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
        heading = textwrap.fill(title or f"{self.source}  →  {self.output}", width=int(width * len(panels) * 11))
        figure.suptitle(heading, fontsize=9)
        figure.tight_layout()
        figure.savefig(path, dpi=120)
        plt.close(figure)
        return path


def _rounded(matrix: torch.Tensor) -> list[list[float]]:
    return [[round(float(x), 6) for x in row] for row in matrix]


def _word_matrix(matrix: torch.Tensor, source_groups: list[list[int]], output_groups: list[list[int]]) -> torch.Tensor:
    """A word's column: the sum over its pieces (attention mass and attributions add up); a word's
    row: the mean of its pieces' rows (attention rows still sum to 1)."""
    columns = torch.stack([matrix[:, group].sum(dim=1) for group in source_groups], dim=1)  # [T, W_s]
    return torch.stack([columns[group].mean(dim=0) for group in output_groups]) if output_groups else columns[:0]


def _words(pieces: Sequence[str]) -> tuple[list[str], list[list[int]]]:
    """Pieces -> words, and each word's piece positions: a piece with ``▁`` starts a word, and the
    ``<eos>`` that ends a source (``data.source_eos``) is one of its own."""
    words, groups = [], []
    for position, piece in enumerate(pieces):
        if piece.startswith(WORD_START) or not groups or piece == EOS:
            words.append(piece.removeprefix(WORD_START))
            groups.append([position])
        else:
            words[-1] += piece
            groups[-1].append(position)
    return words, groups


def _token_labels(tokens: Sequence[str]) -> list[str]:
    return [t if t.strip() else "␣" for t in tokens]  # spaces visible


def piece_labels(pieces: Sequence[str]) -> list[str]:
    """Readable piece labels: a word's first piece as the text it starts with, a continuation after "·"."""
    return [p.removeprefix(WORD_START) or "▁" if p.startswith(WORD_START) else f"·{p}" for p in pieces]


def explain_decoded(network: Seq2Seq, codec: TextCodec, sources: Sequence[str], options: DecodingConfig,
                    beam_size: int | None = None, method: str = "attention", steps: int = 50) -> list[Explanation]:
    """Decode ``sources`` and explain each returned hypothesis (with ``method``'s attributions of its tokens)."""
    _check_method(method)
    pairs = codec.tokenize(sources)
    examples = codec.examples(pairs)
    strategy = Beam(beam_size or options.beam_size)
    hypotheses = [found[0] for found in decode(network, examples, strategy, options, need_weights=True)]
    attributions = _attributions(network, examples, [h.tokens for h in hypotheses], options.batch_size, method, steps)
    return [_explanation(codec, pair, codec.output_tokens(h.tokens), codec.to_text(h.tokens),
                         h.attention, h.score, False, method, attributed)
            for pair, h, attributed in zip(pairs, hypotheses, attributions)]


def explain_forced(network: Seq2Seq, codec: TextCodec, sources: Sequence[str], targets: Sequence[str],
                   batch_size: int, method: str = "attention", steps: int = 50) -> list[Explanation]:
    """Teacher-force ``targets`` and explain each of their tokens."""
    _check_method(method)
    pairs = codec.tokenize(sources, targets)
    examples = codec.examples(pairs)
    attributions = _attributions(network, examples, [e.tgt for e in examples], batch_size, method, steps)

    def explain_batch(batch: Batch, positions: list[int]) -> list[Explanation]:
        _, attention = teacher_forced(network, batch)  # [B, T, S]
        explanations = []
        for row, i in enumerate(positions):
            output_tokens = pairs[i].target  # as the model read them
            rows = attention[row, : len(output_tokens)].float().cpu()  # the <eos> row is not an output token
            explanations.append(_explanation(codec, pairs[i], output_tokens, targets[i], rows, None, True, method,
                                             attributions[i]))
        return explanations
    return in_length_batches(network, examples, batch_size, explain_batch)


def _check_method(method: str) -> None:
    if method not in EXPLAIN_METHODS:
        raise ValueError(f"unknown explanation method {method!r}; expected one of {', '.join(EXPLAIN_METHODS)}")


def _attributions(network: Seq2Seq, examples: Sequence[Example], outputs: Sequence[Sequence[int]], batch_size: int,
                  method: str, steps: int) -> list[tuple[torch.Tensor, torch.Tensor | None] | None]:
    """Per example, ``method``'s attribution of each of its ``outputs`` tokens (teacher-forced;
    ``[T + 1, S]`` over the batch's padded source, and the completeness gaps ``[T + 1]`` or None);
    Nones for ``attention``.  Batched like decoding; an example's are its own (``attribute``)."""
    if method == "attention":
        return [None] * len(examples)
    forced = [dataclasses.replace(e, tgt=tuple(tokens), tgt_length=len(tokens) + 1)
              for e, tokens in zip(examples, outputs)]

    def attribute_batch(batch: Batch, positions: list[int]) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        found = attribute(network, batch, method, steps)
        return [(found.scores[row].float().cpu(), None if found.gaps is None else found.gaps[row].cpu())
                for row in range(batch.size)]
    return in_length_batches(network, forced, batch_size, attribute_batch)


def _explanation(codec: TextCodec, read: TokenizedPair, output_tokens: list[str], output: str,
                 attention: torch.Tensor, score: float | None, forced: bool, method: str,
                 attributed: tuple[torch.Tensor, torch.Tensor | None] | None) -> Explanation:
    """``read``: the source as the model read it (cut to max_length); ``attention`` ``[T, S_batch]``."""
    source_tokens = codec.tokens_read(read.source)
    source_length = len(source_tokens)
    explanation = Explanation(source=read.raw.source, source_tokens=source_tokens, output=output, output_tokens=output_tokens,
                              attention=attention[:, :source_length].clone(), score=score,
                              padding_attention=float(attention[:, source_length:].sum()), forced=forced,
                              word_pieces=codec.subwords is not None, method=method)
    if attributed is None:
        return explanation
    scores, gaps = attributed
    rows = scores[: len(output_tokens)]  # [T, S_batch]: the <eos> row is not an output token
    return dataclasses.replace(explanation, attribution=rows[:, :source_length].clone(),
                               padding_attribution=float(rows[:, source_length:].abs().sum()),
                               completeness_gaps=None if gaps is None else gaps[: len(output_tokens)].tolist())
