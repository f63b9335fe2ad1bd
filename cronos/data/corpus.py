"""From config to examples: training data with vocabularies, and evaluation splits with their texts."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..config import DataConfig, DataFiles
from .preprocess import Example, PreprocessStats, limit_lengths, to_examples, tokenize_pairs, warn_if_mostly_unknown
from .readers import DataError, read_pairs
from .tokenizers import Tokenizer, build_tokenizer
from .vocab import Vocabulary

__all__ = ["TrainingData", "EvalSplit", "load_training_data", "load_eval_split", "tokenizer_for"]

logger = logging.getLogger("cronos")


@dataclass
class TrainingData:
    tokenizer: Tokenizer
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


def tokenizer_for(config: DataConfig) -> Tokenizer:
    return build_tokenizer(config.tokenizer, lowercase=config.lowercase)


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
    return TrainingData(tokenizer, src_vocab, tgt_vocab, to_examples(pairs, src_vocab, tgt_vocab),
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


def _describe(files: DataFiles) -> str:
    return files if isinstance(files, str) else f"{files.src} / {files.tgt}"
