"""``ExampleTable``: a split's examples as flat arrays, the same whether they live in memory or are
memory-mapped from a prepared folder (``prepared.py``).

    table = ExampleTable.from_examples(examples)   # in memory
    table = ExampleTable.open(folder)              # memory-mapped: the page cache, shared by processes
    table[7]                                       # Example(7, src=(...), tgt=(...), ...), read when asked
    table.src_lengths, table.tgt_lengths           # int32 [N]: what the sampler and the mask need

Each side is its token ids end to end (``uint16`` when the vocabulary fits, else ``int32``) with
per-example offsets (``int64 [N + 1]``); ``tgt_lengths`` counts the target tokens plus one, as
``Example.tgt_length`` does.  A table costs about 16 bytes per example beside its tokens.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence, overload

import numpy as np

from .preprocess import Example

__all__ = ["ExampleTable", "ARRAYS", "id_dtype", "offsets_of"]

ARRAYS = ("src_ids", "src_offsets", "tgt_ids", "tgt_offsets")  # the files of a stored table, ``NAME.npy``


def id_dtype(vocabulary_size: int) -> np.dtype:
    """The smallest integer type that holds every id of a vocabulary of ``vocabulary_size``."""
    return np.dtype(np.uint16 if vocabulary_size <= 1 << 16 else np.int32)


class ExampleTable(Sequence[Example]):
    """Examples as arrays: ``src_ids``/``tgt_ids`` (every example's ids, end to end) and
    ``src_offsets``/``tgt_offsets`` (``[N + 1]``: example ``i`` is ``ids[offsets[i]:offsets[i + 1]]``)."""

    def __init__(self, src_ids: np.ndarray, src_offsets: np.ndarray, tgt_ids: np.ndarray, tgt_offsets: np.ndarray):
        if len(src_offsets) != len(tgt_offsets) or len(src_offsets) == 0:
            raise ValueError(f"offsets of {len(src_offsets)} and {len(tgt_offsets)} entries: a table needs one more "
                             "offset than examples, on both sides")
        self.src_ids, self.src_offsets, self.tgt_ids, self.tgt_offsets = src_ids, src_offsets, tgt_ids, tgt_offsets
        self.src_lengths = np.diff(src_offsets).astype(np.int32)        # [N]
        self.tgt_lengths = np.diff(tgt_offsets).astype(np.int32) + 1    # [N]: tokens + <eos>

    @classmethod
    def from_examples(cls, examples: Sequence[Example], dtype: np.dtype = np.dtype(np.int32)) -> "ExampleTable":
        """A table in memory of ``examples`` (with targets; their ``index`` becomes their position)."""
        src = [e.src for e in examples]
        tgt = [e.tgt for e in examples]
        return cls(_flat(src, dtype), offsets_of([len(s) for s in src]), _flat(tgt, dtype),
                   offsets_of([len(t) for t in tgt]))

    @classmethod
    def open(cls, folder: Path) -> "ExampleTable":
        """The table stored in ``folder`` (``ARRAYS``, as ``prepared.py`` writes them), memory-mapped read-only."""
        arrays = [np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False) for name in ARRAYS]
        return cls(*arrays)

    def __len__(self) -> int:
        return len(self.src_offsets) - 1

    @overload
    def __getitem__(self, index: int) -> Example: ...

    @overload
    def __getitem__(self, index: slice) -> list[Example]: ...

    def __getitem__(self, index: int | slice) -> Example | list[Example]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if not -len(self) <= index < len(self):
            raise IndexError(f"example {index} of a table of {len(self)}")
        index %= len(self)
        src = tuple(self.src_ids[self.src_offsets[index]: self.src_offsets[index + 1]].tolist())
        tgt = tuple(self.tgt_ids[self.tgt_offsets[index]: self.tgt_offsets[index + 1]].tolist())
        return Example(index, src, tgt, len(src), len(tgt) + 1)

    def __iter__(self) -> Iterator[Example]:
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ExampleTable) and all(np.array_equal(getattr(self, name), getattr(other, name))
                                                       for name in ARRAYS)

    __hash__ = None  # mutable arrays: equal tables need not hash alike


def _flat(rows: Sequence[Sequence[int]], dtype: np.dtype) -> np.ndarray:
    return np.fromiter((i for row in rows for i in row), dtype=dtype, count=sum(map(len, rows)))


def offsets_of(lengths: Sequence[int]) -> np.ndarray:
    """``[N + 1]`` int64: where each of ``N`` rows of ``lengths`` starts in their concatenation, and the end."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets
