"""Several training corpora (``data.train`` as a list): read one after the other into one table
with one vocabulary, the sources of a tagged corpus starting with its tag, and each epoch's
examples drawn from each corpus by its weight.

    draws = corpus_draws(config.train, prepared.sizes)       # where each corpus's examples are
    prepared = with_tags(prepared, config.train)              # <2fr> before every source of its corpus
    chosen = epoch_examples(draws, seed, epoch)               # int64 [n]: the epoch's examples

An epoch draws ``weight x size`` examples from a corpus: every example ``floor(weight)`` times, and
the fraction left as a sample without repeats, drawn by a generator seeded with ``(seed, epoch,
corpus)``, so every process, and a resumed run, draws the same.  A tag is a real token of the
source: the mask and every padding property treat it as any other token.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..config import Corpus
from .preparation import Prepared
from .readers import DataError
from .table import ExampleTable, id_dtype, offsets_of

__all__ = ["Draw", "corpus_draws", "drawn_per_corpus", "epoch_examples", "with_tags"]


@dataclass(frozen=True)
class Draw:
    """A corpus's examples in the table (``start`` to ``stop``) and how an epoch draws from them."""

    name: str
    weight: float
    tag: str | None
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start

    @property
    def per_epoch(self) -> int:
        return round(self.weight * self.size)


def corpus_draws(corpora: Sequence[Corpus], sizes: Sequence[int]) -> tuple[Draw, ...]:
    """Each corpus's place in the table (``sizes``: its examples) and weight; a weight that would
    draw no example of a corpus is refused."""
    ends = np.cumsum(sizes).tolist()
    draws = tuple(Draw(corpus.label, corpus.weight, corpus.tag, end - size, end)
                  for corpus, size, end in zip(corpora, sizes, ends, strict=True))
    for draw in draws:
        if draw.per_epoch == 0:
            raise DataError(f"data.train: {draw.name} has {draw.size} examples, and a weight of {draw.weight:g} "
                            "draws none of them an epoch; raise its weight or leave it out")
    return draws


def epoch_examples(draws: Sequence[Draw], seed: int, epoch: int) -> np.ndarray:
    """The indices of the examples ``epoch`` trains on, corpus after corpus (the sampler shuffles them)."""
    chosen = []
    for number, draw in enumerate(draws):
        whole, rest = divmod(draw.per_epoch, draw.size)
        chosen.extend([np.arange(draw.start, draw.stop)] * whole)
        if rest:
            generator = np.random.default_rng([seed, epoch, number])
            chosen.append(draw.start + np.sort(generator.choice(draw.size, rest, replace=False)))
    return np.concatenate(chosen).astype(np.int64)


def with_tags(prepared: Prepared, corpora: Sequence[Corpus]) -> Prepared:
    """``prepared`` with each tagged corpus's sources starting with its tag, the tags added to the
    source vocabulary (and the target's, when it is the same vocabulary); a tag that is a token of
    the text is refused."""
    tags = list(dict.fromkeys(corpus.tag for corpus in corpora if corpus.tag is not None))
    if not tags:
        return prepared
    for tag in tags:
        if tag in prepared.src_vocab and tag not in prepared.src_vocab.tags:
            raise DataError(f"data.train: the tag {tag} is also a token of the training text; choose a tag the text "
                            "never holds")
    joint = prepared.src_vocab == prepared.tgt_vocab
    src_vocab = prepared.src_vocab.with_tags(tags)
    tgt_vocab = src_vocab if joint else prepared.tgt_vocab
    tag_ids = np.full(len(prepared.table), -1, dtype=np.int64)  # per example: its tag's id, or -1
    for draw in corpus_draws(corpora, prepared.sizes):
        if draw.tag is not None:
            tag_ids[draw.start:draw.stop] = src_vocab.stoi[draw.tag]
    table = _tagged(prepared.table, tag_ids, id_dtype(len(src_vocab)))
    return dataclasses.replace(prepared, table=table, src_vocab=src_vocab, tgt_vocab=tgt_vocab)


def _tagged(table: ExampleTable, tag_ids: np.ndarray, dtype: np.dtype) -> ExampleTable:
    """``table`` with example ``i``'s source starting with ``tag_ids[i]`` (-1: none)."""
    has = (tag_ids >= 0).astype(np.int64)                               # [N]
    lengths = np.diff(table.src_offsets)                                 # [N]
    offsets = offsets_of(lengths + has)                                  # [N + 1]
    ids = np.empty(int(offsets[-1]), dtype=dtype)
    ids[offsets[:-1][has == 1]] = tag_ids[has == 1]
    shift = np.repeat(offsets[:-1] + has - table.src_offsets[:-1], lengths)  # each old token's move
    ids[np.arange(len(table.src_ids)) + shift] = table.src_ids
    target_ids = np.asarray(table.tgt_ids).astype(dtype, copy=False)
    return ExampleTable(ids, offsets, target_ids, np.asarray(table.tgt_offsets))


def drawn_per_corpus(draws: Sequence[Draw]) -> dict[str, int]:
    """How many examples an epoch draws from each corpus, by name."""
    return {draw.name: draw.per_epoch for draw in draws}

