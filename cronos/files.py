"""Reading the files a user names (configs, corpora, SentencePiece models, checkpoints, translation
input): one set of rules for all of them; and the one check that a folder takes files.

    data = read_bytes(path, "SentencePiece model", limit=256 << 20)
    for line in read_lines(path, "text", max_line_bytes=1 << 20): ...
    ensure_writable_folder(folder)     # OSError when it cannot be made or written into
    partial = temporary_folder(Path("runs/x/ct2"), "partial")   # runs/x/ct2.partial-PID-..., marked as cronos's
    remove_abandoned(Path("runs/x/ct2"), "partial")              # only marked ones whose process has ended
    note_holder(descriptor); holder_of(descriptor)               # who holds a lock file, for the others' messages

A folder, a device (``/dev/zero``, ``/dev/random``: reading one might never end) or a socket is
refused before anything is read.  A named pipe (``/dev/stdin``, a shell's ``<(...)``) is read as it
comes, after a line saying that cronos waits for a program to write into it, and never past the
limit: a whole file's ``limit`` for ``read_bytes``, a line's for ``read_lines``.  A regular file
larger than ``limit`` is refused from its size, before it is read.  Every refusal is an
``UnreadableFile`` whose message starts with the path; callers turn it into their own error.

A folder cronos writes whole and then renames into place (a prepared split, an export) is written
into a temporary folder beside it, ``NAME.KIND-PID-XXXXXX``, holding a mark that names the process
(``TEMPORARY_MARK``).  Only marked folders whose process has ended are ever removed: a folder of the
same name that a user made is left alone.
"""
from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import socket
import stat
import tempfile
import time
from pathlib import Path
from typing import BinaryIO, Iterator

__all__ = ["UnreadableFile", "check_readable", "read_bytes", "read_lines", "bounded_lines", "ensure_writable_folder",
           "temporary_folder", "mark_temporary", "remove_abandoned", "TEMPORARY_MARK", "note_holder", "holder_of"]

logger = logging.getLogger("cronos")

TEMPORARY_MARK = ".cronos-temporary"  # in a folder cronos made to remove: {"pid": ..., "host": ...}


class UnreadableFile(ValueError):
    """A path that names nothing readable, or more than may be read; ``missing``: it does not exist."""

    def __init__(self, path: str | os.PathLike, problem: str, missing: bool = False):
        self.path, self.problem, self.missing = Path(path), problem, missing
        super().__init__(f"{path}: {problem}")


