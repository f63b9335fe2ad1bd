"""Readers for parallel text: TSV (``source<TAB>target``) and line-aligned ``src``/``tgt`` files.

Errors name the file and the 1-based line; the empty-side policy lives in preprocessing, where it
is known what "empty" means for the tokenizer in use.  Files are read line by line through
``files.read_lines``, each line at most ``MAX_LINE_BYTES``: a named pipe (``/dev/stdin``, a
shell's ``<(...)``) after saying that it waits for a writer, a device (``/dev/zero``) refused, as
it may never end.  A
UTF-8 byte order mark at the start of a file is not text.  ``quote=False`` keeps a file's contents
out of the messages (for paths that come from an untrusted checkpoint's config).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from ..config import ParallelFiles
from ..files import UnreadableFile, read_lines

__all__ = ["DataError", "MissingFileError", "RawPair", "read_pairs", "iter_pairs", "read_tsv", "read_parallel", "text_lines",
           "MAX_LINE_BYTES"]

MAX_LINE_BYTES = 1 << 20  # 1 MiB: far more than a sentence; bounds what a pipe that never ends a line costs
BOM = b"\xef\xbb\xbf"


class DataError(ValueError):
    """Bad input data; the message starts with ``file:line``."""


class MissingFileError(DataError):
    """A file to read is not there (``path``)."""

    def __init__(self, path: Path):
        self.path = path
        super().__init__(f"{path}: file not found")


@dataclass(frozen=True)
class RawPair:
    source: str
    target: str | None  # None: a source without a reference (a caller's input)
    origin: str         # "file:line" (or "input i"), for messages
    line: int = 0       # the line of a file it was read from (1-based; 0: not from a file)


def read_pairs(files: str | ParallelFiles, quote: bool = True) -> list[RawPair]:
    """Read a split given as a TSV path or as ``ParallelFiles``."""
    return list(iter_pairs(files, quote))


def iter_pairs(files: str | ParallelFiles, quote: bool = True) -> Iterator[RawPair]:
    """The pairs of a split as they are read, line by line (never the whole file in memory)."""
    if isinstance(files, ParallelFiles):
        return _iter_parallel(files.src, files.tgt, quote)
    return _iter_tsv(files, quote)


def read_tsv(path: str | Path, quote: bool = True) -> list[RawPair]:
    return list(_iter_tsv(path, quote))


def read_parallel(src_path: str | Path, tgt_path: str | Path, quote: bool = True) -> list[RawPair]:
    return list(_iter_parallel(src_path, tgt_path, quote))


def _iter_tsv(path: str | Path, quote: bool) -> Iterator[RawPair]:
    for number, line in _numbered_lines(path, quote):
        fields = line.split("\t")
        if len(fields) != 2:
            problem = "no tab" if len(fields) == 1 else f"{len(fields) - 1} tabs"
            shown = f": {line[:60]!r}" if quote else ""
            raise DataError(f"{path}:{number}: expected 'source<TAB>target', found {problem}{shown}")
        yield RawPair(fields[0], fields[1], f"{path}:{number}", number)


def _iter_parallel(src_path: str | Path, tgt_path: str | Path, quote: bool) -> Iterator[RawPair]:
    """Line-aligned files, their line counts checked as they are read: the shorter one ending
    first is reported with both counts (the longer one counted to its end)."""
    sources, targets = _numbered_lines(src_path, quote), _numbered_lines(tgt_path, quote)
    count = 0
    for source, target in itertools.zip_longest(sources, targets):
        if source is None or target is None:
            rest = 1 + sum(1 for _ in (targets if source is None else sources))
            counts = (count, count + rest) if source is None else (count + rest, count)
            raise DataError(f"{src_path} has {counts[0]} lines but {tgt_path} has {counts[1]}; "
                            "parallel files must be line-aligned")
        count += 1
        yield RawPair(source[1], target[1], f"{src_path}:{count}", count)


def text_lines(raw_lines: Iterable[bytes], name: str, quote: bool = True) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` for each of ``raw_lines`` (bytes without their ``\n``) of the file or
    stream ``name``, as they come: UTF-8, a leading byte order mark dropped, a ``\r`` ending dropped;
    a line that is not UTF-8 raises ``DataError`` naming ``name:line``."""
    for number, raw in enumerate(raw_lines, start=1):
        if number == 1:
            raw = raw.removeprefix(BOM)
        try:
            yield number, raw.decode("utf-8").removesuffix("\r")
        except UnicodeDecodeError as error:
            byte = f"byte 0x{raw[error.start]:02x} " if quote else ""
            raise DataError(f"{name}:{number}: not valid UTF-8 ({byte}at column {error.start + 1})") from None


def _numbered_lines(path: str | Path, quote: bool = True) -> Iterator[tuple[int, str]]:
    try:
        yield from text_lines(read_lines(Path(path), "text", MAX_LINE_BYTES), str(path), quote)
    except UnreadableFile as error:
        raise (MissingFileError(Path(path)) if error.missing else DataError(str(error))) from None
