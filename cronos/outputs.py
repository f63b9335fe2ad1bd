"""Where the command line writes what a user asks for (``evaluate --out``, ``explain --out/--html``,
``translate --output``), checked before any work is done:

- it never writes where a run keeps its files (``last.pt``, ``metrics.jsonl``, its lock, its
  ``checkpoints/``, ...: a new file there would pass for the run's own), and never replaces a
  config, a checkpoint, or a file being read;
- an existing file is replaced only when the user says so (``--overwrite``);
- the folder it goes into is a folder, and writable (a read-only folder, or a path under a file,
  is said in one line, not found out after the work as an OS error).
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Sequence

from .config import ConfigError
from .training.run_folder import RunFolder

__all__ = ["check_output_file", "check_output_folder"]

CONFIG_SUFFIXES = (".yaml", ".yml")


def check_output_file(path: Path, flag: str, overwrite: bool, reading: Sequence[str | os.PathLike] = ()) -> None:
    """Refuse ``path`` as the file ``flag`` writes (``ConfigError`` naming the flag) unless it may be
    written: see the module's rules; ``reading``: the files the command reads."""
    if _kept_by_a_run(path):
        raise ConfigError(flag, "", f"{path} is where a training run keeps its own files; write the output elsewhere")
    if path.exists() or path.is_symlink():
        if path.is_dir():
            raise ConfigError(flag, "", f"{path} is a folder; {flag} names the file to write")
        _refuse_to_replace(path, flag, reading)
        if not overwrite:
            raise ConfigError(flag, "", f"{path} exists; add --overwrite to replace it, or write elsewhere")
    check_output_folder(path.parent, flag)


def check_output_folder(folder: Path, flag: str) -> None:
    """Refuse ``folder`` when it cannot be made or written: a file stands on its path, or the nearest
    existing folder above it is read-only."""
    existing = folder
    while not existing.exists():
        if existing.is_symlink():
            raise ConfigError(flag, "", f"{existing} is a link to nothing; {flag} cannot write under it")
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(flag, "", f"{existing} is a file, so nothing can be written under it")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(flag, "", f"{existing} is not writable; write elsewhere")


def _refuse_to_replace(path: Path, flag: str, reading: Sequence[str | os.PathLike]) -> None:
    for source in reading:
        if os.path.exists(source) and os.path.samefile(path, source):
            raise ConfigError(flag, "", f"{path} is being read; write the output elsewhere")
    if path.suffix.lower() in CONFIG_SUFFIXES:
        raise ConfigError(flag, "", f"{path} is a config; write the output elsewhere")
    if path.is_file() and zipfile.is_zipfile(path):  # what torch.save writes
        raise ConfigError(flag, "", f"{path} holds a checkpoint (or another archive); write the output elsewhere")


def _kept_by_a_run(path: Path) -> bool:
    """Whether ``path`` is a file that a run folder above it writes (its records, checkpoints, lock)."""
    return any(RunFolder(folder).owns(path) for folder in list(path.resolve().parents)[:3])