def check_readable(path: str | os.PathLike, what: str, pipes: bool = True) -> bool:
    """Refuse what ``read_bytes`` refuses (a pipe too, unless ``pipes``); return whether it is a pipe."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise UnreadableFile(path, "file not found", missing=True) from None
    except (OSError, ValueError) as error:  # ValueError: a NUL byte in the path
        raise UnreadableFile(path, f"cannot read: {getattr(error, 'strerror', None) or error}") from None
    if stat.S_ISDIR(mode):
        raise UnreadableFile(path, f"is a folder, not a {what} file")
    if stat.S_ISFIFO(mode) and pipes:
        return True
    if not stat.S_ISREG(mode):
        kind = "a pipe" if stat.S_ISFIFO(mode) else "a device or a socket"
        raise UnreadableFile(path, f"is {kind}, not a {what} file" + ("" if stat.S_ISFIFO(mode) else
                                                                       "; reading it might never end"))
    return False


def read_bytes(path: str | os.PathLike, what: str, limit: int) -> bytes:
    """The whole content of ``path`` (a regular file or a named pipe), at most ``limit`` bytes."""
    if check_readable(path, what):
        _say_waiting(path)
    elif os.stat(path).st_size > limit:
        raise UnreadableFile(path, f"is larger than {_size(limit)}, the most a {what} may be")
    try:
        with open(path, "rb") as file:
            data = file.read(limit + 1)
    except OSError as error:
        raise UnreadableFile(path, f"cannot read: {error.strerror or error}") from None
    if len(data) > limit:
        raise UnreadableFile(path, f"is larger than {_size(limit)}, the most a {what} may be")
    return data


def read_lines(path: str | os.PathLike, what: str, max_line_bytes: int) -> Iterator[bytes]:
    """The lines of ``path`` without their ``\\n``, read as they come, each at most ``max_line_bytes``."""
    if check_readable(path, what):
        _say_waiting(path)
    try:
        with open(path, "rb") as file:  # a pipe: blocks until a writer opens the other end
            yield from bounded_lines(file, str(path), max_line_bytes)
    except OSError as error:
        raise UnreadableFile(path, f"cannot read: {error.strerror or error}") from None


def bounded_lines(stream: BinaryIO, name: str, max_line_bytes: int) -> Iterator[bytes]:
    """The lines of an open binary ``stream`` (``name`` in messages) without their ``\\n``; a line
    longer than ``max_line_bytes`` (a file of no lines, such as ``/dev/zero`` piped in) is refused."""
    number = 0
    while line := stream.readline(max_line_bytes + 1):
        number += 1
        if len(line) > max_line_bytes and not (len(line) == max_line_bytes + 1 and line.endswith(b"\n")):
            raise UnreadableFile(f"{name}:{number}", f"a line longer than {_size(max_line_bytes)} without a line end; "
                                                     "is this a text file of sentences?")
        yield line.removesuffix(b"\n")


def ensure_writable_folder(folder: Path) -> None:
    """Make ``folder`` (with its parents) and write and remove a file in it: ``OSError`` when it cannot,
    found before a run's first step (callers say it in their own words)."""
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / ".cronos-write-test"
    probe.write_bytes(b"")
    probe.unlink()


def temporary_folder(beside: Path, kind: str) -> Path:
    """A new, marked folder ``NAME.KIND-PID-XXXXXX`` next to ``beside`` (its parents made)."""
    beside.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{beside.name}.{kind}-{os.getpid()}-", dir=beside.parent))
    mark_temporary(folder)
    return folder


def mark_temporary(folder: Path) -> None:
    """Mark ``folder`` as this process's to remove (before it is renamed to a temporary name)."""
    (folder / TEMPORARY_MARK).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}),
                                         encoding="utf-8")


def remove_abandoned(beside: Path, *kinds: str) -> None:
    """Remove the temporary folders of ``kinds`` next to ``beside`` that a process of this machine
    marked and that outlived it (a kill, a crash); unmarked ones, and those of live processes or
    other machines, stay."""
    for kind in kinds:
        for folder in beside.parent.glob(f"{glob.escape(beside.name)}.{kind}-*"):
            if folder.is_dir() and not folder.is_symlink() and _abandoned(folder):
                logger.info("removing %s, left by a preparation or export that did not finish", folder)
                shutil.rmtree(folder, ignore_errors=True)


def _abandoned(folder: Path) -> bool:
    try:
        mark = json.loads((folder / TEMPORARY_MARK).read_text(encoding="utf-8"))
        pid, host = int(mark["pid"]), str(mark["host"])
    except (OSError, ValueError, TypeError, KeyError):
        return False  # not cronos's (or not readable as cronos writes it): never removed
    if host != socket.gethostname() or pid == os.getpid():
        return False  # another machine's, or this process's own (which removes what it made)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False


def note_holder(descriptor: int) -> None:
    """Write into a lock file this process holds who holds it, for the messages of those who wait."""
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, f"pid {os.getpid()} on {socket.gethostname()}, since "
                          f"{time.strftime('%Y-%m-%d %H:%M:%S')}".encode(), 0)


def holder_of(descriptor: int) -> str:
    """Who holds the lock file open as ``descriptor``, as its holder wrote it (``note_holder``)."""
    written = os.pread(descriptor, 200, 0).decode("utf-8", "replace")
    return "".join(c for c in written if c.isprintable()).strip() or "another process"


def _say_waiting(path: str | os.PathLike) -> None:
    logger.warning("%s is a pipe: waiting for a program to write into it (Ctrl-C stops)", path)


def _size(count: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{count} bytes"
