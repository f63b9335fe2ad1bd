"""Word alignments from attention: each output token's most attended source token, as words.

    pairs = word_alignment(attention, source_words, output_words)   # [(source word, output word), ...]
    moses(pairs)                                                    # "0-0 1-2 2-1"

The attention is what the network returns with its outputs: an RNN decoder's attention, a
Transformer's last decoder layer's cross-attention averaged over its heads.  Only an input's real
source positions are read (a padded one has attention 0 and is never chosen).
"""
from __future__ import annotations

from typing import Sequence

from torch import Tensor

__all__ = ["word_alignment", "moses"]


def word_alignment(attention: Tensor, source_words: Sequence[int | None],
                   output_words: Sequence[int | None]) -> list[tuple[int, int]]:
    """``attention [T, S]`` (one row per output token, the batch's padded source) -> the sorted,
    distinct ``(source word, output word)`` pairs of each output token and its most attended real
    source token (the first of equals); tokens in no word (white space, a tag) pair with none."""
    best = attention[:, : len(source_words)].argmax(dim=-1).tolist() if len(source_words) else []
    return sorted({(source_words[s], output_words[t]) for t, s in enumerate(best)
                   if source_words[s] is not None and output_words[t] is not None})


def moses(pairs: Sequence[tuple[int, int]]) -> str:
    """Pairs as Moses writes them: ``i-j`` (source word i, output word j, from 0), space-separated."""
    return " ".join(f"{i}-{j}" for i, j in pairs)
