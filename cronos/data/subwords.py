"""SentencePiece subwords: training a model on the training split, the tokenizer, and the
explicit mapping between SentencePiece's ids and cronos's vocabulary.

    models = SubwordModels.train(sources, targets, config.data.sentencepiece, seed)  # or .read(path)
    source_tokenizer, target_tokenizer = models.tokenizers(lowercase=False)
    src_vocab, tgt_vocab = models.vocabularies()

A model cronos trains puts its specials where cronos's vocabulary has them (``<pad>`` 0,
``<unk>`` 1, ``<bos>`` 2, ``<eos>`` 3), so a piece's SentencePiece id is its cronos id.  A model
trained elsewhere keeps its own ids; the vocabulary then lists cronos's specials and, after them,
the model's ordinary pieces in its id order, and pieces map by their strings (``piece_ids``).
The models' bytes travel in every checkpoint: a saved model tokenises with no file but the .pt.
"""
from __future__ import annotations

import io
import logging
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import sentencepiece as spm

from ..config import ConfigError, SentencePieceConfig
from ..files import UnreadableFile, read_bytes
from .vocab import BOS, EOS, PAD, SPECIALS, UNK, Vocabulary

__all__ = ["WORD_START", "SentencePieceTokenizer", "SubwordModels", "SubwordSampling", "piece_ids", "vocabulary_of"]

logger = logging.getLogger("cronos")

MAX_MODEL_BYTES = 256 << 20  # far above any SentencePiece model; bounds what a wrong path (a device, a pipe) costs
WORD_START = "\u2581"  # "▁": SentencePiece marks a piece that starts a word with it


class SentencePieceTokenizer:
    """Text <-> SentencePiece pieces (strings), the model given as its serialised bytes; ``tokenize``
    gives the single best segmentation, ``detokenize`` is SentencePiece's own."""

    def __init__(self, model: bytes, lowercase: bool = False):
        self.processor = spm.SentencePieceProcessor(model_proto=model)
        self.model, self.lowercase = model, lowercase

    def __reduce__(self):  # to worker processes as its model's bytes (a processor does not pickle)
        return type(self), (self.model, self.lowercase)

    def tokenize(self, text: str) -> list[str]:
        return self.processor.encode(text.lower() if self.lowercase else text, out_type=str)

    def detokenize(self, tokens: list[str]) -> str:
        return self.processor.decode_pieces(list(tokens))

    @staticmethod
    def words(tokens: Sequence[str]) -> list[int | None]:
        """Each piece's word: a piece that starts with ``▁`` starts one."""
        found, word = [], -1
        for token in tokens:
            word += token.startswith(WORD_START) or word < 0
            found.append(word)
        return found

    def sample(self, text: str, alpha: float, nbest_size: int) -> list[str]:
        """A sampled segmentation (subword regularisation; seeded by ``spm.set_random_generator_seed``)."""
        return self.processor.encode(text.lower() if self.lowercase else text, out_type=str, enable_sampling=True,
                                     alpha=alpha, nbest_size=nbest_size)


def vocabulary_of(processor: spm.SentencePieceProcessor) -> Vocabulary:
    """cronos's vocabulary for a SentencePiece model: the specials, then the model's ordinary pieces
    in id order (its control, unknown and unused pieces have cronos's specials in their place)."""
    ordinary = [processor.id_to_piece(i) for i in _ordinary_ids(processor)]
    return Vocabulary(list(SPECIALS) + [p for p in ordinary if p not in SPECIALS])


def piece_ids(processor: spm.SentencePieceProcessor, vocabulary: Vocabulary) -> dict[int, int]:
    """SentencePiece id -> cronos id, for every piece text can become (and the unknown piece)."""
    mapping = {processor.unk_id(): vocabulary.unk_index}
    mapping.update((i, vocabulary.stoi[processor.id_to_piece(i)]) for i in _ordinary_ids(processor))
    return mapping


def _ordinary_ids(processor: spm.SentencePieceProcessor) -> list[int]:
    """The ids of the pieces text can become: not control, unknown or unused."""
    return [i for i in range(processor.get_piece_size())
            if not (processor.is_control(i) or processor.is_unknown(i) or processor.is_unused(i))]


