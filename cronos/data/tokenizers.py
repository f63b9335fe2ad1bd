"""Tokenizers: text <-> list of token strings.

Every tokenizer has ``tokenize(text) -> list[str]``, ``detokenize(tokens) -> str`` and
``words(tokens) -> list[int | None]`` (each token's word, for word alignments); callers go
through ``build_tokenizer`` only, so a subword tokenizer (sentencepiece) is one more class and one
more registry entry, with no change to the callers.
"""
from __future__ import annotations

import re
from typing import Protocol, Sequence

__all__ = ["Tokenizer", "CharTokenizer", "WhitespaceTokenizer", "WordTokenizer", "build_tokenizer"]


class Tokenizer(Protocol):
    def tokenize(self, text: str) -> list[str]: ...

    def detokenize(self, tokens: list[str]) -> str: ...

    def words(self, tokens: Sequence[str]) -> list[int | None]: ...


def one_word_each(tokens: Sequence[str]) -> list[int | None]:
    """Each token is a word of its own (``Tokenizer.words`` of tokenizers that split at words)."""
    return list(range(len(tokens)))


class CharTokenizer:
    """One token per character; spaces are tokens too, so detokenising is exact."""

    def __init__(self, lowercase: bool = False):
        self.lowercase = lowercase

    def tokenize(self, text: str) -> list[str]:
        return list(text.lower() if self.lowercase else text)

    def detokenize(self, tokens: list[str]) -> str:
        return "".join(tokens)

    def words(self, tokens: Sequence[str]) -> list[int | None]:
        """Each token's word (characters between white space), None for white space."""
        found, word, after_space = [], -1, True
        for token in tokens:
            if token.isspace():
                found.append(None)
                after_space = True
                continue
            word += after_space
            found.append(word)
            after_space = False
        return found


class WhitespaceTokenizer:
    """Split on runs of white space."""

    def __init__(self, lowercase: bool = False):
        self.lowercase = lowercase

    def tokenize(self, text: str) -> list[str]:
        return (text.lower() if self.lowercase else text).split()

    def detokenize(self, tokens: list[str]) -> str:
        return " ".join(tokens)

    words = staticmethod(one_word_each)


class WordTokenizer:
    """Words and single punctuation marks: ``"Hi, you!"`` -> ``["hi", ",", "you", "!"]`` (lowercased)."""

    _pattern = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]")

    def __init__(self, lowercase: bool = False):
        self.lowercase = lowercase

    def tokenize(self, text: str) -> list[str]:
        return self._pattern.findall(text.lower() if self.lowercase else text)

    def detokenize(self, tokens: list[str]) -> str:
        text = " ".join(tokens)
        return re.sub(r" ([.,!?;:)\]}])", r"\1", re.sub(r"([(\[{]) ", r"\1", text))

    words = staticmethod(one_word_each)  # a punctuation mark is a word of its own


_TOKENIZERS: dict[str, type] = {"char": CharTokenizer, "whitespace": WhitespaceTokenizer, "word": WordTokenizer}


def build_tokenizer(name: str, lowercase: bool = False) -> Tokenizer:
    """The tokenizer called ``name`` (``char``, ``whitespace`` or ``word``)."""
    try:
        return _TOKENIZERS[name](lowercase=lowercase)
    except KeyError:
        raise ValueError(f"unknown tokenizer {name!r}; expected one of {sorted(_TOKENIZERS)}") from None
