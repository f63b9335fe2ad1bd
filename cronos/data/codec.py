"""``TextCodec``: text <-> token ids for one model (its tokenizers, its vocabularies, the longest
input it reads).  What every part that meets text needs, and nothing else of the model.

    codec = TextCodec.for_data(config.data, src_vocab, tgt_vocab)   # subwords=... for sentencepiece
    examples = codec.encode(["Thu 26 Nov 2026"])        # lengths measured, cut to max_length
    codec.decode(hypothesis.tokens)                     # '2026-11-26'

Each side has its tokenizer: the same one for ``char``, ``whitespace`` and ``word``, and the
side's SentencePiece model for ``sentencepiece`` (one model for both when it is joint).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..config import DataConfig
from .preprocess import Example, encode_sources
from .subwords import SubwordModels
from .tokenizers import Tokenizer, build_tokenizer
from .vocab import Vocabulary

__all__ = ["TextCodec", "tokenizers_for"]


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

    @classmethod
    def for_data(cls, config: DataConfig, src_vocab: Vocabulary, tgt_vocab: Vocabulary,
                 subwords: SubwordModels | None = None) -> "TextCodec":
        return cls(*tokenizers_for(config, subwords), src_vocab, tgt_vocab, config.max_length,
                   subwords if config.tokenizer == "sentencepiece" else None)

    def encode(self, sources: Sequence[str], targets: Sequence[str] | None = None) -> list[Example]:
        """User strings -> examples with their lengths (see ``encode_sources``: empty inputs raise,
        long ones are cut to ``max_length`` with a warning)."""
        return encode_sources(sources, self.src_tokenizer, self.src_vocab, targets, self.tgt_vocab, self.max_length,
                              self.tgt_tokenizer)

    def decode(self, token_ids: Sequence[int]) -> str:
        """Output ids -> text (specials dropped, stopping at ``<eos>``)."""
        return self.tgt_tokenizer.detokenize(self.tgt_vocab.decode(token_ids))

    def output_tokens(self, token_ids: Sequence[int]) -> list[str]:
        return [self.tgt_vocab.itos[i] for i in token_ids]

    def source_tokens(self, text: str) -> list[str]:
        return self.src_tokenizer.tokenize(text)

    def target_tokens(self, text: str) -> list[str]:
        return self.tgt_tokenizer.tokenize(text)

    def as_output(self, text: str) -> str:
        """A target text as the model's outputs would spell it (tokenised, then detokenised:
        lowercased when the data is, spaced as the tokenizer spaces): what BLEU compares with."""
        return self.tgt_tokenizer.detokenize(self.tgt_tokenizer.tokenize(text))

    def read_source(self, text: str) -> list[str]:
        """The tokens of source ``text`` as a model reads them: cut to ``max_length``."""
        return self.source_tokens(text)[: self.max_length]

    def read_target(self, text: str) -> list[str]:
        """The tokens of target ``text`` as a model reads them: cut to ``max_length``."""
        return self.target_tokens(text)[: self.max_length]
