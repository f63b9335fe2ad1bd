"""The checkpoints of a run: ``best.pt`` (the weights of the best validation), ``last.pt`` (the
weights and everything a resumed run needs, ``TrainingState``), the kept checkpoints of
``training.keep_checkpoints``, and resuming from a ``last.pt``.

    checkpoints = Checkpoints(folder, config, codec, network, state)
    checkpoints.save_last()                  # every process calls it; rank 0 writes
    checkpoints.save_best()                  # rank 0
    resumed = checkpoints.resume("auto")     # the last.pt resumed from, or None for a new run

Every file holds the config and the codec's vocabularies, so that it alone rebuilds the model;
writes are atomic (``storage.checkpoint.save_checkpoint``).
"""
from __future__ import annotations

import logging
from pathlib import Path

from ..config import Config
from ..data import TextCodec
from ..modules.network import Seq2Seq
from ..storage.checkpoint import CheckpointError, check_same_model, model_payload, read_model_file, save_checkpoint
from .run_folder import RunFolder
from .state import TrainingState

__all__ = ["Checkpoints"]

logger = logging.getLogger("cronos")


class Checkpoints:
    """Writes and reads the checkpoints of the run in ``folder`` for ``network``."""

    def __init__(self, folder: RunFolder, config: Config, codec: TextCodec, network: Seq2Seq, state: TrainingState):
        self.folder, self.config, self.codec, self.network, self.state = folder, config, codec, network, state

    def _payload(self) -> dict:
        return model_payload(self.config, self.codec, self.network.state_dict())

    def save_best(self) -> None:
        """The network's weights as ``best.pt`` (rank 0)."""
        save_checkpoint(self.folder.best, self._payload())

    def save_last(self) -> None:
        """``last.pt``: weights and training state (every process calls it at the same step, for
        the random states it gathers; rank 0 writes)."""
        state = self.state.state_dict()
        if state is not None:
            save_checkpoint(self.folder.last, {**self._payload(), "training": state})

    def keep(self, step: int) -> None:
        """``training.keep_checkpoints``: this step's weights beside the last N-1 (``cronos average``); rank 0."""
        keep = self.config.training.keep_checkpoints
        if not keep:
            return
        save_checkpoint(self.folder.kept_checkpoint(step), self._payload())
        for old in self.folder.kept_checkpoints()[:-keep]:
            old.unlink()

    def load_best(self) -> None:
        """The network takes the weights of ``best.pt``."""
        self.network.load_state_dict(read_model_file(self.folder.best).weights)

    def resume(self, resume: str | None) -> Path | None:
        """Weights and training state from ``resume`` (a ``last.pt``, or ``"auto"``: this folder's,
        when there is one); the path resumed from, or None for a new run."""
        if resume is None:
            return None
        path = self.folder.last if resume == "auto" else Path(resume)
        if resume == "auto" and not path.exists():
            logger.info("training.resume=auto: no %s yet, starting a new run", path)
            return None
        stored = read_model_file(path)
        if stored.training is None:
            raise CheckpointError(f"{path}: holds weights only (a best.pt?); resume from a last.pt")
        check_same_model(stored, self.config, self.codec, path)
        self.network.load_state_dict(stored.weights)
        try:
            self.state.load_state_dict(stored.training)
            world_size = stored.training["world_size"]
        except (KeyError, TypeError, ValueError, RuntimeError) as error:  # a damaged or foreign training state
            raise CheckpointError(f"{path}: its training state does not fit this run: {type(error).__name__}: "
                                  f"{str(error).splitlines()[0] if str(error) else ''}") from None
        self.state.check_same_plan(stored.config.training.accumulate, world_size, self.config.training.accumulate,
                                   path)
        return path
