"""A training run's folder: the names of the files a run writes (defined here, once), the lock that
keeps one run per folder at a time, and the rule that a new run never replaces an earlier one by
surprise.

    folder = RunFolder(Path("runs/dates"))
    with claim(folder, resume=None, overwrite=False):   # RunFolderError if it holds a run or is in use
        ...                                             # train; write folder.last, folder.best, folder.metrics
"""
from __future__ import annotations

import logging
import os
import re
import shutil
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..storage.checkpoint import CheckpointError
from ..config import ConfigError
from ..files import ensure_writable_folder, holder_of, note_holder
from .distributed import Processes

try:  # POSIX; where there is no fcntl (Windows) runs are not locked
    import fcntl
except ImportError:  # pragma: no cover - not on the machines cronos is tested on
    fcntl = None

__all__ = ["RunFolder", "RunFolderError", "claim", "claimed_for_all", "BEST", "LAST", "METRICS", "TENSORBOARD",
           "CHECKPOINTS"]

logger = logging.getLogger("cronos")

BEST, LAST, METRICS, TENSORBOARD, CHECKPOINTS = "best.pt", "last.pt", "metrics.jsonl", "tensorboard", "checkpoints"
RUN_FILES = (LAST, BEST, METRICS, TENSORBOARD, CHECKPOINTS)  # what a run writes; ``training.overwrite`` removes them
LOCK = ".cronos.lock"
KEPT_NAME = re.compile(r"step_(\d{8,})\.pt")  # what ``kept_checkpoint`` names; other files there are the user's
WAYS_ON = ("continue it with training.resume=auto, replace it with training.overwrite=true, "
           "or choose another output_dir")


class RunFolderError(ConfigError):
    """``output_dir`` cannot take this run: it holds another run, or another process trains in it."""

    def __init__(self, folder: Path, problem: str):
        super().__init__(str(folder), "", problem)


@dataclass(frozen=True)
class RunFolder:
    path: Path

    @property
    def best(self) -> Path:
        """Weights of the best validation."""
        return self.path / BEST

    @property
    def last(self) -> Path:
        """The resumable checkpoint: weights, optimiser, scheduler, sampler position, RNG state."""
        return self.path / LAST

    @property
    def metrics(self) -> Path:
        """One JSON line per validation."""
        return self.path / METRICS

    @property
    def tensorboard(self) -> Path:
        """TensorBoard event files (``training.tensorboard``)."""
        return self.path / TENSORBOARD

    @property
    def checkpoints(self) -> Path:
        """The weights of the last validations (``training.keep_checkpoints``), for averaging."""
        return self.path / CHECKPOINTS

    def kept_checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"step_{step:08d}.pt"

    def kept_checkpoints(self) -> list[Path]:
        """The checkpoints a run kept in ``checkpoints/`` (named by ``kept_checkpoint``), oldest step
        first; files of other names there are not cronos's and are never listed, rotated or removed."""
        if not self.checkpoints.is_dir():
            return []
        steps = {int(match[1]): path for path in self.checkpoints.iterdir()
                 if (match := KEPT_NAME.fullmatch(path.name)) and path.is_file()}
        return [steps[step] for step in sorted(steps)]

    def existing_run_files(self) -> list[str]:
        """The run files in the folder (``checkpoints`` when it holds a checkpoint a run kept)."""
        return [name for name in RUN_FILES if (self.path / name).exists()
                and (name != CHECKPOINTS or self.kept_checkpoints())]

    def owns(self, path: Path) -> bool:
        """Whether ``path`` is one of the files a run wrote or keeps in this folder, which holds a run."""
        if not (self.existing_run_files() or (self.path / LOCK).exists()):
            return False
        path = path.resolve()
        folder = self.path.resolve()
        if path.parent == folder:
            return path.name in RUN_FILES or path.name == LOCK
        return path.parent == folder / CHECKPOINTS or folder / TENSORBOARD in path.parents

    def remove_run_files(self) -> list[str]:
        """Remove what an earlier run wrote (``training.overwrite``), leaving the user's files in
        ``checkpoints/``; returns the names removed."""
        existing = self.existing_run_files()
        for name in existing:
            path = self.path / name
            if name == CHECKPOINTS:
                for kept in self.kept_checkpoints():
                    kept.unlink()
            elif path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        return existing


@contextmanager
def claim(folder: RunFolder, resume: str | None, overwrite: bool) -> Iterator[None]:
    """Hold ``folder`` for one run: writable, locked against other runs, and free of an earlier run
    unless this run continues it (``resume``) or replaces it (``overwrite``).

    The lock is an ``flock`` on ``.cronos.lock``: the kernel releases it when the process ends in
    any way (``kill -9`` included), so a killed run never leaves the folder stuck.
    """
    _make_writable(folder.path)
    with _locked(folder.path):
        for stale in folder.path.glob(".*.pt.*.tmp"):  # left by a process killed mid-write
            logger.info("removing %s, an unfinished checkpoint write", stale)
            stale.unlink(missing_ok=True)
        _check_earlier_run(folder, resume, overwrite)
        yield


@contextmanager
def claimed_for_all(folder: RunFolder, processes: Processes, resume: str | None, overwrite: bool) -> Iterator[None]:
    """``folder`` for the block, claimed by rank 0 (``claim``); the other processes learn whether it
    could, so that none waits for a run that does not start."""
    if not processes.main:
        if not processes.from_main(None):
            raise RunFolderError(folder.path, "rank 0 could not start the run here; its message says why")
        yield
        return
    with ExitStack() as stack:
        try:
            stack.enter_context(claim(folder, resume, overwrite))
        except BaseException:
            processes.from_main(False)
            raise
        processes.from_main(True)
        yield


def _make_writable(path: Path) -> None:
    try:
        ensure_writable_folder(path)
    except OSError as error:
        # a CheckpointError, as every other failure to write a run's files
        raise CheckpointError(f"output_dir {path} is not writable: {error.strerror or error}") from None


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    if fcntl is None:
        yield
        return
    descriptor = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise RunFolderError(path, f"another training run is using this folder ({holder_of(descriptor)}); wait "
                                       "for it to end, or choose another output_dir") from None
        note_holder(descriptor)
        yield
    finally:
        os.close(descriptor)  # closing the descriptor releases the lock


def _check_earlier_run(folder: RunFolder, resume: str | None, overwrite: bool) -> None:
    existing = folder.existing_run_files()
    if not existing:
        return
    if overwrite:
        folder.remove_run_files()
        logger.warning("training.overwrite=true: removed the earlier run's %s from %s", ", ".join(existing),
                       folder.path)
        return
    # resuming from a checkpoint inside this folder continues (or tries to continue) this folder's run
    continues = resume == "auto" or (resume is not None and Path(resume).resolve().parent == folder.path.resolve())
    if continues and LAST in existing:
        return
    if continues:
        raise RunFolderError(folder.path, f"holds files of a run ({', '.join(existing)}) but no {LAST} to continue "
                                          "from; replace them with training.overwrite=true, or choose another "
                                          "output_dir")
    raise RunFolderError(folder.path, f"holds a run ({', '.join(existing)}); {WAYS_ON}")
