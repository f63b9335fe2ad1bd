"""Preparing a training split: its text, read in chunks, becomes an ``ExampleTable`` with both
vocabularies, in memory or in files (``prepared.py``), by one path.

    prepared = prepare_split(config, tokenizers, vocabularies=None, folder=None)

Chunks of ``CHUNK_PAIRS`` lines are read as bytes here and decoded and tokenised under the
training ``TextRules`` (in ``data.workers`` processes when more than one), each token of a chunk
given a provisional id;
the chunks' ids are counted and kept (in memory, or appended to a file) until the vocabularies
are known, then mapped to the vocabularies' ids in one pass.  Memory is what the vocabularies
and the per-example lengths need, whatever the corpus's size, when a folder is given.
"""
from __future__ import annotations

import concurrent.futures
import ctypes
import itertools
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from ..config import DataConfig, ParallelFiles
from .preprocess import PreprocessStats, TextRules, tokenize_pairs
from .readers import DataError, RawLines, line_chunks, split_paths
from .table import ExampleTable, id_dtype, offsets_of
from .tokenizers import Tokenizer
from .vocab import EOS_INDEX, Vocabulary

__all__ = ["Prepared", "prepare_split", "training_files", "CorporaOrigins", "LineOrigins", "CHUNK_PAIRS"]

CHUNK_PAIRS = 20_000   # pairs tokenised together: big enough to keep workers busy, small in memory
# the <eos> that ends each source with data.source_eos, while ids are provisional: no tokenizer makes
# it (text is read line by line, and no token holds a line break), and it becomes <eos>, never text
SOURCE_END = "\n<eos>"
BLOCK_TOKENS = 1 << 22  # ids mapped to the vocabulary's per block, when they are in a file


class CorporaOrigins(Sequence[str]):
    """``file:line`` of each example of several corpora, one after the other."""

    def __init__(self, parts: list["LineOrigins"]):
        self.parts, self.ends = parts, np.cumsum([len(part) for part in parts])

    def __len__(self) -> int:
        return int(self.ends[-1])

    def __getitem__(self, index):  # noqa: ANN001 - int or slice, as a Sequence takes
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = range(len(self))[index]
        part = int(np.searchsorted(self.ends, index, side="right"))
        return self.parts[part][index - (int(self.ends[part - 1]) if part else 0)]


class LineOrigins(Sequence[str]):
    """``file:line`` of each example (for messages), from one file name and an array of line numbers."""

    def __init__(self, name: str, lines: np.ndarray):
        self.name, self.lines = name, lines

    def __len__(self) -> int:
        return len(self.lines)

    def __getitem__(self, index):  # noqa: ANN001 - int or slice, as a Sequence takes
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return f"{self.name}:{int(self.lines[index])}"


@dataclass
class Prepared:
    """A prepared training split: its examples, where each came from, the vocabularies, what the
    rules did, and (when asked for) the kept pairs' texts."""

    table: ExampleTable
    origins: Sequence[str]
    src_vocab: Vocabulary
    tgt_vocab: Vocabulary
    stats: PreprocessStats
    texts: list[tuple[str, str]] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)  # examples per corpus, in the order of data.train


@dataclass
class _Chunk:
    """A tokenised chunk: each side's distinct tokens (its provisional ids are their positions),
    the ids of every kept pair end to end, and the lengths; the kept pairs' line numbers."""

    src_tokens: list[str]
    src_ids: np.ndarray      # int32, provisional
    src_lengths: np.ndarray  # int32 [n]
    tgt_tokens: list[str]
    tgt_ids: np.ndarray
    tgt_lengths: np.ndarray
    lines: np.ndarray        # int64 [n]
    stats: PreprocessStats
    texts: list[tuple[str, str]]


