"""Readers for parallel text: TSV (``source<TAB>target``) and line-aligned ``src``/``tgt`` files.

Errors name the file and the 1-based line; the empty-side policy lives in preprocessing, where it
is known what "empty" means for the tokenizer in use.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import ParallelFiles

__all__ = ["DataError", "RawPair", "read_pairs", "read_tsv", "read_parallel"]


class DataError(ValueError):
    """Bad input data; the message starts with ``file:line``."""


@dataclass(frozen=True)
class RawPair:
    source: str
    target: str
    origin: str  # "file:line", for messages


def read_pairs(files: str | ParallelFiles) -> list[RawPair]:
    """Read a split given as a TSV path or as ``ParallelFiles``."""
    if isinstance(files, ParallelFiles):
        return read_parallel(files.src, files.tgt)
    return read_tsv(files)


def read_tsv(path: str | Path) -> list[RawPair]:
    pairs = []
    for number, line in enumerate(_read_lines(path), start=1):
        fields = line.split("\t")
        if len(fields) != 2:
            problem = "no tab" if len(fields) == 1 else f"{len(fields) - 1} tabs"
            raise DataError(f"{path}:{number}: expected 'source<TAB>target', found {problem}: {line[:60]!r}")
        pairs.append(RawPair(fields[0], fields[1], f"{path}:{number}"))
    return pairs


def read_parallel(src_path: str | Path, tgt_path: str | Path) -> list[RawPair]:
    sources, targets = _read_lines(src_path), _read_lines(tgt_path)
    if len(sources) != len(targets):
        raise DataError(f"{src_path} has {len(sources)} lines but {tgt_path} has {len(targets)}; "
                        "parallel files must be line-aligned")
    return [RawPair(s, t, f"{src_path}:{i}") for i, (s, t) in enumerate(zip(sources, targets), start=1)]


def _read_lines(path: str | Path) -> list[str]:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as error:
        raise DataError(f"{path}: cannot read: {error.strerror}") from None
    raw_lines = data.split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()  # the final newline ends the last line, it does not start a new one
    lines = []
    for number, raw in enumerate(raw_lines, start=1):
        try:
            lines.append(raw.decode("utf-8").removesuffix("\r"))
        except UnicodeDecodeError as error:
            raise DataError(f"{path}:{number}: not valid UTF-8 (byte 0x{raw[error.start]:02x} "
                            f"at column {error.start + 1})") from None
    return lines
