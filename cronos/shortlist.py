"""Vocabulary shortlists: the target tokens each source token may translate into, so that search
projects its outputs onto a sentence's candidates instead of the whole vocabulary.

    shortlist = Shortlist.build(training.examples, src_vocab, tgt_vocab, per_source=50, frequent=300)
    shortlist.save("shortlist.pt");  shortlist = Shortlist.load("shortlist.pt")
    ids = shortlist.candidates(example.src)       # sorted target ids for this source
    projection = ShortlistProjection(network.output_projection, [shortlist.candidates(s) for s in sources])

A source token's candidates are the ``per_source`` target tokens with the highest Dice coefficient
``2 c(s, t) / (c(s) + c(t))`` over the training pairs (``c`` counts the pairs a token occurs in,
once per pair however often it repeats there); every sentence also gets the ``frequent`` most
frequent target tokens, ``<eos>`` and ``<unk>``.  A sentence's candidates come from its own source
only, so with a shortlist an example's results still do not depend on its batch
(docs/decoding.md, "Vocabulary shortlists").
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .data import Example
from .data.vocab import EOS_INDEX, PAD_INDEX, UNK_INDEX, Vocabulary
from .invariance import key_width, matmul_by_rows

__all__ = ["Shortlist", "ShortlistError", "ShortlistProjection"]

FORMAT = "cronos-shortlist-1"
PAIRS_PER_CHUNK = 20_000  # co-occurrences are counted a chunk of pairs at a time: memory stays flat


class ShortlistError(ValueError):
    """A shortlist file that cannot be read, or one made for other vocabularies."""


@dataclass(frozen=True)
class Shortlist:
    by_source: Tensor    # [source vocabulary, per_source] target ids, best first; -1 where a token has fewer
    always: Tensor       # [F] target ids every sentence gets: the most frequent ones and the specials
    vocabularies: str    # digest of the source and target vocabularies it was built for

    @staticmethod
    def build(examples: Iterable[Example], src_vocab: Vocabulary, tgt_vocab: Vocabulary,
              per_source: int = 50, frequent: int = 300) -> "Shortlist":
        """Count which target tokens occur in the pairs of each source token (``examples``: the
        training pairs as ids), and keep each source token's ``per_source`` best by Dice."""
        if per_source < 1 or frequent < 0:
            raise ValueError(f"per_source must be at least 1 and frequent at least 0, got {per_source}, {frequent}")
        source_size, target_size = len(src_vocab), len(tgt_vocab)
        pair_counts, source_counts, target_counts = _co_occurrences(examples, source_size, target_size)
        keys, counts = pair_counts
        sources, targets = keys // target_size, keys % target_size
        dice = 2.0 * counts / (source_counts[sources] + target_counts[targets])
        order = np.lexsort((targets, -dice, sources))  # by source, best first, ties by id
        sources, targets = sources[order], targets[order]
        first_of_source = np.searchsorted(sources, np.arange(source_size))
        rank = np.arange(len(sources)) - first_of_source[sources]
        kept = rank < per_source
        by_source = np.full((source_size, per_source), -1, dtype=np.int64)
        by_source[sources[kept], rank[kept]] = targets[kept]
        by_frequency = np.argsort(-target_counts, kind="stable")
        by_frequency = by_frequency[target_counts[by_frequency] > 0][:frequent]
        always = np.union1d(by_frequency, [EOS_INDEX, UNK_INDEX])
        return Shortlist(torch.from_numpy(by_source), torch.from_numpy(always), vocabularies_digest(src_vocab, tgt_vocab))

    def candidates(self, source: Sequence[int]) -> Tensor:
        """The sorted target ids a sentence with source ids ``source`` may produce."""
        found = self.by_source[torch.as_tensor(list(source), dtype=torch.long)].flatten()
        return torch.cat([found[found >= 0], self.always]).unique()

    def check_vocabularies(self, src_vocab: Vocabulary, tgt_vocab: Vocabulary, name: str) -> None:
        if self.vocabularies != vocabularies_digest(src_vocab, tgt_vocab):
            raise ShortlistError(f"{name}: this shortlist was built for another model's vocabularies; "
                                 "build one for this model with `cronos shortlist`")

    def save(self, path: str | os.PathLike) -> None:
        torch.save({"format": FORMAT, "by_source": self.by_source, "always": self.always,
                    "vocabularies": self.vocabularies}, path)

    @staticmethod
    def load(path: str | os.PathLike) -> "Shortlist":
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise ShortlistError(f"{path}: no such shortlist file") from None
        except Exception as error:  # noqa: BLE001 - any unreadable file is one message
            raise ShortlistError(f"{path}: not a shortlist written by `cronos shortlist` ({error})") from None
        if not isinstance(stored, dict) or stored.get("format") != FORMAT:
            raise ShortlistError(f"{path}: not a shortlist written by `cronos shortlist`")
        return Shortlist(stored["by_source"], stored["always"], stored["vocabularies"])

    @property
    def per_source(self) -> int:
        return self.by_source.size(1)