@dataclass(frozen=True)
class SubwordModels:
    """The SentencePiece models of both sides, as bytes (the same bytes when the vocabulary is joint).

    Each side's vocabulary is its model's pieces (``vocabulary_of``), unless the side's is given
    (``source_vocabulary``, ``target_vocabulary``: the tokens in id order, cronos's specials
    first), as an imported model brings one: a Marian model's ``vocab.json`` lists the pieces of
    both languages' models, each piece found by its string."""

    source: bytes
    target: bytes
    source_vocabulary: tuple[str, ...] = ()
    target_vocabulary: tuple[str, ...] = ()

    @property
    def joint(self) -> bool:
        return self.source == self.target

    @classmethod
    def train(cls, sources: Sequence[str], targets: Sequence[str], options: SentencePieceConfig,
              seed: int) -> "SubwordModels":
        """Train on the training split's texts (lowercased already when ``data.lowercase``):
        one model on both sides when ``options.joint``, else one per side.  Deterministic for ``seed``."""
        started = time.perf_counter()
        if options.joint:
            model = _train(list(sources) + list(targets), options, seed, "data.sentencepiece.vocab_size")
            models = cls(model, model)
        else:
            models = cls(_train(sources, options, seed, "data.sentencepiece.vocab_size (source)"),
                         _train(targets, options, seed, "data.sentencepiece.vocab_size (target)"))
        logger.info("trained %s SentencePiece %s model%s of %d pieces on %d sentence pairs in %.1f s",
                    "a joint" if options.joint else "two", options.model_type, "" if options.joint else "s",
                    options.vocab_size, len(sources), time.perf_counter() - started)
        return models

    @classmethod
    def read(cls, path: str | Path) -> "SubwordModels":
        """An existing ``.model`` file, for both sides (``data.sentencepiece.model``)."""
        try:
            model = read_bytes(path, "SentencePiece model", MAX_MODEL_BYTES)
        except UnreadableFile as error:
            raise ConfigError("config", "data.sentencepiece.model", str(error)) from None
        try:
            spm.SentencePieceProcessor(model_proto=model)
        except RuntimeError as error:
            raise ConfigError("config", "data.sentencepiece.model",
                              f"{path}: not a readable SentencePiece model ({error})") from None
        return cls(model, model)

    def tokenizers(self, lowercase: bool) -> tuple[SentencePieceTokenizer, SentencePieceTokenizer]:
        source = SentencePieceTokenizer(self.source, lowercase)
        target = source if self.joint else SentencePieceTokenizer(self.target, lowercase)
        return source, target

    def vocabularies(self) -> tuple[Vocabulary, Vocabulary]:
        source, target = self.tokenizers(lowercase=False)
        src_vocab = Vocabulary(list(self.source_vocabulary)) if self.source_vocabulary else vocabulary_of(source.processor)
        if self.target_vocabulary:
            return src_vocab, Vocabulary(list(self.target_vocabulary))
        return src_vocab, src_vocab if self.joint else vocabulary_of(target.processor)

    def extended_with(self, other: "SubwordModels") -> "SubwordModels":
        """These models with the pieces of ``other``'s models they lack added after their own, each
        side (one model when joint): the old pieces keep their ids and scores, so an old piece is the
        same vocabulary entry, and the new ones come with the scores ``other`` gave them.  Given
        vocabularies grow by the new pieces (one vocabulary for both sides stays one)."""
        source = _merged(self.source, other.source)
        models = SubwordModels(source, source if self.joint else _merged(self.target, other.target))
        if not self.source_vocabulary:
            return models
        (ours_source, ours_target), (new_source, new_target) = self.vocabularies(), other.vocabularies()
        if self.source_vocabulary == self.target_vocabulary:
            both = tuple(ours_source.extended(new_source).extended(new_target).itos)
            return replace(models, source_vocabulary=both, target_vocabulary=both)
        return replace(models, source_vocabulary=tuple(ours_source.extended(new_source).itos),
                       target_vocabulary=tuple(ours_target.extended(new_target).itos))

    def to_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"source": self.source, "target": self.target}
        if self.source_vocabulary:
            entry.update(source_vocabulary=list(self.source_vocabulary), target_vocabulary=list(self.target_vocabulary))
        return entry

    @classmethod
    def from_dict(cls, entry: dict) -> "SubwordModels":
        models = cls(bytes(entry["source"]), bytes(entry["target"]),
                     *(tuple(_strings(entry.get(side, ()), side)) for side in ("source_vocabulary", "target_vocabulary")))
        models.tokenizers(lowercase=False)  # raises on bytes that are no model
        if bool(models.source_vocabulary) != bool(models.target_vocabulary):
            raise ValueError("a vocabulary is given for one side only")
        return models


