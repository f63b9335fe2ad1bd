"""Vocabulary: token <-> index, with fixed special indices (``<pad>`` = 0)."""
from __future__ import annotations

from collections import Counter
from typing import Iterable, Mapping, Sequence

__all__ = ["Vocabulary", "PAD", "UNK", "BOS", "EOS", "PAD_INDEX", "UNK_INDEX", "BOS_INDEX", "EOS_INDEX"]

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIALS = (PAD, UNK, BOS, EOS)
PAD_INDEX, UNK_INDEX, BOS_INDEX, EOS_INDEX = range(4)


class Vocabulary:
    """Specials first at fixed indices, then tokens by frequency (ties alphabetical)."""

    pad_index, unk_index, bos_index, eos_index = PAD_INDEX, UNK_INDEX, BOS_INDEX, EOS_INDEX

    def __init__(self, tokens: Sequence[str], tags: Sequence[str] = ()):
        tokens = list(tokens)
        for index, token in enumerate(tokens):
            if not isinstance(token, str):
                raise ValueError(f"vocabulary token {index} is {type(token).__name__} {token!r:.40}, not a string")
        if tuple(tokens[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary must start with the specials {SPECIALS}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("a vocabulary's tokens must be unique")
        self.itos = tokens
        self.stoi = {token: index for index, token in enumerate(tokens)}
        self.tags = tuple(tags)  # corpus tags (<2fr>): tokens a source starts with, which text never becomes
        missing = [tag for tag in self.tags if tag not in self.stoi]
        if missing:
            raise ValueError(f"a vocabulary's tags must be among its tokens; {missing[0]!r} is not")
        # what text may map to: every entry but the specials (``build`` never counts them as words) and the tags
        self._text_ids = {token: index for index, token in enumerate(tokens)
                          if index >= len(SPECIALS) and token not in self.tags}

    @classmethod
    def build(cls, sequences: Iterable[Sequence[str]], min_freq: int = 1,
              max_size: int | None = None) -> "Vocabulary":
        """Count tokens over ``sequences``; keep those seen ``min_freq`` times, at most ``max_size``."""
        return cls.from_counts(Counter(token for sequence in sequences for token in sequence), min_freq, max_size)

    @classmethod
    def from_counts(cls, counts: Mapping[str, int], min_freq: int = 1, max_size: int | None = None) -> "Vocabulary":
        """The vocabulary of tokens counted ``counts`` times (specials are no words: not counted)."""
        ranked = sorted((t for t, c in counts.items() if c >= min_freq and t not in SPECIALS),
                        key=lambda t: (-counts[t], t))
        return cls(list(SPECIALS) + ranked[:max_size])

    def extended(self, other: "Vocabulary") -> "Vocabulary":
        """This vocabulary, its ids unchanged, with the tokens of ``other`` it lacks after its own (its tags too)."""
        return self._adding(other.itos, other.tags)

    def with_tags(self, tags: Sequence[str]) -> "Vocabulary":
        """This vocabulary with ``tags`` after its tokens (the ones it has already stay where they are)."""
        return self._adding(tags, tags)

    def _adding(self, tokens: Sequence[str], tags: Sequence[str]) -> "Vocabulary":
        return Vocabulary(self.itos + [token for token in tokens if token not in self.stoi],
                          self.tags + tuple(tag for tag in tags if tag not in self.tags))

    def __len__(self) -> int:
        return len(self.itos)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.itos == other.itos and self.tags == other.tags

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """Token strings -> indices; unknown tokens map to ``<unk>``.

        Text never becomes ``<pad>``, ``<bos>`` or ``<eos>``: a literal ``"<pad>"`` in a sentence
        is an unknown token like any other, so it cannot end, start or pad a real sequence.
        """
        return [self._text_ids.get(token, UNK_INDEX) for token in tokens]

    def to_tokens(self, indices: Iterable[int]) -> list[str]:
        """Indices -> tokens, stopping at the first ``<eos>``; ``<pad>``/``<bos>`` dropped."""
        tokens = []
        for index in indices:
            index = int(index)
            if index == EOS_INDEX:
                break
            if index in (PAD_INDEX, BOS_INDEX):
                continue
            tokens.append(self.itos[index])
        return tokens

    def to_list(self) -> list[str]:
        return list(self.itos)
