"""From config to examples: training data with vocabularies, and evaluation splits with their texts."""
from __future__ import annotations

import itertools
import logging
import os
import random
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from ..config import DataConfig
from .codec import TextCodec, tokenizers_for
from .corpora import Draw, corpus_draws, with_tags
from .preparation import prepare_split, training_files
from .prepared import open_prepared
from .preprocess import Example, PreprocessStats, TextRules, to_examples, tokenize_pairs
from .readers import DataError, MissingFileError, RawPair, iter_pairs, read_pairs
from .subwords import SubwordModels, SubwordSampling
from .table import ExampleTable
from .vocab import Vocabulary

__all__ = ["TrainingData", "EvalSplit", "SPLITS", "load_training_data", "load_eval_split", "load_split",
           "train_subword_models"]

SPLITS = ("train", "valid", "test")  # the splits a config names under ``data``

logger = logging.getLogger("cronos")


@dataclass
class TrainingData:
    src_vocab: Vocabulary
    tgt_vocab: Vocabulary
    examples: ExampleTable
    origins: Sequence[str]  # "file:line" of each example, for messages
    stats: PreprocessStats = field(default_factory=PreprocessStats)
    subwords: SubwordModels | None = None  # the SentencePiece models (data.tokenizer: sentencepiece)
    sampling: SubwordSampling | None = None  # subword regularisation (data.sentencepiece.sampling_alpha)
    texts: list[tuple[str, str]] = field(default_factory=list)  # the examples' texts, kept for sampling
    max_length: int = 0  # data.max_length: sampled segmentations are cut to it
    source_eos: bool = False  # data.source_eos: sampled sources end with <eos> too
    corpora: tuple[Draw, ...] | None = None  # several corpora (data.train as a list): what each epoch draws

    def for_epoch(self, epoch: int) -> ExampleTable:
        """The examples ``epoch`` trains on: ``examples``, or with subword regularisation the same
        examples segmented anew (``SubwordSampling``: the same for an epoch within a process, not
        across processes, docs/data.md)."""
        if self.sampling is None:
            return self.examples
        texts = [RawPair(source, target, f"example {i}") for i, (source, target) in enumerate(self.texts)]
        pairs = tokenize_pairs(texts, self.sampling.tokenizers_for(epoch), TextRules(self.max_length),
                               PreprocessStats())  # cut quietly: a sampled segmentation may be longer, epoch by epoch
        return ExampleTable.from_examples(to_examples(pairs, self.src_vocab, self.tgt_vocab, self.source_eos))


@dataclass
class EvalSplit:
    """An evaluation split: raw texts (for BLEU and for display) aligned with their examples."""

    sources: list[str]
    targets: list[str]
    examples: list[Example]


def load_training_data(config: DataConfig, vocabularies: tuple[Vocabulary, Vocabulary] | None = None,
                       subwords: SubwordModels | None = None, seed: int = 0) -> TrainingData:
    """Read ``data.train``, apply the empty and length policies, and build both vocabularies
    (or use the given ``(source, target)`` vocabularies, e.g. a loaded model's): in memory, or in
    the folder ``data.prepared`` (prepared there once, then memory-mapped).

    With ``data.tokenizer: sentencepiece`` the vocabularies are the SentencePiece models': the
    given ``subwords``, else ``data.sentencepiece.model``, else models trained here on a sample of
    this split (deterministically for ``seed``).
    """
    if config.train is None:
        raise DataError("data.train is not set: give a TSV path or {src: PATH, tgt: PATH}")
    read_split(config, "train", lines=False)  # a missing file named with its key, before anything else
    corpora = config.train if isinstance(config.train, tuple) else None
    alpha = config.sentencepiece.sampling_alpha if config.tokenizer == "sentencepiece" else None
    if corpora is not None and alpha is not None and any(corpus.tag for corpus in corpora):
        raise DataError("data.sentencepiece.sampling_alpha: subword regularisation segments the text anew each "
                        "epoch, without the corpora's tags; leave out the tags or the sampling")
    if subwords is None and config.tokenizer == "sentencepiece" and config.sentencepiece.model is not None:
        subwords = SubwordModels.read(config.sentencepiece.model)
    if vocabularies is None and subwords is not None:
        vocabularies = subwords.vocabularies()
    if config.prepared is not None:
        if alpha is not None:
            raise DataError("data.sentencepiece.sampling_alpha: subword regularisation segments the training text "
                            "anew each epoch, and a prepared split (data.prepared) keeps token ids, not the text; "
                            "set data.prepared: null for it")
        prepared, subwords = open_prepared(config, seed, subwords, vocabularies,
                                           lambda: train_subword_models(config, seed))
    else:
        if config.tokenizer == "sentencepiece" and subwords is None:
            subwords = train_subword_models(config, seed)
            vocabularies = subwords.vocabularies()
        prepared = prepare_split(config, tokenizers_for(config, subwords), vocabularies, keep_texts=alpha is not None)
    if corpora is not None:
        prepared = with_tags(prepared, corpora)
    logger.info("training data: %d examples, vocabularies %d (source) and %d (target)",
                len(prepared.table), len(prepared.src_vocab), len(prepared.tgt_vocab))
    data = TrainingData(prepared.src_vocab, prepared.tgt_vocab, prepared.table, prepared.origins, prepared.stats,
                        subwords, max_length=config.max_length, source_eos=config.source_eos,
                        corpora=None if corpora is None else corpus_draws(corpora, prepared.sizes))
    if alpha is not None:
        data.texts = prepared.texts
        data.sampling = SubwordSampling(subwords.tokenizers(config.lowercase), alpha, config.sentencepiece.nbest_size,
                                        seed)
    return data


