"""Several corpora prepared apart, joined into one training split: each corpus is a prepared split
of its own (``prepared.py``) whose vocabularies are every token it holds; the joined split maps
their ids into one pair of vocabularies, corpus after corpus, block by block.

    vocabularies = counted_vocabularies(parts, min_freq=1, max_size=None)   # or a model's own
    prepared = join_parts(parts, vocabularies, folder)                       # the arrays in ``folder``

Tokenising is what preparing costs; mapping ids is a lookup per block, so adding a corpus
tokenises that corpus alone, and the join is made again from the parts.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from .preparation import BLOCK_TOKENS, CorporaOrigins, LineOrigins, Prepared
from .preprocess import PreprocessStats
from .table import ExampleTable, id_dtype, offsets_of
from .vocab import Vocabulary

__all__ = ["counted_vocabularies", "join_parts"]


def counted_vocabularies(parts: Sequence[Prepared], min_freq: int,
                         max_size: int | None) -> tuple[Vocabulary, Vocabulary]:
    """Each side's vocabulary counted over every part (the counts a single reading would give)."""
    return tuple(Vocabulary.from_counts(_counts(parts, side), min_freq, max_size) for side in ("src", "tgt"))


def join_parts(parts: Sequence[Prepared], vocabularies: tuple[Vocabulary, Vocabulary], folder: Path) -> Prepared:
    """The parts' examples, one corpus after the other, under ``vocabularies``: each side's ids
    written to ``folder/{src,tgt}_ids.npy`` (memory-mapped), the offsets and origins in memory."""
    sides = [_joined_side(parts, side, vocabulary, folder) for side, vocabulary in zip(("src", "tgt"), vocabularies)]
    table = ExampleTable(sides[0][0], sides[0][1], sides[1][0], sides[1][1])
    stats = PreprocessStats()
    for part in parts:
        stats.add(part.stats)
    origins = CorporaOrigins([LineOrigins(part.origins.name, np.asarray(part.origins.lines)) for part in parts])
    return Prepared(table, origins, vocabularies[0], vocabularies[1], stats, sizes=[len(part.table) for part in parts])


def _counts(parts: Sequence[Prepared], side: str) -> Counter:
    counts: Counter = Counter()
    for part in parts:
        tokens = getattr(part, f"{side}_vocab").itos
        found = np.bincount(np.asarray(getattr(part.table, f"{side}_ids")), minlength=len(tokens))
        counts.update({tokens[i]: int(found[i]) for i in np.flatnonzero(found)})
    return counts


def _joined_side(parts: Sequence[Prepared], side: str, vocabulary: Vocabulary,
                 folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """One side's ``(ids, offsets)`` over every part, the ids in ``folder/SIDE_ids.npy``."""
    lengths = [np.diff(getattr(part.table, f"{side}_offsets")) for part in parts]
    offsets = offsets_of(np.concatenate(lengths))                                          # [N + 1]
    path = folder / f"{side}_ids.npy"
    ids = np.lib.format.open_memmap(path, mode="w+", dtype=id_dtype(len(vocabulary)), shape=(int(offsets[-1]),))
    start = 0
    for part in parts:
        # a part's tokens -> this vocabulary's ids (a token it lacks: <unk>, as reading it would give)
        lookup = np.array(vocabulary.encode(getattr(part, f"{side}_vocab").itos), dtype=ids.dtype)
        local = getattr(part.table, f"{side}_ids")
        for block in range(0, len(local), BLOCK_TOKENS):
            chunk = lookup[local[block: block + BLOCK_TOKENS]]
            ids[start: start + len(chunk)] = chunk
            start += len(chunk)
    ids.flush()
    del ids
    return np.load(path, mmap_mode="r"), offsets
