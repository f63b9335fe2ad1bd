"""``TextCodec``: text <-> token ids for one model (its tokenizer, its vocabularies, the longest
input it reads).  What every part that meets text needs, and nothing else of the model.

    codec = TextCodec.for_data(config.data, src_vocab, tgt_vocab)
    examples = codec.encode(["Thu 26 Nov 2026"])        # lengths measured, cut to max_length
    codec.decode(hypothesis.tokens)                     # '2026-11-26'
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..config import DataConfig
from .preprocess import Example, encode_sources
from .tokenizers import Tokenizer, build_tokenizer
from .vocab import Vocabulary

__all__ = ["TextCodec", "tokenizer_for"]


def tokenizer_for(config: DataConfig) -> Tokenizer:
    return build_tokenizer(config.tokenizer, lowercase=config.lowercase)


@dataclass(frozen=True)
class TextCodec:
    tokenizer: Tokenizer
    src_vocab: Vocabulary
    tgt_vocab: Vocabulary
    max_length: int  # longest source or target the model reads, in tokens (``data.max_length``)

    @classmethod
    def for_data(cls, config: DataConfig, src_vocab: Vocabulary, tgt_vocab: Vocabulary) -> "TextCodec":
        return cls(tokenizer_for(config), src_vocab, tgt_vocab, config.max_length)

    def encode(self, sources: Sequence[str], targets: Sequence[str] | None = None) -> list[Example]:
        """User strings -> examples with their lengths (see ``encode_sources``: empty inputs raise,
        long ones are cut to ``max_length`` with a warning)."""
        return encode_sources(sources, self.tokenizer, self.src_vocab, targets, self.tgt_vocab, self.max_length)

    def decode(self, token_ids: Sequence[int]) -> str:
        """Output ids -> text (specials dropped, stopping at ``<eos>``)."""
        return self.tokenizer.detokenize(self.tgt_vocab.decode(token_ids))

    def output_tokens(self, token_ids: Sequence[int]) -> list[str]:
        return [self.tgt_vocab.itos[i] for i in token_ids]

    def tokenize(self, text: str) -> list[str]:
        return self.tokenizer.tokenize(text)

    def read_tokens(self, text: str) -> list[str]:
        """The tokens of ``text`` as a model reads them: cut to ``max_length``."""
        return self.tokenizer.tokenize(text)[: self.max_length]