def prepare_split(config: DataConfig, tokenizers: tuple[Tokenizer, Tokenizer],
                  vocabularies: tuple[Vocabulary, Vocabulary] | None = None, folder: Path | None = None,
                  keep_texts: bool = False) -> Prepared:
    """``data.train`` -> its examples (in ``folder`` when given, else in memory) and vocabularies
    (the given ``(source, target)``, else counted per ``data.min_freq``/``max_vocab_size``).
    ``keep_texts``: keep the kept pairs' texts (subword regularisation segments them anew)."""
    sides = _Side(folder, "src"), _Side(folder, "tgt")
    origins: list[LineOrigins] = []
    stats, texts = PreprocessStats(), []
    work = _ChunkWork(tokenizers, TextRules.for_training(config), keep_texts, config.source_eos)
    for files in training_files(config):  # one vocabulary over every corpus, counted as they are read
        lines: list[np.ndarray] = []
        for chunk in _ordered_map(work, line_chunks(files, CHUNK_PAIRS), config.workers):
            sides[0].add(chunk.src_tokens, chunk.src_ids, chunk.src_lengths)
            sides[1].add(chunk.tgt_tokens, chunk.tgt_ids, chunk.tgt_lengths)
            lines.append(chunk.lines)
            stats.add(chunk.stats)
            texts += chunk.texts
        if not sum(map(len, lines)):
            raise DataError(f"{' / '.join(split_paths(files))}: no training examples left after preprocessing")
        origins.append(LineOrigins(split_paths(files)[0], np.concatenate(lines)))
    stats.report(config.max_length)
    if vocabularies is None:
        vocabularies = tuple(Vocabulary.from_counts(side.counts(), config.min_freq, config.max_vocab_size)
                             for side in sides)
    src, tgt = (side.finish(vocabulary) for side, vocabulary in zip(sides, vocabularies))
    table = ExampleTable(src[0], src[1], tgt[0], tgt[1])
    return Prepared(table, origins[0] if len(origins) == 1 else CorporaOrigins(origins), vocabularies[0],
                    vocabularies[1], stats, texts, [len(part) for part in origins])


def training_files(config: DataConfig) -> list[str | ParallelFiles]:
    """The files of each training corpus (one, unless ``data.train`` lists several)."""
    return [corpus.files for corpus in config.train] if isinstance(config.train, tuple) else [config.train]


@dataclass(frozen=True)
class _ChunkWork:
    """What a worker does to a chunk (picklable: the tokenizers travel to worker processes)."""

    tokenizers: tuple[Tokenizer, Tokenizer]
    rules: TextRules
    keep_texts: bool
    source_eos: bool = False

    def __call__(self, lines: RawLines) -> _Chunk:
        stats = PreprocessStats()
        kept = tokenize_pairs(lines.pairs(), self.tokenizers, self.rules, stats)
        end = [SOURCE_END] if self.source_eos else []
        sources = [p.source + end for p in kept]
        src_tokens, src_ids = _provisional_ids(sources)
        tgt_tokens, tgt_ids = _provisional_ids([p.target for p in kept])
        return _Chunk(src_tokens, src_ids, np.array([len(source) for source in sources], np.int32),
                      tgt_tokens, tgt_ids, np.array([len(p.target) for p in kept], np.int32),
                      np.array([p.raw.line for p in kept], np.int64), stats,
                      [(p.raw.source, p.raw.target) for p in kept] if self.keep_texts else [])


def _provisional_ids(sequences: Sequence[Sequence[str]]) -> tuple[list[str], np.ndarray]:
    """The distinct tokens of ``sequences`` in order of first appearance, and every token's position
    among them (built with dict and map, in C: the hot loop of preparation)."""
    tokens = list(itertools.chain.from_iterable(sequences))
    distinct = list(dict.fromkeys(tokens))
    position = dict(zip(distinct, range(len(distinct))))
    return distinct, np.fromiter(map(position.__getitem__, tokens), dtype=np.int32, count=len(tokens))


