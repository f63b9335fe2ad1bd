"""``batch_loader``: planned batches of example indices -> collated ``Batch``es, in order, built by
``torch.utils.data.DataLoader`` in worker processes while the model trains on the previous ones.

    for batch in batch_loader(examples, [[4, 9, 2], [7, 1]], workers=2, pin_memory=True):
        ...  # Batch of examples 4, 9, 2, then of 7, 1

With ``workers=0`` the batches are collated in the calling process when asked for.  Workers are
forked from the calling process, so a memory-mapped ``ExampleTable`` is shared with them through
the page cache, not copied.  The loader draws nothing from torch's global random generator (it
has a generator of its own), so dropout and sampling see the same random numbers whatever
``workers`` is.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from .batch import Batch, collate
from .preprocess import Example

__all__ = ["batch_loader"]


class _CollatedBatches(Dataset):
    """Item ``k``: the collated ``Batch`` of the examples ``batches[k]`` names."""

    def __init__(self, examples: Sequence[Example], batches: Sequence[Sequence[int]]):
        self.examples, self.batches = examples, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int) -> Batch:
        return collate([self.examples[int(i)] for i in self.batches[k]])


def batch_loader(examples: Sequence[Example], batches: Sequence[Sequence[int]], workers: int = 0,
                 pin_memory: bool = False) -> DataLoader:
    """The ``Batch`` of each of ``batches`` (lists of positions in ``examples``), in their order;
    collated by ``workers`` processes (0: here), in page-locked memory with ``pin_memory`` (for a
    faster copy to a CUDA device)."""
    return DataLoader(_CollatedBatches(examples, batches), batch_size=None, shuffle=False, num_workers=workers,
                      pin_memory=pin_memory, generator=torch.Generator(), collate_fn=_as_is)


def _as_is(batch: Batch) -> Batch:
    """Items are batches already (``batch_size=None`` hands them over one by one)."""
    return batch
