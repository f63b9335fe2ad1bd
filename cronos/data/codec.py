"""``TextCodec``: text <-> token ids for one model (its tokenizers, its vocabularies, the longest
input it reads).  What every part that meets text needs, and nothing else of the model.

    codec = TextCodec.for_data(config.data, src_vocab, tgt_vocab)   # subwords=... for sentencepiece
    examples = codec.encode(["Thu 26 Nov 2026"])        # lengths measured, cut to max_length (TextRules)
    codec.to_text(hypothesis.tokens)                     # '2026-11-26'

Each side has its tokenizer: the same one for ``char``, ``whitespace`` and ``word``, and the
side's SentencePiece model for ``sentencepiece`` (one model for both when it is joint).

An ensemble's members may read the source differently (another tokenizer or vocabulary): the
codec then carries their source sides as ``readings``, and every example it encodes carries the
source as each of them reads it (``Example.readings``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

from ..config import DataConfig
from .preprocess import (Example, PreprocessStats, TextRules, TokenizedPair, source_ids, to_examples, tokenize_pairs,
                         user_pairs, warn_if_mostly_unknown)
from .subwords import SubwordModels
from .tokenizers import Tokenizer, build_tokenizer
from .vocab import EOS, EOS_INDEX, UNK_INDEX, Vocabulary

__all__ = ["TextCodec", "TextDifference", "tokenizers_for"]


@dataclass(frozen=True)
class TextDifference:
    """One way two codecs differ: on ``side`` (``source``, ``target``), their ``part`` (``vocabulary``,
    ``SentencePiece model``, ``tokenizer``); a vocabulary's sizes, ours and theirs."""

    side: str
    part: str
    ours: int | None = None
    theirs: int | None = None

    def __str__(self) -> str:
        if self.part == "vocabulary":
            return f"its {self.side} vocabulary ({self.theirs} tokens) is not this one's ({self.ours})"
        return f"its {self.side} {self.part} differs"


def tokenizers_for(config: DataConfig, subwords: SubwordModels | None = None) -> tuple[Tokenizer, Tokenizer]:
    """The (source, target) tokenizers ``config.tokenizer`` names; SentencePiece's need their models."""
    if config.tokenizer == "sentencepiece":
        if subwords is None:
            raise ValueError("the sentencepiece tokenizer needs its models (SubwordModels); none were given")
        return subwords.tokenizers(config.lowercase)
    tokenizer = build_tokenizer(config.tokenizer, lowercase=config.lowercase)
    return tokenizer, tokenizer


@dataclass(frozen=True)
class TextCodec:
    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer
    src_vocab: Vocabulary
    tgt_vocab: Vocabulary
    max_length: int  # longest source or target the model reads, in tokens (``data.max_length``)
    subwords: SubwordModels | None = None  # the SentencePiece models, which checkpoints store
    readings: tuple["TextCodec", ...] = ()  # other source sides to read sources with (ensembles)
    source_eos: bool = False  # every source ends with <eos> (data.source_eos)

    @classmethod
    def for_data(cls, config: DataConfig, src_vocab: Vocabulary, tgt_vocab: Vocabulary,
                 subwords: SubwordModels | None = None) -> "TextCodec":
        return cls(*tokenizers_for(config, subwords), src_vocab, tgt_vocab, config.max_length,
                   subwords if config.tokenizer == "sentencepiece" else None, source_eos=config.source_eos)

    @property
    def tokenizers(self) -> tuple[Tokenizer, Tokenizer]:
        return self.src_tokenizer, self.tgt_tokenizer

    def tokenize(self, sources: Sequence[str], targets: Sequence[str] | None = None) -> list[TokenizedPair]:
        """A caller's strings -> their tokens as the model reads them (``TextRules`` for inputs: an
        empty source or target raises ``ValueError`` naming its position, a long one is cut to
        ``max_length``, with one warning that counts them)."""
        stats = PreprocessStats()
        pairs = tokenize_pairs(user_pairs(sources, targets), self.tokenizers, TextRules(self.max_length), stats)
        stats.report(self.max_length)
        return pairs

    def examples(self, pairs: Sequence[TokenizedPair]) -> list[Example]:
        """Tokenised pairs -> examples (ids and lengths, and the sources as ``readings`` read them);
        warns when most source tokens are unknown to the vocabulary."""
        examples = to_examples(pairs, self.src_vocab, self.tgt_vocab, self.source_eos)
        warn_if_mostly_unknown(examples, self.src_vocab)
        return self._add_readings(examples, [p.raw.source for p in pairs])

    def encode(self, sources: Sequence[str], targets: Sequence[str] | None = None,
               tag: str | None = None) -> list[Example]:
        """A caller's strings -> examples: ``examples(tokenize(sources, targets))``; with ``tag`` (one
        of the source vocabulary's tags, such as ``<2fr>``), every source starts with it."""
        return self.tagged(self.examples(self.tokenize(sources, targets)), tag)

    def tagged(self, examples: list[Example], tag: str | None) -> list[Example]:
        """``examples`` whose sources start with ``tag`` (unchanged for None)."""
        if tag is None:
            return examples
        self.check_tag(tag)
        tag_id = self.src_vocab.stoi[tag]
        return [replace(e, src=(tag_id, *e.src), src_length=e.src_length + 1) for e in examples]

    def check_tag(self, tag: str | None) -> None:
        """``ValueError`` unless ``tag`` is None or one of the tags the model was trained with."""
        if tag is not None and tag not in self.src_vocab.tags:
            known = ", ".join(self.src_vocab.tags) or "none: it was trained on one corpus without a tag"
            raise ValueError(f"tag {tag!r} is not one this model was trained with (its tags: {known})")

    def encode_lines(self, sources: Sequence[str], tag: str | None = None) -> list[Example | None]:
        """Lines of input -> one example per line, None for an empty one (``is_empty``), which
        ``encode`` refuses and a file of lines may hold; ``tag`` as for ``encode``."""
        stats = PreprocessStats()
        raw = user_pairs(sources)
        pairs = tokenize_pairs(raw, self.tokenizers, TextRules(self.max_length, empty_policy="skip"), stats)
        stats.skipped_empty = 0  # the caller says which lines were empty
        stats.report(self.max_length)
        read = iter(self.tagged(self.examples(pairs), tag))
        kept = {id(pair.raw) for pair in pairs}
        return [next(read) if id(pair) in kept else None for pair in raw]

    def with_readings(self, others: Sequence["TextCodec"]) -> "TextCodec":
        """This codec, also reading every source as each of ``others`` reads it (their source sides)."""
        return replace(self, readings=tuple(replace(other, readings=()) for other in others))

    def _add_readings(self, examples: list[Example], sources: Sequence[str]) -> list[Example]:
        """``examples`` (of ``sources``, aligned) with the sources as ``readings`` read them, each cut
        to its ``max_length``; unchanged without readings."""
        if not self.readings:
            return examples
        with_readings = []
        for example, text in zip(examples, sources, strict=True):
            ids = []
            for number, reading in enumerate(self.readings, start=1):
                tokens = TextRules(reading.max_length).cut(reading.src_tokenizer.tokenize(text))
                if not tokens:
                    raise ValueError(f"input {example.index}: source reading {number} finds no tokens in {text!r}")
                ids.append(source_ids(reading.src_vocab, tokens, reading.source_eos))
            with_readings.append(replace(example, readings=tuple(ids)))
        return with_readings

    def differences(self, other: "TextCodec") -> list["TextDifference"]:
        """How ``other`` turns text into ids differently, per side (empty: alike): the one answer to
        "do these read and write text alike?" that resuming, averaging and ensembles ask."""
        found = []
        for side, vocabs, tokenizers in (("source", (self.src_vocab, other.src_vocab),
                                          (self.src_tokenizer, other.src_tokenizer)),
                                         ("target", (self.tgt_vocab, other.tgt_vocab),
                                          (self.tgt_tokenizer, other.tgt_tokenizer))):
            if vocabs[0] != vocabs[1]:
                found.append(TextDifference(side, "vocabulary", len(vocabs[0]), len(vocabs[1])))
            elif _model(self.subwords, side) != _model(other.subwords, side):
                found.append(TextDifference(side, "SentencePiece model"))
            elif _kind(tokenizers[0]) != _kind(tokenizers[1]):
                found.append(TextDifference(side, "tokenizer"))
        if self.source_eos != other.source_eos:
            found.append(TextDifference("source", "end (data.source_eos)"))
        return found

    def reads_source_as(self, other: "TextCodec") -> bool:
        """Whether ``other`` turns every source into the same ids (no source difference, the same cut)."""
        return (not any(d.side == "source" for d in self.differences(other))
                and self.max_length == other.max_length)

    def to_text(self, token_ids: Sequence[int]) -> str:
        """Output ids -> text (specials dropped, stopping at ``<eos>``)."""
        return self.tgt_tokenizer.detokenize(self.tgt_vocab.to_tokens(token_ids))

    def tokens_read(self, source: Sequence[str]) -> list[str]:
        """A source's tokens as the encoder reads them: with the ``<eos>`` that ends it (``data.source_eos``)."""
        return [*source, EOS] if self.source_eos else list(source)

    def output_tokens(self, token_ids: Sequence[int]) -> list[str]:
        return [self.tgt_vocab.itos[i] for i in token_ids]

    def source_words(self, token_ids: Sequence[int]) -> list[int | None]:
        """Each source token's word (None: a tag, the ``<eos>`` that ends a source, or white space),
        as the source tokenizer groups them."""
        in_no_word = [self.src_vocab.itos[i] in self.src_vocab.tags or i == EOS_INDEX for i in token_ids]
        tokens = [self.src_vocab.itos[i] for i, alone in zip(token_ids, in_no_word) if not alone]
        words = iter(self.src_tokenizer.words(tokens))
        return [None if alone else next(words) for alone in in_no_word]

    def output_words(self, token_ids: Sequence[int]) -> list[int | None]:
        """Each output token's word, as the target tokenizer groups them."""
        return self.tgt_tokenizer.words(self.output_tokens(token_ids))

    def source_tokens(self, text: str) -> list[str]:
        """All of ``text``'s source tokens (``tokenize`` gives them as the model reads them)."""
        return self.src_tokenizer.tokenize(text)

    def target_tokens(self, text: str) -> list[str]:
        return self.tgt_tokenizer.tokenize(text)

    def output_ids(self, text: str, what: str) -> tuple[int, ...]:
        """Target ``text`` as the ids the model writes it with (a forced start of an output), whole
        (never cut); ``ValueError`` naming ``what`` when it is empty or holds a token the target
        vocabulary lacks (the model could not write it)."""
        tokens = self.target_tokens(text) if isinstance(text, str) and text.strip() else []
        if not tokens:
            raise ValueError(f"{what} is empty (no text, or only white space)")
        ids = self.tgt_vocab.encode(tokens)
        if UNK_INDEX in ids:
            unknown = tokens[ids.index(UNK_INDEX)]
            raise ValueError(f"{what} holds {unknown!r}, which the model's target vocabulary lacks (it cannot write "
                             "it)")
        return tuple(ids)

    def as_output(self, text: str) -> str:
        """A target text as the model's outputs would spell it (tokenised, then detokenised:
        lowercased when the data is, spaced as the tokenizer spaces): what BLEU compares with."""
        return self.tgt_tokenizer.detokenize(self.tgt_tokenizer.tokenize(text))


def _kind(tokenizer: Tokenizer) -> tuple:
    return type(tokenizer), getattr(tokenizer, "lowercase", None)


def _model(subwords: SubwordModels | None, side: str) -> bytes | None:
    return None if subwords is None else getattr(subwords, side)
