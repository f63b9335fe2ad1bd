"""Tokenizers: text <-> list of token strings.

Every tokenizer has ``tokenize(text) -> list[str]`` and ``detokenize(tokens) -> str``; callers go
through ``build_tokenizer`` only, so a subword tokenizer (sentencepiece) is one more class and one
more registry entry, with no change to the callers.
"""
from __future__ import annotations

import re
from typing import Protocol

__all__ = ["Tokenizer", "CharTokenizer", "WhitespaceTokenizer", "WordTokenizer", "build_tokenizer"]


class Tokenizer(Protocol):
    def tokenize(self, text: str) -> list[str]: ...

    def detokenize(self, tokens: list[str]) -> str: ...


class CharTokenizer:
    """One token per character; spaces are tokens too, so detokenising is exact."""

    def __init__(self, lowercase: bool = False):
        self.lowercase = lowercase

    def tokenize(self, text: str) -> list[str]:
        return list(text.lower() if self.lowercase else text)

    def detokenize(self, tokens: list[str]) -> str:
        return "".join(tokens)


class WhitespaceTokenizer:
    """Split on runs of white space."""

    def __init__(self, lowercase: bool = False):
        self.lowercase = lowercase

    def tokenize(self, text: str) -> list[str]:
        return (text.lower() if self.lowercase else text).split()

    def detokenize(self, tokens: list[str]) -> str:
        return " ".join(tokens)


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


_TOKENIZERS: dict[str, type] = {"char": CharTokenizer, "whitespace": WhitespaceTokenizer, "word": WordTokenizer}


def build_tokenizer(name: str, lowercase: bool = False) -> Tokenizer:
    """The tokenizer called ``name`` (``char``, ``whitespace`` or ``word``)."""
    try:
        return _TOKENIZERS[name](lowercase=lowercase)
    except KeyError:
        raise ValueError(f"unknown tokenizer {name!r}; expected one of {sorted(_TOKENIZERS)}") from None