def train_subword_models(config: DataConfig, seed: int) -> SubwordModels:
    """SentencePiece models trained on up to ``input_sentence_size`` pairs of the training split
    (all of them, in order, when it has no more; else a uniform sample drawn for ``seed``)."""
    every_pair = itertools.chain.from_iterable(iter_pairs(files) for files in training_files(config))
    sample = _sample(every_pair, config.sentencepiece.input_sentence_size, seed)
    case = str.lower if config.lowercase else str  # the models see text as the tokenizers will give it
    return SubwordModels.train([case(p.source) for p in sample], [case(p.target) for p in sample],
                               config.sentencepiece, seed)


def _sample(pairs: Iterable[RawPair], size: int, seed: int) -> list[RawPair]:
    """A uniform sample of ``size`` of ``pairs`` in one pass (reservoir sampling), in read order."""
    generator = random.Random(seed)
    kept: list[tuple[int, RawPair]] = []
    for number, pair in enumerate(pairs):
        if number < size:
            kept.append((number, pair))
        elif (slot := generator.randrange(number + 1)) < size:
            kept[slot] = (number, pair)
    return [pair for _, pair in sorted(kept, key=lambda entry: entry[0])]


def read_split(config: DataConfig, split: str, quote: bool = True, lines: bool = True) -> list[RawPair]:
    """The pairs of the config's split ``split`` (``train``, ``valid``, ``test``; ``lines=False``:
    only its first, to check that it is there); a missing file is reported with the config key that
    named it and the ways to point the config at the data."""
    try:
        files = training_files(config) if split == "train" else [getattr(config, split)]
        pairs = itertools.chain.from_iterable(iter_pairs(f, quote) for f in files)
        return list(pairs) if lines else [pair for f in files for pair in itertools.islice(iter_pairs(f, quote), 1)]
    except MissingFileError as error:
        where = f" (data.root is {os.path.normpath(config.root)})" if config.root else ""
        raise DataError(f"data.{split}: {error.path}: file not found{where}; point the config at the data with "
                        "--set data.root=PATH (or the environment variable its data.root names), or fetch the data "
                        "as the config's comments say") from None


def load_eval_split(raw: list[RawPair], config: DataConfig, codec: TextCodec) -> EvalSplit:
    """An evaluation split from the pairs read (``read_split``, ``read_pairs``).  Every example is
    scored: none is filtered for length, but the model reads sources and references cut to
    ``data.max_length`` tokens (a warning counts them); BLEU and chrF compare with the whole
    references."""
    stats = PreprocessStats()
    pairs = tokenize_pairs(raw, codec.tokenizers, TextRules.for_evaluation(config), stats)
    stats.report(config.max_length)
    return EvalSplit([p.raw.source for p in pairs], [p.raw.target for p in pairs], codec.examples(pairs))


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
        return load_eval_split(read_split(config, data, quote=False), config, codec)
    if isinstance(data, (str, os.PathLike)):
        if not os.path.exists(data):
            raise ValueError(f"{str(data)!r} is neither a split name ({', '.join(SPLITS)}) nor an existing file")
        return load_eval_split(read_pairs(str(data)), config, codec)
    pairs = list(data)
    sources, targets = [p[0] for p in pairs], [p[1] for p in pairs]
    return EvalSplit(sources, targets, codec.encode(sources, targets))
