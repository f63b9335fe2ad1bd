"""Readers for parallel text: TSV (``source<TAB>target``) and line-aligned ``src``/``tgt`` files.

Errors name the file and the 1-based line; the empty-side policy lives in preprocessing, where it
is known what "empty" means for the tokenizer in use.  A file is read whole; a named pipe (or
``/dev/stdin``, or a shell's ``<(...)``) line by line, each line at most ``MAX_LINE_BYTES``, after
saying that it waits for a writer; a device (``/dev/zero``) is refused, as it may never end.  A
UTF-8 byte order mark at the start of a file is not text.  ``quote=False`` keeps a file's contents
out of the messages (for paths that come from an untrusted checkpoint's config).
"""
from __future__ import annotations

import logging
import stat
from dataclasses import dataclass
from pathlib import Path

from ..config import ParallelFiles

__all__ = ["DataError", "MissingFileError", "RawPair", "read_pairs", "read_tsv", "read_parallel", "MAX_LINE_BYTES", "BOM"]

logger = logging.getLogger("cronos")

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
    target: str
    origin: str  # "file:line", for messages


def read_pairs(files: str | ParallelFiles, quote: bool = True) -> list[RawPair]:
    """Read a split given as a TSV path or as ``ParallelFiles``."""
    if isinstance(files, ParallelFiles):
        return read_parallel(files.src, files.tgt, quote)
    return read_tsv(files, quote)


def read_tsv(path: str | Path, quote: bool = True) -> list[RawPair]:
    pairs = []
    for number, line in enumerate(_read_lines(path, quote), start=1):
        fields = line.split("\t")
        if len(fields) != 2:
            problem = "no tab" if len(fields) == 1 else f"{len(fields) - 1} tabs"
            shown = f": {line[:60]!r}" if quote else ""
            raise DataError(f"{path}:{number}: expected 'source<TAB>target', found {problem}{shown}")
        pairs.append(RawPair(fields[0], fields[1], f"{path}:{number}"))
    return pairs


def read_parallel(src_path: str | Path, tgt_path: str | Path, quote: bool = True) -> list[RawPair]:
    sources, targets = _read_lines(src_path, quote), _read_lines(tgt_path, quote)
    if len(sources) != len(targets):
        raise DataError(f"{src_path} has {len(sources)} lines but {tgt_path} has {len(targets)}; "
                        "parallel files must be line-aligned")
    return [RawPair(s, t, f"{src_path}:{i}") for i, (s, t) in enumerate(zip(sources, targets), start=1)]


def _read_lines(path: str | Path, quote: bool = True) -> list[str]:
    raw_lines = _read_raw_lines(Path(path))
    if raw_lines and raw_lines[0].startswith(BOM):
        raw_lines[0] = raw_lines[0][len(BOM):]
    lines = []
    for number, raw in enumerate(raw_lines, start=1):
        try:
            lines.append(raw.decode("utf-8").removesuffix("\r"))
        except UnicodeDecodeError as error:
            byte = f"byte 0x{raw[error.start]:02x} " if quote else ""
            raise DataError(f"{path}:{number}: not valid UTF-8 ({byte}at column {error.start + 1})") from None
    return lines


def _read_raw_lines(path: Path) -> list[bytes]:
    """The file's lines as bytes, without their ``\\n``."""
    try:
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise DataError(f"{path}: is a folder, not a text file")
        if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
            raise DataError(f"{path}: is a device or a socket, not a text file; reading it might never end")
        if stat.S_ISREG(mode):
            raw_lines = path.read_bytes().split(b"\n")
            if raw_lines[-1] == b"":
                raw_lines.pop()  # the final newline ends the last line, it does not start a new one
            return raw_lines
        logger.warning("%s is a pipe: waiting for a program to write into it (Ctrl-C stops)", path)
        with open(path, "rb") as pipe:  # blocks until a writer opens the other end
            return _bounded_lines(pipe, path)
    except FileNotFoundError:
        raise MissingFileError(path) from None
    except OSError as error:
        raise DataError(f"{path}: cannot read: {error.strerror or error}") from None


def _bounded_lines(stream, path: Path) -> list[bytes]:
    lines = []
    while line := stream.readline(MAX_LINE_BYTES + 1):
        if len(line) > MAX_LINE_BYTES:
            raise DataError(f"{path}:{len(lines) + 1}: a line longer than {MAX_LINE_BYTES // (1 << 20)} MiB without a "
                            "line end; is this a text file of sentences?")
        lines.append(line.removesuffix(b"\n"))
    return lines
