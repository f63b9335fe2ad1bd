"""Batch samplers over examples' lengths, and the padded share they cause.

``BucketBatchSampler`` sorts by length (source, then target in a boustrophedon) with random
tie-breaking, packs neighbours into batches
(``batch_size`` sentences, or a ``batch_tokens`` budget counted as batch size x longest side,
padding included), then shuffles the batch order.  The result is a pure function of
``(seed, epoch)``: every example exactly once per epoch, the same batches on a resumed run.

Everything here works on arrays (a batch is an ``int32`` array of example indices, a view into
the epoch's order), so a plan costs a few bytes per example, also at tens of millions of them.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

__all__ = ["BucketBatchSampler", "RandomBatchSampler", "padded_share", "plan_updates", "tokens_in", "DEFAULT_BATCH_SIZE",
           "Batches", "Update"]

DEFAULT_BATCH_SIZE = 64

Batches = list[np.ndarray]  # batches of example indices, each int32 [B]
Update = list[Batches]     # one optimiser update: ``update[rank]``, the batches process ``rank`` trains on


class BucketBatchSampler(Sampler[list[int]]):
    def __init__(self, src_lengths: Sequence[int] | np.ndarray, tgt_lengths: Sequence[int] | np.ndarray, *,
                 batch_size: int | None = None, batch_tokens: int | None = None,
                 seed: int = 0):
        if len(src_lengths) != len(tgt_lengths):
            raise ValueError("src_lengths and tgt_lengths differ in size")
        if batch_size is not None and batch_tokens is not None:
            raise ValueError("give batch_size or batch_tokens, not both")
        self.src_lengths = np.asarray(src_lengths, dtype=np.int32)  # [N]
        self.tgt_lengths = np.asarray(tgt_lengths, dtype=np.int32)  # [N]
        self.batch_size = batch_size if batch_tokens is None and batch_size else DEFAULT_BATCH_SIZE
        self.batch_tokens = batch_tokens
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        """What ``iter`` gives next (torch's ``Sampler`` protocol, as ``DistributedSampler`` has it)."""
        self.epoch = epoch

    def batches(self, epoch: int) -> Batches:
        """The epoch's batches of example indices: a pure function of ``(seed, epoch)``."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        batches = self._pack(self._order(generator))
        return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]

    def __iter__(self) -> Iterator[list[int]]:
        return (batch.tolist() for batch in self.batches(self.epoch))

    def __len__(self) -> int:
        return len(self.batches(self.epoch))

    def _order(self, generator: torch.Generator) -> np.ndarray:
        """Examples sorted by source length, then by target length ascending for even source lengths
        and descending for odd ones (a boustrophedon), so a batch that straddles two source lengths
        joins their neighbouring target lengths; ties in a random order.  int32 [N]."""
        order = _permutation(len(self.src_lengths), generator)
        src, tgt = self.src_lengths[order].astype(np.int64), self.tgt_lengths[order]  # [N]
        span = (int(self.tgt_lengths.max()) if len(order) else 0) + 1
        keys = src * span + np.where(src % 2 == 0, tgt, span - 1 - tgt)  # [N] int64
        del src, tgt
        if len(keys) and keys.max() < 1 << 16:
            keys = keys.astype(np.uint16)  # numpy's stable sort of 16-bit keys is a radix sort: linear time
        return order[np.argsort(keys, kind="stable")]

    def _pack(self, order: np.ndarray) -> Batches:
        """Neighbours in ``order`` into batches: ``batch_size`` each, or as many as keep batch size x
        longest side within ``batch_tokens`` (at least one)."""
        if self.batch_tokens is None:
            starts = np.arange(0, len(order), self.batch_size)
        else:
            starts = _token_batch_starts(np.maximum(self.src_lengths[order], self.tgt_lengths[order]),
                                         self.batch_tokens)
        return np.split(order, starts[1:])


class RandomBatchSampler(BucketBatchSampler):
    """Same packing over a plain random order: the baseline that bucketing is measured against."""

    def _order(self, generator: torch.Generator) -> np.ndarray:
        return _permutation(len(self.src_lengths), generator)


def _permutation(n: int, generator: torch.Generator) -> np.ndarray:
    """``torch.randperm`` of ``n`` for ``generator``, as int32 [N] (half the memory of torch's default)."""
    return torch.randperm(n, generator=generator, dtype=torch.int32).numpy()


def _token_batch_starts(longest: np.ndarray, budget: int) -> np.ndarray:
    """Where each batch starts when neighbours are packed while (size) x (longest side so far) stays
    within ``budget`` (a batch takes its first example whatever its length): per batch, the running
    maximum over the next examples, as many as the shortest example fits in ``budget`` (no batch
    holds more)."""
    starts, start = [], 0
    most = budget // max(1, int(longest.min())) if len(longest) else 1
    positions = np.arange(1, most + 1)
    while start < len(longest):
        starts.append(start)
        window = np.maximum.accumulate(longest[start: start + most])
        fits = positions[: len(window)] * window <= budget  # True, then False: the product only grows
        start += max(1, int(np.argmin(fits)) if not fits.all() else len(window))
    return np.array(starts, dtype=np.int64)


def plan_updates(batches: Sequence[Sequence[int]], tokens: Sequence[int] | np.ndarray, accumulate: int,
                 world_size: int = 1) -> list[Update]:
    """An epoch's optimiser updates: ``plan[u][r]`` lists the batches process ``r`` trains on in update ``u``.

    Every process computes the same plan from the same batches.  Each update takes the next
    ``accumulate * world_size`` batches, dealt to the processes by their real target ``tokens``
    (per example): the largest batch first, each to the process with the fewest tokens so far.
    So ``world_size`` processes with ``accumulate`` batches each take the same updates as one
    process with ``accumulate * world_size`` batches.  Every process gets a batch in every update
    (it must take part in each gradient exchange): the epoch's last update, when it has fewer
    batches than processes, has its largest batches cut in two, or else joins the update before.
    """
    group, tokens = accumulate * world_size, np.asarray(tokens)
    updates = [list(batches[start: start + group]) for start in range(0, len(batches), group)]
    if updates and len(updates[-1]) < world_size:
        updates[-1] = _split_until(updates[-1], world_size)
        if len(updates[-1]) < world_size and len(updates) > 1:
            updates[-2] += updates.pop()
        if len(updates[-1]) < world_size:
            raise ValueError(f"{sum(map(len, batches))} training examples cannot give each of {world_size} "
                             "processes a batch")
    return [_deal(update, tokens, world_size) for update in updates]


def _split_until(batches: Batches, count: int) -> Batches:
    """Cut the largest batch in two until there are ``count`` batches, or none can be cut."""
    batches = list(batches)
    while len(batches) < count:
        largest = max(range(len(batches)), key=lambda b: len(batches[b]))
        if len(batches[largest]) < 2:
            break
        batch = batches.pop(largest)
        batches[largest:largest] = [batch[: len(batch) // 2], batch[len(batch) // 2:]]
    return batches


def _deal(update: Batches, tokens: np.ndarray, world_size: int) -> Update:
    shares: Update = [[] for _ in range(world_size)]
    load = [0] * world_size
    sizes = [tokens_in(batch, tokens) for batch in update]
    for b in sorted(range(len(update)), key=lambda b: (-sizes[b], b)):
        rank = min(range(world_size), key=lambda r: (load[r], r))
        shares[rank].append(update[b])
        load[rank] += sizes[b]
    return shares


def tokens_in(batch: Sequence[int], tokens: Sequence[int] | np.ndarray) -> int:
    """The sum of ``tokens`` (per example) over the examples of ``batch``: its real target tokens, say."""
    return int(np.asarray(tokens)[np.asarray(batch, dtype=np.int64)].sum())


def padded_share(batches: Sequence[Sequence[int]], src_lengths: Sequence[int] | np.ndarray,
                 tgt_lengths: Sequence[int] | np.ndarray) -> float:
    """Pad positions / all positions of the padded source and target tensors of ``batches``."""
    sizes = np.array([len(batch) for batch in batches], dtype=np.int64)  # [batches]
    if not sizes.sum():
        return 0.0
    indices = np.concatenate([np.asarray(batch, dtype=np.int64) for batch in batches])  # [examples]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    padded = total = 0
    for lengths in (src_lengths, tgt_lengths):
        lengths = np.asarray(lengths)[indices].astype(np.int64)  # gathered first: no copy of every length
        area = int((sizes * np.maximum.reduceat(lengths, starts)).sum())  # batch size x its longest
        total, padded = total + area, padded + area - int(lengths.sum())
    return padded / total
