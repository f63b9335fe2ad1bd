"""The fit loop: epochs of optimiser updates, validations, checkpoints, resume, stopping; each a
part it composes: ``epochs.EpochPlan`` (what an epoch trains on), ``update.Updater`` (one update),
``validation.Validator``, ``checkpoints.Checkpoints``, ``record.RunRecord`` (metrics.jsonl,
TensorBoard, the log), ``state.TrainingState`` (what last.pt resumes) and ``stopping.StopSignals``.

    history = Trainer(network, codec, config, data, valid).run()   # the network ends on its best weights

Each step is one call of the network's ``forward`` (which returns the batch's loss), so anything
that wraps the network sees every step.  A run writes into ``output_dir`` (``run_folder`` names the
files and holds the folder for one run at a time): ``last.pt`` (resumable: weights, optimiser,
scheduler, sampler position, the epoch's running loss and time, RNG state), ``best.pt`` (weights of
the best validation), and ``metrics.jsonl`` (one JSON line per validation).  A folder that holds an
earlier run is refused unless the run continues it (``training.resume``) or replaces it
(``training.overwrite``).  The run trains on ``training.device`` (a GPU when there is one, by
default).  Given the seed, a run on the CPU is deterministic, and a resumed run continues the same
run: it ends with the weights an uninterrupted run ends with (on a GPU, up to the nondeterminism of
its kernels), and its ``metrics.jsonl`` lines are those of the uninterrupted run, up to ``seconds``.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Iterator

import torch
from torch.nn.parallel import DistributedDataParallel

from ..config import Config, ConfigError
from ..data import Batch, EvalSplit, TextCodec, TrainingData, Update
from ..modules.network import Seq2Seq
from ..precision import MixedPrecision
from .checkpoints import Checkpoints
from .distributed import Processes, process_group
from .ema import average_for
from .epochs import EpochPlan
from .progress import ProgressReport, epochs, report_to_stderr_unless_configured
from .record import RunRecord, validation_line
from .run_folder import RunFolder, claimed_for_all
from .state import TrainingProgress, TrainingState
from .stopping import StopSignals
from .update import TrainingError, Updater, build_optimizer
from .validation import Validator

__all__ = ["Trainer", "TrainingError", "TrainingHistory", "TrainingProgress", "build_optimizer"]

logger = logging.getLogger("cronos")

SAMPLING_APART = ("subword regularisation samples with SentencePiece's own generator, which the operating system "
                  "seeds (sentencepiece 0.2): each process would train on another segmentation, plan other batches "
                  "and wait for the others for ever; train on one process, or without sampling_alpha")


class TrainingHistory(list):
    """What a run returns: one metrics dict per epoch (a list, as ever), and where the run ended.

    ``step``: the optimiser step it stopped at; ``epochs_completed``; ``stopped_by``: the signal
    that stopped it (``"SIGINT"``, ``"SIGTERM"``) or None; ``best_step``: the step whose weights
    ``best.pt`` holds, None when no validation has chosen any yet; ``last_validation``: the last
    metrics.jsonl record (None before the first validation).
    """

    def __init__(self, progress: TrainingProgress, stopped_by: str | None, last_validation: dict | None):
        super().__init__(progress.history)
        self.step, self.epochs_completed, self.best_step = progress.step, progress.epoch, progress.best_step
        self.stopped_by, self.last_validation = stopped_by, last_validation


class Trainer:
    """Trains ``network`` on ``data`` per ``config.training``, validating on ``valid`` (scored with
    ``codec`` per ``config.decoding``), into ``config.output_dir``.

    It receives the whole ``config`` because every checkpoint it writes stores it (with the
    codec's vocabularies), so that the checkpoint alone rebuilds the model.
    """

    def __init__(self, network: Seq2Seq, codec: TextCodec, config: Config, data: TrainingData,
                 valid: EvalSplit | None):
        self.network, self.config, self.training = network, config, config.training
        self.processes = processes = Processes.from_environment()  # one, or those torchrun started
        if data.sampling is not None and processes.world_size > 1:
            raise ConfigError("config", "data.sentencepiece.sampling_alpha", SAMPLING_APART)
        self.device = processes.device(self.training.device)
        network.to(self.device)  # before the optimiser: its state follows the weights
        self.precision = MixedPrecision(self.training.precision, self.device)  # fp16 off a GPU: refused here
        if self.training.compile:
            network.compile_blocks()  # before DistributedDataParallel wraps it
        self.trained: torch.nn.Module = network  # what a step calls: the network, or DDP around it
        self.folder = RunFolder(Path(config.output_dir))
        self.plan = EpochPlan(data, self.training, config.seed, processes.world_size)
        self.updater = Updater(network, self.training, self.precision, processes, self.device, data.origins)
        self.optimizer, self.scheduler = self.updater.optimizer, self.updater.scheduler
        self.average = average_for(network, self.training.ema_decay)
        self.state = TrainingState(self.optimizer, self.scheduler, self.precision, processes, self.device,
                                   self.average)
        self.checkpoints = Checkpoints(self.folder, config, codec, network, self.state)
        self.stop = StopSignals(processes)
        self.validator = None if valid is None else Validator(network, codec, valid, config.decoding,
                                                              self.training, processes)
        self.record = RunRecord(self.folder, writes=processes.main)
        self._last_line: dict | None = None  # the last metrics.jsonl line
        self._clock = time.perf_counter()  # epoch_seconds counts up to here

    @property
    def progress(self) -> TrainingProgress:
        """Where the run stands (``TrainingState.progress``, saved in last.pt)."""
        return self.state.progress

    @property
    def lr(self) -> float:
        return self.updater.lr

    # --- the loop -------------------------------------------------------------------------------

    def run(self) -> TrainingHistory:
        """Train until ``training.epochs`` (or ``max_steps``, early stopping, or a signal); return the history.

        The network ends holding the weights of this run's best validation (``best.pt``), or its
        last weights when the run was stopped before its first validation.
        """
        if self.training.num_threads:
            torch.set_num_threads(self.training.num_threads)
        torch.manual_seed(self.config.seed)
        with (process_group(self.processes, self.device), report_to_stderr_unless_configured(),
              claimed_for_all(self.folder, self.processes, self.training.resume, self.training.overwrite)):
            self._resume()
            self.trained = self._replicated()
            if self.training.tensorboard:
                # a resumed run drops the events an interrupted one logged past its checkpoint
                self.record.open_board(self.progress.step + 1 if self.progress.step else None)
            try:
                self._train_and_save()
            finally:
                self.trained = self.network  # DistributedDataParallel must go before its process group
                self.record.close()
        return TrainingHistory(self.progress, self.stop.agreed, self._last_line)

    def _train_and_save(self) -> None:
        main = self.processes.main
        report = ProgressReport(self.progress.step, self.progress.epoch + 1, self.plan.planned_steps(self.progress),
                                self.training.epochs, bar=self.training.progress and main,
                                log_every=self.training.log_every if main else None)
        if main and self.plan.drawn is not None:
            logger.info("each epoch draws %s", ", ".join(f"{count:,} examples from {name}"
                                                         for name, count in self.plan.drawn.items()))
        with self.stop.handled(), report:
            self._clock = time.perf_counter()
            while not self._complete():
                self._train_epoch(report)
                if self.stop.agreed:
                    break
        if self.stop.agreed:
            self.save_last()
            if main:
                logger.info("stopped by %s at step %d; %s holds the run: continue it with --set "
                            "training.resume=auto", self.stop.agreed, self.progress.step, self.folder.last)
        elif not self.progress.history or self.progress.history[-1]["step"] != self.progress.step:
            self.save_last()
        if self.validator is None and main:  # no validation data: the last weights are the best
            with self.average.in_use():
                self.checkpoints.save_best()
        self.processes.barrier()  # best.pt is written
        if self.progress.best_step is not None:  # best.pt holds this run's best validation
            self.checkpoints.load_best()
        else:
            self.average.adopt()

    def _resume(self) -> None:
        """Continue from ``training.resume``, when it names a run to continue."""
        path = self.checkpoints.resume(self.training.resume)
        if path is None:
            return
        if self.progress.history:
            self._last_line = self.progress.history[-1]
        if self._complete():
            logger.info("%s holds a finished run (step %d, %s completed): nothing left to train; raise "
                        "training.epochs or training.max_steps to train on, or start over with training.overwrite=true "
                        "in place of training.resume", path, self.progress.step, epochs(self.progress.epoch))
        else:
            logger.info("resumed from %s at epoch %d, step %d", path, self.progress.epoch + 1, self.progress.step)

    def _replicated(self) -> torch.nn.Module:
        """The network as steps call it: wrapped in ``DistributedDataParallel`` across processes."""
        if not self.processes.distributed:
            return self.network
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(self.network, device_ids=device_ids)

    def _cut_short(self) -> bool:
        """Early stopping or ``max_steps`` ended the run before its last epoch's end."""
        max_steps = self.training.max_steps
        return self.progress.stopped_early or (max_steps is not None and self.progress.step >= max_steps)

    def _complete(self) -> bool:
        """Nothing is left to train: every epoch trained, or the run cut short."""
        return self.progress.epoch >= self.training.epochs or self._cut_short()

    def _train_epoch(self, report: ProgressReport) -> None:
        progress, epoch = self.progress, self.progress.epoch
        updates = self.plan.updates(epoch)
        share = self.plan.padded_share(updates)
        if progress.batches_done == 0:
            progress.epoch_loss_sum, progress.epoch_tokens, progress.epoch_seconds = 0.0, 0, 0.0
            self._clock = time.perf_counter()
        loaded = self._loaded(updates[progress.batches_done:])
        for update in updates[progress.batches_done:]:
            started = time.perf_counter()
            batch_loss, batch_tokens = self._train_step(update, loaded)
            self.stop.agree(self.device)
            progress.epoch_loss_sum += batch_loss
            progress.epoch_tokens += batch_tokens
            progress.batches_done += 1
            if batch_tokens and self.processes.main:  # not a skipped batch
                seconds = time.perf_counter() - started
                report.step(progress.step, epoch + 1, batch_loss, batch_tokens, seconds, self.lr)
                self.record.step(progress.step, batch_loss, batch_tokens, seconds, self.lr)
            if progress.batches_done == len(updates) and not self.stop.agreed:
                break  # the epoch's last step: the epoch ends below, also when max_steps ends the run here
            reached_max_steps = self._cut_short() and not self.stop.agreed
            if reached_max_steps or self._validation_due():
                self._validate(share, epoch + 1, in_history=reached_max_steps)
            elif self.training.checkpoint_every and progress.step % self.training.checkpoint_every == 0:
                self.save_last()
            if self.stop.agreed or reached_max_steps:
                return
        progress.epoch, progress.batches_done = epoch + 1, 0
        self._validate(share, epoch + 1, in_history=True)

    def _tick(self) -> None:
        """Add the time since the last tick to the epoch's seconds."""
        now = time.perf_counter()
        self.progress.epoch_seconds += now - self._clock
        self._clock = now

    def _validation_due(self) -> bool:
        every = self.training.validate_every
        return every is not None and self.progress.step % every == 0

    def _loaded(self, updates: list[Update]) -> Iterator[Batch]:
        """This process's batches of ``updates``, collated in order while the steps run."""
        return self.plan.loaded(updates, self.processes.rank, self.config.data.loader_workers,
                                pin_memory=self.device.type == "cuda")

    def _train_step(self, update: Update, loaded: Iterator[Batch] | None = None) -> tuple[float, int]:
        """One optimiser step over ``update`` (``Updater.step``), its batches collated from ``loaded``
        (this process's batches from here on), or here."""
        loaded = loaded if loaded is not None else self._loaded([update])
        loss, tokens = self.updater.step(self.trained, loaded, update, self.plan.target_tokens(update), self.progress)
        if tokens:  # the weights moved (not a skipped update)
            self.average.update()
        return loss, tokens

    # --- validation, early stopping, checkpoints --------------------------------------------------

    def _validate(self, share: float, epoch: int, in_history: bool) -> None:
        """Score the validation split, log a metrics.jsonl line, track the best, write last.pt.

        Once per step: a second call at the same step (an epoch ending on a ``validate_every``
        step) only records the result in the history.  The history is complete before last.pt
        is written, so a resumed run has every epoch's record.
        """
        progress = self.progress
        line = self._last_line
        fresh = line is None or line["step"] != progress.step
        if fresh:
            self._tick()
            line = validation_line(progress, epoch, self.lr, share, self.plan.drawn)
            with self.average.in_use():  # validation, best.pt and kept checkpoints: the averaged weights
                if self.validator is not None:  # scored once, by rank 0; every process follows the result
                    line.update(self.validator.scores())
                    self._follow(line)
                if self.processes.main:
                    self.checkpoints.keep(progress.step)
                    self.record.validation(line, self._example_attention())
            self._last_line = line
        if in_history:
            progress.history.append(line)
        if fresh or in_history:
            self.save_last()

    def _example_attention(self) -> torch.Tensor | None:
        """For TensorBoard, when it is on: the first validation example's attention."""
        if self.validator is None or not self.record.shows_attention:
            return None
        return self.validator.example_attention()

    def _follow(self, line: dict) -> None:
        """The validation's consequences: the plateau schedule's step, best.pt when it improved
        (rank 0), and early stopping (``progress.stopped_early``, which ends the run)."""
        self.updater.after_validation(line[self.training.metric])
        if self.validator.judge(self.progress, line) and self.processes.main:
            self.checkpoints.save_best()

    def save_last(self) -> None:
        """Write last.pt (rank 0; every process calls this at the same step, for the random states)."""
        self._tick()
        self.checkpoints.save_last()

    def request_stop(self, reason: str) -> None:
        """Stop after the current step: write last.pt and return (what SIGINT and SIGTERM do)."""
        self.stop.request(reason)
