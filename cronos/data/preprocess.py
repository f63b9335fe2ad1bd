"""Text pairs -> examples that carry their token ids and their lengths.

Lengths are computed here, once: ``src_length`` counts exactly the tokens the encoder sees (no
BOS/EOS on the source); ``tgt_length`` counts the target tokens plus one (the ``<bos>`` that starts
``tgt_in``, equally the ``<eos>`` that ends ``tgt_out``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence

from .readers import DataError, RawPair
from .tokenizers import Tokenizer
from .vocab import Vocabulary

__all__ = ["Example", "TokenizedPair", "PreprocessStats", "tokenize_pairs", "limit_lengths", "to_examples",
           "encode_sources"]

logger = logging.getLogger("cronos")


@dataclass(frozen=True, slots=True)
class Example:
    index: int                   # position in its split
    src: tuple[int, ...]
    tgt: tuple[int, ...] | None  # None when there is no reference
    src_length: int              # == len(src): what the encoder sees
    tgt_length: int              # == len(tgt) + 1: tokens + <eos>; 0 without a reference


@dataclass(frozen=True, slots=True)
class TokenizedPair:
    source: list[str]
    target: list[str]
    origin: str


@dataclass
class PreprocessStats:
    read: int = 0
    skipped_empty: int = 0
    filtered_long: int = 0
    truncated: int = 0
    notes: list[str] = field(default_factory=list)


def tokenize_pairs(pairs: Sequence[RawPair], tokenizer: Tokenizer, empty_policy: str,
                   stats: PreprocessStats) -> list[TokenizedPair]:
    """Tokenise both sides; a side with no tokens is an error or is skipped (``empty_policy``)."""
    result = []
    stats.read += len(pairs)
    for pair in pairs:
        source, target = tokenizer.tokenize(pair.source), tokenizer.tokenize(pair.target)
        if not (source and pair.source.strip()) or not (target and pair.target.strip()):
            side = "source" if not (source and pair.source.strip()) else "target"
            if empty_policy == "error":
                raise DataError(f"{pair.origin}: empty {side} or only white space); "
                                "fix the line or set data.empty_policy: skip")
            stats.skipped_empty += 1
            continue
        result.append(TokenizedPair(source, target, pair.origin))
    if stats.skipped_empty:
        logger.info("skipped %d examples with an empty source or target", stats.skipped_empty)
    return result


def limit_lengths(pairs: list[TokenizedPair], max_length: int, policy: str,
                  stats: PreprocessStats) -> list[TokenizedPair]:
    """Drop (``filter``) or cut (``truncate``) pairs with a side longer than ``max_length`` tokens."""
    kept = []
    for pair in pairs:
        if len(pair.source) <= max_length and len(pair.target) <= max_length:
            kept.append(pair)
        elif policy == "truncate":
            kept.append(TokenizedPair(pair.source[:max_length], pair.target[:max_length], pair.origin))
            stats.truncated += 1
        else:
            stats.filtered_long += 1
    if stats.filtered_long or stats.truncated:
        logger.info("examples longer than %d tokens: %d filtered, %d truncated",
                    max_length, stats.filtered_long, stats.truncated)
    return kept


def to_examples(pairs: Sequence[TokenizedPair], src_vocab: Vocabulary, tgt_vocab: Vocabulary) -> list[Example]:
    return [Example(i, tuple(src_vocab.encode(p.source)), tuple(tgt_vocab.encode(p.target)),
                    len(p.source), len(p.target) + 1)
            for i, p in enumerate(pairs)]


def encode_sources(sources: Sequence[str], tokenizer: Tokenizer, src_vocab: Vocabulary,
                   targets: Sequence[str] | None = None, tgt_vocab: Vocabulary | None = None,
                   max_length: int | None = None) -> list[Example]:
    """User strings -> examples; an empty source (or target) raises ``ValueError`` naming its position.

    Sources longer than ``max_length`` tokens are cut to it (the model's positions end there).
    """
    if isinstance(sources, str):
        raise TypeError("expected a list of strings, got a single string; wrap it: [text]")
    if targets is not None and len(targets) != len(sources):
        raise ValueError(f"got {len(sources)} sources but {len(targets)} targets")
    examples = []
    for i, text in enumerate(sources):
        if not isinstance(text, str):
            raise TypeError(f"input {i}: expected a string, got {type(text).__name__}")
        tokens = tokenizer.tokenize(text)[:max_length]
        if not tokens or not text.strip():
            raise ValueError(f"input {i}: empty source {text!r} (empty or only white space); "
                             "a source needs at least one token")
        tgt, tgt_length = None, 0
        if targets is not None:
            if not isinstance(targets[i], str):
                raise TypeError(f"target {i}: expected a string, got {type(targets[i]).__name__}")
            target_tokens = tokenizer.tokenize(targets[i])
            if not target_tokens or not targets[i].strip():
                raise ValueError(f"input {i}: empty target {targets[i]!r}")
            tgt, tgt_length = tuple(tgt_vocab.encode(target_tokens)), len(target_tokens) + 1
        examples.append(Example(i, tuple(src_vocab.encode(tokens)), tgt, len(tokens), tgt_length))
    return examples