class _Side:
    """One side's provisional ids, their counts and lengths, until the vocabulary is known."""

    def __init__(self, folder: Path | None, name: str):
        self.index: dict[str, int] = {}
        self.tokens: list[str] = []
        self.counted = np.zeros(0, dtype=np.int64)
        self.lengths: list[np.ndarray] = []
        self.folder, self.name = folder, name
        self.parts: list[np.ndarray] = []
        self.file = None if folder is None else open(folder / f"{name}_ids.provisional", "wb")

    def add(self, tokens: list[str], ids: np.ndarray, lengths: np.ndarray) -> None:
        mapping = np.array([self._id(token) for token in tokens], dtype=np.int32)
        ids = mapping[ids] if len(ids) else ids
        if len(self.counted) < len(self.tokens):  # new tokens: room for their counts
            self.counted = np.concatenate([self.counted, np.zeros(len(self.tokens) - len(self.counted), np.int64)])
        self.counted += np.bincount(ids, minlength=len(self.tokens))
        self.lengths.append(lengths)
        if self.file is None:
            self.parts.append(ids)
        else:
            self.file.write(ids.tobytes())

    def _id(self, token: str) -> int:
        found = self.index.get(token)
        if found is None:
            found = self.index[token] = len(self.tokens)
            self.tokens.append(token)
        return found

    def counts(self) -> dict[str, int]:
        """How often each token was read (the end of sources, ``data.source_eos``, is no token of the text)."""
        counts = dict(zip(self.tokens, self.counted.tolist()))
        counts.pop(SOURCE_END, None)
        return counts

    def finish(self, vocabulary: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, offsets)`` of this side under ``vocabulary`` (in the folder's ``NAME_ids.npy``)."""
        lookup = np.array(vocabulary.encode(self.tokens), dtype=id_dtype(len(vocabulary)))
        if SOURCE_END in self.index:  # text itself never becomes <eos>: the end of sources does
            lookup[self.index[SOURCE_END]] = EOS_INDEX
        offsets = offsets_of(np.concatenate(self.lengths))
        if self.file is None:
            ids = np.concatenate(self.parts) if self.parts else np.zeros(0, np.int32)
            return lookup[ids] if len(ids) else ids.astype(lookup.dtype), offsets
        self.file.close()
        provisional_path = self.folder / f"{self.name}_ids.provisional"
        provisional = np.memmap(provisional_path, dtype=np.int32, mode="r") if offsets[-1] else np.zeros(0, np.int32)
        path = self.folder / f"{self.name}_ids.npy"
        ids = np.lib.format.open_memmap(path, mode="w+", dtype=lookup.dtype, shape=(int(offsets[-1]),))
        for start in range(0, len(ids), BLOCK_TOKENS):
            ids[start: start + BLOCK_TOKENS] = lookup[provisional[start: start + BLOCK_TOKENS]]
        ids.flush()
        del provisional
        provisional_path.unlink()
        return np.load(path, mmap_mode="r"), offsets


def _ordered_map(work: Callable[[RawLines], _Chunk], items: Iterable[RawLines], workers: int) -> Iterator[_Chunk]:
    """``work`` over ``items`` in order: here, or in ``workers`` processes with at most two
    chunks each in flight (the text is read as fast as it is tokenised, never ahead of it)."""
    if workers <= 1:
        yield from map(work, items)
        return
    # forked, as torch's DataLoader workers are on Linux (spawn would re-run a caller's script that has
    # no ``if __name__ == "__main__"`` guard); the workers run Python and numpy only, never torch
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_die_with,
                                                initargs=(os.getpid(),)) as pool:
        pending: deque[concurrent.futures.Future] = deque()
        for item in items:
            pending.append(pool.submit(work, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when the thread that started it ends


def _die_with(parent: int) -> None:
    """A worker's first act: end when ``parent`` ends, however it ends.  A ``kill -9`` of the
    preparing process would otherwise leave its workers waiting for chunks for ever, as orphans.
    Linux says so with a signal (``prctl``); elsewhere a thread watches the parent."""
    try:
        watched_by_kernel = ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL) == 0
    except (OSError, AttributeError):  # no prctl: not Linux
        watched_by_kernel = False
    if not watched_by_kernel:
        threading.Thread(target=_watch, args=(parent,), name="cronos-parent-watch", daemon=True).start()
    if os.getppid() != parent:  # the parent ended before the watch began
        os._exit(1)


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)
