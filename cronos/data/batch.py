"""``collate``: examples -> a right-padded ``Batch`` of ``(tokens, lengths)``."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Iterable, Iterator, Sequence, TypeVar

import torch

from .preprocess import Example
from .vocab import BOS_INDEX, EOS_INDEX, PAD_INDEX

__all__ = ["Batch", "chunks", "collate", "length_batches"]

T = TypeVar("T")


@dataclass(frozen=True)
class Batch:
    """Padded tensors, right-padded with ``<pad>`` = 0; lengths count real tokens only.

    ``src [B, S]``, ``src_lengths [B]``; with references also ``tgt_in [B, T]`` (``<bos>`` + tokens),
    ``tgt_out [B, T]`` (tokens + ``<eos>``) and ``tgt_lengths [B]``.  ``indices`` are the examples'
    positions in their split, for error messages and for restoring input order.  ``readings``: the
    sources as other source sides read them (``Example.readings``), each ``(tokens [B, S_r],
    lengths [B])`` padded alike; () for one model.
    """

    src: torch.Tensor
    src_lengths: torch.Tensor
    tgt_in: torch.Tensor | None
    tgt_out: torch.Tensor | None
    tgt_lengths: torch.Tensor | None
    indices: tuple[int, ...]
    readings: tuple[tuple[torch.Tensor, torch.Tensor], ...] = ()

    @property
    def size(self) -> int:
        return self.src.size(0)

    @property
    def num_target_tokens(self) -> int:
        return int(self.tgt_lengths.sum()) if self.tgt_lengths is not None else 0

    def pin_memory(self) -> "Batch":
        """The tensors in page-locked memory (what ``DataLoader(pin_memory=True)`` calls), for a faster
        copy to a CUDA device."""
        pin = lambda t: None if t is None else t.pin_memory()  # noqa: E731
        return replace(self, src=pin(self.src), tgt_in=pin(self.tgt_in), tgt_out=pin(self.tgt_out),
                       readings=tuple((pin(tokens), lengths) for tokens, lengths in self.readings))

    def to(self, device: torch.device | str) -> "Batch":
        """Tensors moved to ``device``; lengths stay on the CPU (``pack_padded_sequence`` wants them there)."""
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return replace(self, src=move(self.src), tgt_in=move(self.tgt_in), tgt_out=move(self.tgt_out),
                       readings=tuple((move(tokens), lengths) for tokens, lengths in self.readings))


def collate(examples: Sequence[Example]) -> Batch:
    """Right-pad sources and targets of ``examples`` into a ``Batch``."""
    if not examples:
        raise ValueError("cannot collate an empty list of examples")
    src_lengths = torch.tensor([e.src_length for e in examples], dtype=torch.long)
    src = _pad([list(e.src) for e in examples], int(src_lengths.max()))
    indices, readings = tuple(e.index for e in examples), _collate_readings(examples)
    if any(e.tgt is None for e in examples):
        return Batch(src, src_lengths, None, None, None, indices, readings)
    tgt_lengths = torch.tensor([e.tgt_length for e in examples], dtype=torch.long)
    longest = int(tgt_lengths.max())
    tgt_in = _pad([[BOS_INDEX, *e.tgt] for e in examples], longest)
    tgt_out = _pad([[*e.tgt, EOS_INDEX] for e in examples], longest)
    return Batch(src, src_lengths, tgt_in, tgt_out, tgt_lengths, indices, readings)


def _collate_readings(examples: Sequence[Example]) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    readings = []
    for r in range(len(examples[0].readings)):
        rows = [list(e.readings[r]) for e in examples]
        lengths = torch.tensor([len(row) for row in rows], dtype=torch.long)
        readings.append((_pad(rows, int(lengths.max())), lengths))
    return tuple(readings)


def _pad(rows: list[list[int]], width: int) -> torch.Tensor:
    out = torch.full((len(rows), width), PAD_INDEX, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of ``size`` (the last may be shorter), read lazily: a stream works too."""
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def length_batches(examples: Sequence[Example], batch_size: int) -> Iterator[list[int]]:
    """Positions of ``examples`` in batches of ``batch_size`` similar source lengths (little padding),
    for inference: every example once, in a fixed order."""
    return chunks(sorted(range(len(examples)), key=lambda i: (examples[i].src_length, i)), batch_size)
