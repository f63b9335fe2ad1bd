"""Text pairs -> examples that carry their token ids and their lengths.

Lengths are computed here, once: ``src_length`` counts exactly the tokens the encoder sees (no
BOS/EOS on the source); ``tgt_length`` counts the target tokens plus one (the ``<bos>`` that starts
``tgt_in``, equally the ``<eos>`` that ends ``tgt_out``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

from .readers import DataError, RawPair
from .subwords import WORD_START
from .tokenizers import Tokenizer
from .vocab import UNK_INDEX, Vocabulary

__all__ = ["Example", "TokenizedPair", "PreprocessStats", "tokenize_pairs", "limit_lengths", "to_examples",
           "encode_sources", "is_empty", "warn_if_mostly_unknown", "MOSTLY_UNKNOWN"]

logger = logging.getLogger("cronos")

MOSTLY_UNKNOWN = 0.5  # warn when more than this share of the input tokens are <unk>


def is_empty(text: str, tokens: Sequence[str]) -> bool:
    """A text with no tokens, or only white space: nothing for a model to read."""
    return not tokens or not text.strip()


@dataclass(frozen=True, slots=True)
class Example:
    index: int                   # position in its split
    src: tuple[int, ...]
    tgt: tuple[int, ...] | None  # None when there is no reference
    src_length: int              # == len(src): what the encoder sees
    tgt_length: int              # == len(tgt) + 1: tokens + <eos>; 0 without a reference
    # the source's ids as other source sides read it (ensemble members with another tokenizer or
    # vocabulary, ``TextCodec.readings``), each cut to its max_length; () for one model
    readings: tuple[tuple[int, ...], ...] = ()


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


def tokenize_pairs(pairs: Sequence[RawPair], tokenizers: tuple[Tokenizer, Tokenizer], empty_policy: str,
                   stats: PreprocessStats) -> list[TokenizedPair]:
    """Tokenise both sides (``tokenizers``: source, target); a side with no tokens is an error or is
    skipped (``empty_policy``)."""
    result = []
    stats.read += len(pairs)
    source_tokenizer, target_tokenizer = tokenizers
    for pair in pairs:
        source, target = source_tokenizer.tokenize(pair.source), target_tokenizer.tokenize(pair.target)
        if is_empty(pair.source, source) or is_empty(pair.target, target):
            side = "source" if is_empty(pair.source, source) else "target"
            if empty_policy == "error":
                raise DataError(f"{pair.origin}: empty {side} (no text, or only white space); "
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
                   max_length: int | None = None, tgt_tokenizer: Tokenizer | None = None) -> list[Example]:
    """User strings -> examples; an empty source (or target) raises ``ValueError`` naming its position.

    ``tgt_tokenizer`` tokenises the targets (default: ``tokenizer``, the sources').

    Sources (and targets) longer than ``max_length`` tokens are cut to it, with one warning that
    counts them: a model trained on ``data.max_length`` tokens has never seen more, and an input
    of any length would cost time without bound.  A warning also says when most source tokens are
    unknown to the vocabulary.
    """
    if isinstance(sources, str):
        raise TypeError("expected a list of strings, got a single string; wrap it: [text]")
    if targets is not None and len(targets) != len(sources):
        raise ValueError(f"got {len(sources)} sources but {len(targets)} targets")
    examples, cut = [], 0
    for i, text in enumerate(sources):
        if not isinstance(text, str):
            raise TypeError(f"input {i}: expected a string, got {type(text).__name__}")
        tokens = tokenizer.tokenize(text)
        if is_empty(text, tokens):
            raise ValueError(f"input {i}: empty source {text!r} (empty or only white space); "
                             "a source needs at least one token")
        cut += max_length is not None and len(tokens) > max_length
        tokens = tokens[:max_length]
        tgt, tgt_length = None, 0
        if targets is not None:
            if not isinstance(targets[i], str):
                raise TypeError(f"target {i}: expected a string, got {type(targets[i]).__name__}")
            target_tokens = (tgt_tokenizer or tokenizer).tokenize(targets[i])
            if is_empty(targets[i], target_tokens):
                raise ValueError(f"input {i}: empty target {targets[i]!r}")
            target_tokens = target_tokens[:max_length]
            tgt, tgt_length = tuple(tgt_vocab.encode(target_tokens)), len(target_tokens) + 1
        examples.append(Example(i, tuple(src_vocab.encode(tokens)), tgt, len(tokens), tgt_length))
    if cut:
        logger.warning("%d of %d inputs were longer than data.max_length (%d tokens) and were cut to it",
                       cut, len(examples), max_length)
    warn_if_mostly_unknown(examples, src_vocab)
    return examples


def warn_if_mostly_unknown(examples: Sequence[Example], src_vocab: Vocabulary) -> None:
    """Warn when most source tokens are ``<unk>``: input in another language, script or case than
    the model was trained on gives outputs that mean little, and nothing else would say so.

    SentencePiece's bare word-start piece (``▁``, before a word it has no piece for) is no part of
    a word and does not count: ``你好世界`` reads as ``▁ <unk>``, which is all unknown."""
    ignored = src_vocab.encode([WORD_START])[0] if WORD_START in src_vocab else None
    total = sum(e.src_length - e.src.count(ignored) for e in examples)
    unknown = sum(e.src.count(UNK_INDEX) for e in examples)
    if total and unknown / total > MOSTLY_UNKNOWN:
        logger.warning("%.0f%% of the %d source tokens are unknown to the model's vocabulary (<unk>): is the input "
                       "in the language, script and case the model was trained on?", 100 * unknown / total, total)
