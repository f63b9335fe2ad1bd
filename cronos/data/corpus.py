"""From config to examples: training data with vocabularies, and evaluation splits with their texts."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Sequence

from ..config import DataConfig, DataFiles
from .codec import TextCodec, tokenizer_for
from .preprocess import Example, PreprocessStats, limit_lengths, to_examples, tokenize_pairs, warn_if_mostly_unknown
from .readers import DataError, read_pairs
from .vocab import Vocabulary

__all__ = ["TrainingData", "EvalSplit", "SPLITS", "load_training_data", "load_eval_split", "load_split"]

SPLITS = ("train", "valid", "test")  # the splits a config names under ``data``

logger = logging.getLogger("cronos")


@dataclass
class TrainingData:
    src_vocab: Vocabulary
    tgt_vocab: Vocabulary
    examples: list[Example]
    origins: list[str]  # "file:line" of each example, for messages
    stats: PreprocessStats = field(default_factory=PreprocessStats)


@dataclass
class EvalSplit:
    """An evaluation split: raw texts (for BLEU and for display) aligned with their examples."""

    sources: list[str]
    targets: list[str]
    examples: list[Example]


def load_training_data(config: DataConfig,
                       vocabularies: tuple[Vocabulary, Vocabulary] | None = None) -> TrainingData:
    """Read ``data.train``, apply the empty and length policies, and build both vocabularies
    (or use the given ``(source, target)`` vocabularies, e.g. a loaded model's)."""
    if config.train is None:
        raise DataError("data.train is not set: give a TSV path or {src: PATH, tgt: PATH}")
    tokenizer = tokenizer_for(config)
    stats = PreprocessStats()
    pairs = tokenize_pairs(read_pairs(config.train), tokenizer, config.empty_policy, stats)
    pairs = limit_lengths(pairs, config.max_length, config.long_policy, stats)
    if not pairs:
        raise DataError(f"{_describe(config.train)}: no training examples left after preprocessing")
    if vocabularies is None:
        src_vocab = Vocabulary.build((p.source for p in pairs), config.min_freq, config.max_vocab_size)
        tgt_vocab = Vocabulary.build((p.target for p in pairs), config.min_freq, config.max_vocab_size)
    else:
        src_vocab, tgt_vocab = vocabularies
    logger.info("training data: %d examples, vocabularies %d (source) and %d (target)",
                len(pairs), len(src_vocab), len(tgt_vocab))
    return TrainingData(src_vocab, tgt_vocab, to_examples(pairs, src_vocab, tgt_vocab),
                        [p.origin for p in pairs], stats)


def load_eval_split(files: DataFiles, config: DataConfig, src_vocab: Vocabulary,
                    tgt_vocab: Vocabulary, quote: bool = True) -> EvalSplit:
    """Read an evaluation split.  Every example is scored: none is filtered for length, but the
    model reads sources and references cut to ``data.max_length`` tokens (a warning counts them);
    BLEU and chrF compare with the whole references.  ``quote=False`` keeps the files' contents
    out of error messages."""
    tokenizer = tokenizer_for(config)
    raw = read_pairs(files, quote)
    stats = PreprocessStats()
    pairs = tokenize_pairs(raw, tokenizer, config.empty_policy, stats)
    kept = {p.origin for p in pairs}
    raw = [r for r in raw if r.origin in kept]
    pairs = limit_lengths(pairs, config.max_length, "truncate", stats)
    if stats.truncated:
        logger.warning("%d of %d examples were longer than data.max_length (%d tokens); the model reads them cut "
                       "to it", stats.truncated, len(pairs), config.max_length)
    examples = to_examples(pairs, src_vocab, tgt_vocab)
    warn_if_mostly_unknown(examples)
    return EvalSplit([r.source for r in raw], [r.target for r in raw], examples)


def load_split(data: str | os.PathLike | Sequence[tuple[str, str]], config: DataConfig,
               codec: TextCodec) -> EvalSplit:
    """An evaluation split from a split name (``train``, ``valid``, ``test``: the config's files),
    a TSV path, or ``(source, target)`` pairs."""
    if isinstance(data, str) and data in SPLITS:
        files = getattr(config, data)
        if files is None:
            raise ValueError(f"data.{data} is not set in the config; pass a file or (source, target) pairs")
        # a split's paths come from the config, which a checkpoint from anywhere may carry:
        # messages about those files never quote what they hold
        return load_eval_split(files, config, codec.src_vocab, codec.tgt_vocab, quote=False)
    if isinstance(data, (str, os.PathLike)):
        if not os.path.exists(data):
            raise ValueError(f"{str(data)!r} is neither a split name ({', '.join(SPLITS)}) nor an existing file")
        return load_eval_split(str(data), config, codec.src_vocab, codec.tgt_vocab)
    pairs = list(data)
    sources, targets = [p[0] for p in pairs], [p[1] for p in pairs]
    return EvalSplit(sources, targets, codec.encode(sources, targets))


def _describe(files: DataFiles) -> str:
    return files if isinstance(files, str) else f"{files.src} / {files.tgt}"
