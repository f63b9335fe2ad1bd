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
from typing import Iterable, Iterator, NamedTuple

from ..config import ParallelFiles
from ..files import UnreadableFile, read_lines

__all__ = ["DataError", "MissingFileError", "RawPair", "read_pairs", "iter_pairs", "read_tsv", "read_parallel", "RawLines", "line_chunks", "split_paths", "text_lines",
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


class RawPair(NamedTuple):  # a tuple: made once per line read, where a dataclass costs twice the time
    source: str
    target: str | None  # None: a source without a reference (a caller's input)
    origin: str         # "file:line" (or "input i"), for messages
    line: int = 0       # the line of a file it was read from (1-based; 0: not from a file)


def split_paths(files: str | ParallelFiles) -> list[str]:
    """The files a split is read from: its TSV, or its source and target files (source first)."""
    return [files.src, files.tgt] if isinstance(files, ParallelFiles) else [str(files)]


def read_pairs(files: str | ParallelFiles, quote: bool = True) -> list[RawPair]:
    """Read a split given as a TSV path or as ``ParallelFiles``."""
    return list(iter_pairs(files, quote))


def iter_pairs(files: str | ParallelFiles, quote: bool = True) -> Iterator[RawPair]:
    """The pairs of a split as they are read (never the whole file in memory)."""
    return (pair for chunk in line_chunks(files, 1024, quote) for pair in chunk.pairs())


def read_tsv(path: str | Path, quote: bool = True) -> list[RawPair]:
    return read_pairs(str(path), quote)


def read_parallel(src_path: str | Path, tgt_path: str | Path, quote: bool = True) -> list[RawPair]:
    return read_pairs(ParallelFiles(str(src_path), str(tgt_path)), quote)


@dataclass(frozen=True)
class RawLines:
    """Consecutive lines of a split as read, not yet decoded: a TSV's (``targets`` None) or two
    line-aligned files', the first of them line ``first``.  ``pairs`` decodes them, so that the work
    can go to another process as bytes."""

    name: str
    first: int
    sources: list[bytes]
    targets: list[bytes] | None = None
    target_name: str = ""
    quote: bool = True

    def pairs(self) -> list[RawPair]:
        sources = _decoded_lines(self.sources, self.name, self.first, self.quote)
        if self.targets is None:
            return [self._tsv_pair(number, line) for number, line in enumerate(sources, start=self.first)]
        targets = _decoded_lines(self.targets, self.target_name, self.first, self.quote)
        name = self.name
        return [RawPair(source, target, f"{name}:{number}", number)
                for number, (source, target) in enumerate(zip(sources, targets), start=self.first)]

    def _tsv_pair(self, number: int, line: str) -> RawPair:
        fields = line.split("\t")
        if len(fields) != 2:
            problem = "no tab" if len(fields) == 1 else f"{len(fields) - 1} tabs"
            shown = f": {line[:60]!r}" if self.quote else ""
            raise DataError(f"{self.name}:{number}: expected 'source<TAB>target', found {problem}{shown}")
        return RawPair(fields[0], fields[1], f"{self.name}:{number}", number)


def line_chunks(files: str | ParallelFiles, size: int, quote: bool = True) -> Iterator[RawLines]:
    """A split's lines in chunks of ``size`` as they are read (a leading byte order mark dropped);
    parallel files' line counts are checked as they are read: when one ends first, both counts
    are reported (the longer one counted to its end)."""
    if not isinstance(files, ParallelFiles):
        for first, lines in _chunked(_raw_lines(files), size):
            yield RawLines(str(files), first, lines, quote=quote)
        return
    sources, targets = _raw_lines(files.src), _raw_lines(files.tgt)
    count = 0
    while True:
        source_lines, target_lines = list(itertools.islice(sources, size)), list(itertools.islice(targets, size))
        if len(source_lines) != len(target_lines):
            ends = count + min(len(source_lines), len(target_lines))
            rest = sum(1 for _ in (targets if len(source_lines) < len(target_lines) else sources))
            longer = count + max(len(source_lines), len(target_lines)) + rest
            counts = (ends, longer) if len(source_lines) < len(target_lines) else (longer, ends)
            raise DataError(f"{files.src} has {counts[0]} lines but {files.tgt} has {counts[1]}; "
                            "parallel files must be line-aligned")
        if not source_lines:
            return
        yield RawLines(files.src, count + 1, source_lines, target_lines, files.tgt, quote)
        count += len(source_lines)


def _chunked(lines: Iterator[bytes], size: int) -> Iterator[tuple[int, list[bytes]]]:
    first = 1
    while chunk := list(itertools.islice(lines, size)):
        yield first, chunk
        first += len(chunk)


def _raw_lines(path: str | Path) -> Iterator[bytes]:
    """The lines of ``path`` as bytes (``files.read_lines``: bounded, devices refused, pipes read as
    they come), a byte order mark at its start dropped; a missing file is ``MissingFileError``."""
    try:
        lines = read_lines(Path(path), "text", MAX_LINE_BYTES)
        first = next(lines, None)
        if first is None:
            return
        yield first.removeprefix(BOM)
        yield from lines
    except UnreadableFile as error:
        raise (MissingFileError(Path(path)) if error.missing else DataError(str(error))) from None


def _decoded(raw: bytes, name: str, number: int, quote: bool) -> str:
    """One line's text (UTF-8, a ``\r`` ending dropped), or ``DataError`` naming ``name:number``."""
    try:
        return raw.decode("utf-8").removesuffix("\r")
    except UnicodeDecodeError as error:
        byte = f"byte 0x{raw[error.start]:02x} " if quote else ""
        raise DataError(f"{name}:{number}: not valid UTF-8 ({byte}at column {error.start + 1})") from None


def _decoded_lines(raws: list[bytes], name: str, first: int, quote: bool) -> list[str]:
    """``_decoded`` of each of ``raws`` (lines ``first``, ``first + 1``, ...), decoded in one call
    (the lines hold no ``\n``): line by line only to find the one that is not UTF-8."""
    if not raws:
        return []
    try:
        text = b"\n".join(raws).decode("utf-8")
    except UnicodeDecodeError:
        return [_decoded(raw, name, number, quote) for number, raw in enumerate(raws, start=first)]
    lines = text.split("\n")
    return [line.removesuffix("\r") for line in lines] if "\r" in text else lines


def text_lines(raw_lines: Iterable[bytes], name: str, quote: bool = True) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` for each of ``raw_lines`` (bytes without their ``\n``) of the file or
    stream ``name``, as they come: UTF-8, a leading byte order mark dropped, a ``\r`` ending dropped;
    a line that is not UTF-8 raises ``DataError`` naming ``name:line``."""
    for number, raw in enumerate(raw_lines, start=1):
        yield number, _decoded(raw.removeprefix(BOM) if number == 1 else raw, name, number, quote)
