"""Text pairs -> examples that carry their token ids and their lengths: the one path from text to
examples (``tokenize_pairs`` under ``TextRules``, then ``to_examples``) that training data,
evaluation files and a caller's strings all take, so an empty side and a long one are judged and
reported alike everywhere.

Lengths are computed here, once: ``src_length`` counts exactly the tokens the encoder sees (no
BOS/EOS on the source); ``tgt_length`` counts the target tokens plus one (the ``<bos>`` that starts
``tgt_in``, equally the ``<eos>`` that ends ``tgt_out``).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Iterable, NamedTuple, Sequence

from ..config import DataConfig, FilterConfig

from .readers import DataError, RawPair
from .subwords import WORD_START
from .tokenizers import Tokenizer
from .vocab import EOS_INDEX, UNK_INDEX, Vocabulary

__all__ = ["FILTERED", "Example", "EmptyText", "TokenizedPair", "TextRules", "PreprocessStats", "tokenize_pairs", "to_examples", "source_ids",
           "user_pairs", "is_empty", "unicode_problem", "warn_if_mostly_unknown", "MOSTLY_UNKNOWN"]

logger = logging.getLogger("cronos")

MOSTLY_UNKNOWN = 0.5  # warn when more than this share of the input tokens are <unk>


SURROGATE = re.compile("[\ud800-\udfff]")


def unicode_problem(text: str) -> str | None:
    """Why ``text`` is not text (None: it is): a lone surrogate (a JSON ``"\\ud800"``, or bytes that
    were not UTF-8 decoded with ``errors="surrogateescape"``, as Python decodes arguments) is no
    character, and no tokenizer can read it."""
    found = SURROGATE.search(text)
    if found is None:
        return None
    return (f"holds a lone surrogate (U+{ord(found.group()):04X}) at character {found.start()}, which is not a "
            "character; send valid Unicode (UTF-8)")


def is_empty(text: str, tokens: Sequence[str]) -> bool:
    """A text with no tokens, or only white space: nothing for a model to read.  The one rule of
    emptiness: ``tokenize_pairs`` applies it, and every front end learns its verdict from there."""
    return not tokens or not text.strip()


class EmptyText(DataError):
    """A pair with an empty ``side`` (``source`` or ``target``)."""

    def __init__(self, message: str, side: str):
        super().__init__(message)
        self.side = side


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


class TokenizedPair(NamedTuple):  # a tuple: made once per pair prepared, where a dataclass costs twice the time
    source: list[str]
    target: list[str] | None  # None: a source without a reference
    raw: RawPair              # the texts it was made from, and where they came from

    @property
    def origin(self) -> str:
        return self.raw.origin


FILE_HINT = "fix the line or set data.empty_policy: skip"
INPUT_HINT = "a {side} needs at least one token"


@dataclass(frozen=True)
class TextRules:
    """What becomes of a text a model cannot read as it is: a side with no tokens (``empty_policy``
    ``error``: raise, naming where it came from, with ``hint``; ``skip``: leave the pair out) and a
    side longer than ``max_length`` tokens (``long_policy`` ``truncate``: cut to it; ``filter``:
    leave the pair out).  Inputs (the API, evaluation) are always cut: a model trained on
    ``data.max_length`` tokens has never seen more, and an input of any length would cost time
    without bound."""

    max_length: int
    empty_policy: str = "error"
    long_policy: str = "truncate"
    hint: str = INPUT_HINT  # ``{side}`` is the empty side
    filters: FilterConfig | None = None  # training pairs left out as they are read (none for inputs)

    @classmethod
    def for_training(cls, config: DataConfig) -> "TextRules":
        return cls(config.max_length, config.empty_policy, config.long_policy, FILE_HINT, config.filters)

    @classmethod
    def for_evaluation(cls, config: DataConfig) -> "TextRules":
        """Every example of an evaluation file is scored: long ones are cut, never left out."""
        return cls(config.max_length, config.empty_policy, "truncate", FILE_HINT)

    def cut(self, tokens: list[str]) -> list[str]:
        return tokens[: self.max_length]

    def filtered(self, pair: RawPair, source: list[str], target: list[str] | None) -> str | None:
        """Which filter leaves a training pair out (``PreprocessStats.filtered`` counts it), or None."""
        filters = self.filters
        if filters is None or target is None:
            return None
        shorter, longer = sorted((len(source), len(target)))
        if shorter < filters.min_length:
            return "min_length"
        if filters.max_length_ratio is not None and longer > filters.max_length_ratio * shorter:
            return "max_length_ratio"
        if not filters.copies and pair.source.strip() == pair.target.strip():
            return "copies"
        return None


FILTERED = {"min_length": "had a side shorter than data.filters.min_length",
            "max_length_ratio": "had sides whose lengths differ by more than data.filters.max_length_ratio",
            "copies": "had a target that copies its source (data.filters.copies: false)"}


@dataclass
class PreprocessStats:
    read: int = 0
    skipped_empty: int = 0
    filtered_long: int = 0
    truncated: int = 0
    filtered: dict[str, int] = field(default_factory=dict)  # by data.filters key

    def add(self, other: "PreprocessStats") -> None:
        """Count ``other``'s too (a chunk's, prepared apart)."""
        for name in ("read", "skipped_empty", "filtered_long", "truncated"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name, count in other.filtered.items():
            self.filtered[name] = self.filtered.get(name, 0) + count

    def report(self, max_length: int) -> None:
        """Say what the rules did: the one message for each thing they do to a text."""
        seen = self.read - self.skipped_empty
        if self.skipped_empty:
            logger.info("skipped %d examples with an empty source or target", self.skipped_empty)
        if self.filtered_long:
            logger.info("%d of %d examples were longer than data.max_length (%d tokens) and were left out "
                        "(data.long_policy: filter)", self.filtered_long, seen, max_length)
        if self.truncated:
            logger.warning("%d of %d inputs were longer than data.max_length (%d tokens) and were cut to it",
                           self.truncated, seen, max_length)
        for name, count in sorted(self.filtered.items()):
            logger.info("%d of %d examples %s and were left out", count, seen, FILTERED[name])


def tokenize_pairs(pairs: Iterable[RawPair], tokenizers: tuple[Tokenizer, Tokenizer], rules: TextRules,
                   stats: PreprocessStats) -> list[TokenizedPair]:
    """Tokenise both sides (``tokenizers``: source, target) and apply ``rules``: the one way from
    text to the tokens a model reads, for training, evaluation and user inputs alike.  ``stats``
    counts what the rules did (``PreprocessStats.report`` says it)."""
    result = []
    tokenize_source, tokenize_target = tokenizers[0].tokenize, tokenizers[1].tokenize
    for pair in pairs:
        stats.read += 1
        source = tokenize_source(pair.source)
        target = None if pair.target is None else tokenize_target(pair.target)
        empty_side = ("source" if is_empty(pair.source, source) else
                      "target" if target is not None and is_empty(pair.target, target) else None)
        if empty_side is not None:
            if rules.empty_policy == "error":
                raise EmptyText(f"{pair.origin}: empty {empty_side} (no text, or only white space); "
                                + rules.hint.format(side=empty_side), empty_side)
            stats.skipped_empty += 1
            continue
        reason = rules.filtered(pair, source, target)
        if reason is not None:
            stats.filtered[reason] = stats.filtered.get(reason, 0) + 1
            continue
        if len(source) > rules.max_length or (target is not None and len(target) > rules.max_length):
            if rules.long_policy == "filter":
                stats.filtered_long += 1
                continue
            source, target = rules.cut(source), None if target is None else rules.cut(target)
            stats.truncated += 1
        result.append(TokenizedPair(source, target, pair))
    return result


def to_examples(pairs: Sequence[TokenizedPair], src_vocab: Vocabulary, tgt_vocab: Vocabulary,
                source_eos: bool = False) -> list[Example]:
    """Tokenised pairs -> examples: ids and lengths; each source followed by ``<eos>`` with ``source_eos``."""
    examples = []
    for i, p in enumerate(pairs):
        src = source_ids(src_vocab, p.source, source_eos)
        examples.append(Example(i, src, None if p.target is None else tuple(tgt_vocab.encode(p.target)),
                                len(src), 0 if p.target is None else len(p.target) + 1))
    return examples


def source_ids(vocabulary: Vocabulary, tokens: Sequence[str], source_eos: bool) -> tuple[int, ...]:
    """A source's ids as the encoder reads them: its tokens', then ``<eos>`` with ``source_eos``."""
    return tuple(vocabulary.encode(tokens)) + ((EOS_INDEX,) if source_eos else ())


def user_pairs(sources: Sequence[str], targets: Sequence[str] | None = None) -> list[RawPair]:
    """A caller's strings as pairs named ``input i`` (targets: their references, or None)."""
    if isinstance(sources, str):
        raise TypeError("expected a list of strings, got a single string; wrap it: [text]")
    if targets is not None and len(targets) != len(sources):
        raise ValueError(f"got {len(sources)} sources but {len(targets)} targets")
    pairs = []
    for i, text in enumerate(sources):
        if not isinstance(text, str):
            raise TypeError(f"input {i}: expected a string, got {type(text).__name__}")
        if targets is not None and not isinstance(targets[i], str):
            raise TypeError(f"target {i}: expected a string, got {type(targets[i]).__name__}")
        for name, string in ((f"input {i}", text), (f"target {i}", None if targets is None else targets[i])):
            problem = None if string is None else unicode_problem(string)
            if problem is not None:
                raise ValueError(f"{name} {problem}")
        pairs.append(RawPair(text, None if targets is None else targets[i], f"input {i}"))
    return pairs


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