def vocabularies_digest(src_vocab: Vocabulary, tgt_vocab: Vocabulary) -> str:
    digest = hashlib.sha256()
    for vocabulary in (src_vocab, tgt_vocab):
        digest.update("\n".join(vocabulary.itos).encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def _co_occurrences(examples: Iterable[Example], source_size: int, target_size: int):
    """``((keys, counts), source_counts, target_counts)``: for each (source id, target id) that share
    a pair, ``key = source * target_size + target`` and the number of pairs they share; and the
    number of pairs each id occurs in.  Counted a chunk of pairs at a time, merged as it goes."""
    source_counts = np.zeros(source_size, dtype=np.int64)
    target_counts = np.zeros(target_size, dtype=np.int64)
    merged = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    chunk: list[np.ndarray] = []
    for count, example in enumerate(examples, start=1):
        sources = np.unique(np.asarray(example.src, dtype=np.int64))
        targets = np.unique(np.asarray(example.tgt, dtype=np.int64))
        source_counts[sources] += 1
        target_counts[targets] += 1
        chunk.append((sources[:, None] * target_size + targets[None, :]).ravel())
        if count % PAIRS_PER_CHUNK == 0:
            merged = _merge(merged, np.unique(np.concatenate(chunk), return_counts=True))
            chunk = []
    if chunk:
        merged = _merge(merged, np.unique(np.concatenate(chunk), return_counts=True))
    return merged, source_counts, target_counts


def _merge(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    keys = np.concatenate([a[0], b[0]])
    counts = np.concatenate([a[1], b[1]])
    unique, inverse = np.unique(keys, return_inverse=True)
    return unique, np.bincount(inverse, weights=counts, minlength=len(unique)).astype(np.int64)


@dataclass(frozen=True)
class ShortlistProjection:
    """A search step's choices restricted to each input's candidates (``search.TokenChoices``).

    The inputs' sorted candidate ids lie side by side as ``ids [G, L]`` (``L`` the most any input
    has, widened to a multiple of ``invariance.KEY_MULTIPLE``; the added columns score -inf), and
    the output projection's rows for them are gathered once per batch, ``weight [G, L, H]`` and
    ``bias [G, L]``.  A step's decoder outputs ``[G * R, 1, H]`` (``R`` rows per input: its beams)
    give scores ``[G * R, L]`` over the input's columns; ``tokens`` maps columns back to token ids.
    """

    ids: Tensor     # [G, L]
    weight: Tensor  # [G, L, H]
    bias: Tensor    # [G, L], -inf on the added columns

    @staticmethod
    def of(projection: nn.Linear, candidates: Sequence[Tensor]) -> "ShortlistProjection":
        """``candidates``: each input's sorted target ids."""
        width = key_width(max(len(c) for c in candidates))
        ids = torch.full((len(candidates), width), PAD_INDEX, dtype=torch.long)
        real = torch.zeros(len(candidates), width, dtype=torch.bool)
        for row, found in enumerate(candidates):
            ids[row, : len(found)] = found
            real[row, : len(found)] = True
        ids, real = ids.to(projection.weight.device), real.to(projection.weight.device)
        weight = projection.weight.detach()[ids]  # [G, L, H]
        bias = projection.bias.detach()[ids] if projection.bias is not None else torch.zeros(ids.shape)
        return ShortlistProjection(ids, weight, bias.masked_fill(~real, float("-inf")))

    def step(self, network, previous: Tensor, state, need_weights: bool) -> tuple[Tensor, Tensor | None, object]:
        """One decoder step on ``previous [G * R]`` -> scores ``[G * R, L]``, attention, state."""
        outputs, attention, state = network.decoder_outputs(previous[:, None], state, need_weights)  # [G*R, 1, H]
        grouped = outputs.reshape(self.ids.size(0), -1, outputs.size(-1))  # [G, R, H]
        scores = matmul_by_rows(grouped, self.weight.transpose(1, 2)) + self.bias[:, None, :]  # [G, R, L]
        return scores.reshape(outputs.size(0), -1), attention, state

    def tokens(self, columns: Tensor) -> Tensor:
        """``columns [G, C]`` (columns chosen for each input) -> their token ids ``[G, C]``."""
        return self.ids.gather(1, columns)

    def select(self, groups: Tensor) -> "ShortlistProjection":
        """The inputs ``groups [G']`` only, in that order."""
        return ShortlistProjection(self.ids[groups], self.weight[groups], self.bias[groups])