def _strings(value: Any, name: str) -> list[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(token, str) for token in value):
        raise ValueError(f"{name} is not a list of strings")
    return list(value)


@dataclass(frozen=True)
class SubwordSampling:
    """Subword regularisation (Kudo 2018): each epoch, the training texts segmented anew, sampled
    from the model's segmentations, so the model meets a word in several segmentations."""

    tokenizers: tuple[SentencePieceTokenizer, SentencePieceTokenizer]
    alpha: float
    nbest_size: int
    seed: int  # the run's seed: with the epoch, it seeds each epoch's segmentation

    def tokenizers_for(self, epoch: int) -> tuple["SampledPieces", "SampledPieces"]:
        """(source, target) tokenizers that sample ``epoch``'s segmentations: the same for the same
        seed and epoch within a process when the texts are tokenised right away, source then target,
        pair by pair; not across processes (sentencepiece 0.2 mixes the operating system's
        randomness into its sampler's seed: docs/data.md)."""
        spm.set_random_generator_seed(self.seed * 1_000_003 + epoch)  # sampled right after, in this thread
        source, target = self.tokenizers
        return SampledPieces(source, self.alpha, self.nbest_size), SampledPieces(target, self.alpha, self.nbest_size)


@dataclass(frozen=True)
class SampledPieces:
    """A SentencePiece tokenizer that samples a segmentation each time it tokenises."""

    tokenizer: SentencePieceTokenizer
    alpha: float
    nbest_size: int

    def tokenize(self, text: str) -> list[str]:
        return self.tokenizer.sample(text, self.alpha, self.nbest_size)

    def detokenize(self, tokens: list[str]) -> str:
        return self.tokenizer.detokenize(tokens)

    def words(self, tokens: Sequence[str]) -> list[int | None]:
        return self.tokenizer.words(tokens)


def _merged(model: bytes, other: bytes) -> bytes:
    """``model`` with the ordinary pieces of ``other`` it lacks appended (a SentencePiece model is a
    protobuf message; ``sentencepiece_model_pb2`` is its schema, shipped with sentencepiece)."""
    from sentencepiece import sentencepiece_model_pb2 as schema

    ours, theirs = schema.ModelProto(), schema.ModelProto()
    ours.ParseFromString(model)
    theirs.ParseFromString(other)
    known = {piece.piece for piece in ours.pieces}
    normal = schema.ModelProto.SentencePiece.NORMAL
    for piece in theirs.pieces:
        if piece.type == normal and piece.piece not in known:
            ours.pieces.add(piece=piece.piece, score=piece.score, type=normal)
    ours.trainer_spec.vocab_size = len(ours.pieces)
    return ours.SerializeToString()


def _train(texts: Sequence[str], options: SentencePieceConfig, seed: int, key: str) -> bytes:
    model = io.BytesIO()
    spm.set_random_generator_seed(seed)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts), model_writer=model, model_type=options.model_type,
            vocab_size=options.vocab_size, character_coverage=options.character_coverage,
            pad_id=0, unk_id=1, bos_id=2, eos_id=3, pad_piece=PAD, unk_piece=UNK, bos_piece=BOS, eos_piece=EOS,
            num_threads=1, minloglevel=2)  # one thread: the same model on every machine
    except RuntimeError as error:
        largest = re.search(r"<= (\d+)", str(error))
        hint = f"; this text supports at most {largest.group(1)}" if largest else ""
        raise ConfigError("config", key, f"{options.vocab_size} pieces cannot be trained on the training "
                          f"split{hint}: {str(error).splitlines()[0]}") from None
    return model.getvalue()
