"""The fit loop: optimiser and schedule, checkpoints, resume; the saved state
(``training_state.TrainingState``), validation (``validation.Validator``) and signals
(``stopping.StopSignals``) are parts it composes.

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

import itertools
import json
import logging
import math
import time
from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path
from typing import Iterator

import torch
from torch.nn.parallel import DistributedDataParallel

from .checkpoint import CheckpointError, check_same_model, model_payload, save_checkpoint
from .config import Config, ConfigError, TrainingConfig
from .data import (Batch, BucketBatchSampler, EvalSplit, TextCodec, TrainingData, Update, batch_loader,
                   padded_share, plan_updates, tokens_in)
from .distributed import Processes, process_group
from .board import Board
from .model_file import read_model_file
from .network import Seq2Seq
from .precision import MixedPrecision
from .progress import ProgressReport, epochs, report_to_stderr_unless_configured
from .run_folder import RunFolder, claim
from .stopping import StopSignals
from .training_state import TrainingProgress, TrainingState
from .validation import Validator

__all__ = ["Trainer", "TrainingError", "TrainingHistory", "TrainingProgress", "build_optimizer"]

logger = logging.getLogger("cronos")

SAMPLING_APART = ("subword regularisation samples with SentencePiece's own generator, which the operating system "
                  "seeds (sentencepiece 0.2): each process would train on another segmentation, plan other batches "
                  "and wait for the others for ever; train on one process, or without sampling_alpha")


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss or gradient under ``nan_policy: error``)."""


def build_optimizer(network: torch.nn.Module, training: TrainingConfig) -> torch.optim.Optimizer:
    """Adam or AdamW per ``training``; the fused kernel when torch has it (~4x faster on the CPU)."""
    kind = torch.optim.AdamW if training.optimizer == "adamw" else torch.optim.Adam
    options = dict(lr=training.lr, weight_decay=training.weight_decay)
    try:
        return kind(network.parameters(), fused=True, **options)
    except (RuntimeError, TypeError, ValueError):  # torch < 2.4 has no fused CPU kernel
        return kind(network.parameters(), **options)


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
        self.network, self.codec, self.config, self.data = network, codec, config, data
        self.training = config.training
        self.processes = Processes.from_environment()  # one, or those torchrun started
        if data.sampling is not None and self.processes.world_size > 1:
            raise ConfigError("config", "data.sentencepiece.sampling_alpha", SAMPLING_APART)
        self.device = self.processes.device(self.training.device)
        network.to(self.device)  # before the optimiser: its state follows the weights
        self.precision = MixedPrecision(self.training.precision, self.device)  # fp16 off a GPU: refused here
        if self.training.compile:
            network.compile_blocks()  # before DistributedDataParallel wraps it
        self.trained: torch.nn.Module = network  # what a step calls: the network, or DDP around it
        self.folder = RunFolder(Path(config.output_dir))
        self._examples_epoch: int | None = None  # the segmentation of the examples, lengths and sampler below
        self._plan: tuple[int, list[Update]] | None = None  # an epoch and its updates
        self._use_epoch(0)
        self.optimizer = build_optimizer(network, self.training)
        self.scheduler = self._scheduler()
        self.state = TrainingState(self.optimizer, self.scheduler, self.precision, self.processes, self.device)
        self.stop = StopSignals(self.processes)
        self.validator = None if valid is None else Validator(network, codec, valid, config.decoding,
                                                              self.training, self.processes)
        self._last_record: dict | None = None
        self.board = Board()  # TensorBoard, opened by rank 0 when the run starts (training.tensorboard)
        self._clock = time.perf_counter()  # epoch_seconds counts up to here

    # --- set-up ---------------------------------------------------------------------------------

    def _scheduler(self):
        training = self.training
        if training.scheduler == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer, mode="min" if training.lower_is_better else "max", factor=training.plateau_factor,
                patience=training.plateau_patience, min_lr=training.min_lr)
        if training.scheduler == "warmup_inverse_sqrt":
            warmup, floor = training.warmup_steps, training.min_lr / training.lr if training.lr else 0.0
            return torch.optim.lr_scheduler.LambdaLR(
                self.optimizer, lambda step: max(floor, min((step + 1) / warmup, math.sqrt(warmup / (step + 1)))))
        return None

    @property
    def progress(self) -> TrainingProgress:
        """Where the run stands (``TrainingState.progress``, saved in last.pt)."""
        return self.state.progress

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

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
              self._claimed()):
            self._maybe_resume()
            self.trained = self._replicated()
            if self.training.tensorboard and self.processes.main:
                # a resumed run drops the events an interrupted one logged past its checkpoint
                purge_step = self.progress.step + 1 if self.progress.step else None
                self.board = Board.open(self.folder.tensorboard, purge_step=purge_step)
            try:
                self._train_and_save()
            finally:
                self.trained = self.network  # DistributedDataParallel must go before its process group
                self.board.close()
        return TrainingHistory(self.progress, self.stop.agreed, self._last_record)

    def _train_and_save(self) -> None:
        main = self.processes.main
        report = ProgressReport(self.progress.step, self.progress.epoch + 1, self._planned_steps(),
                                self.training.epochs, bar=self.training.progress and main,
                                log_every=self.training.log_every if main else None)
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
        self._ensure_best()
        self.processes.barrier()  # best.pt is written
        if self.progress.best_step is not None:  # best.pt holds this run's best validation
            self.network.load_state_dict(read_model_file(self.folder.best).weights)

    @contextmanager
    def _claimed(self) -> Iterator[None]:
        """The run folder for the block, claimed by rank 0 (``run_folder.claim``); the other
        processes learn whether it could, so that none waits for a run that does not start."""
        processes = self.processes
        if not processes.main:
            if not processes.from_main(None):
                raise TrainingError(f"rank 0 could not start the run in {self.folder.path}; its message says why")
            yield
            return
        with ExitStack() as stack:
            try:
                stack.enter_context(claim(self.folder, self.training.resume, self.training.overwrite))
            except BaseException:
                processes.from_main(False)
                raise
            processes.from_main(True)
            yield

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

    def _planned_steps(self) -> int:
        """The run's last step, if it trains every planned batch (``max_steps`` when that comes first)."""
        progress, training = self.progress, self.training
        per_epoch = len(self._updates(progress.epoch))  # epochs differ by an update at most
        total = progress.step + per_epoch - progress.batches_done + (training.epochs - progress.epoch - 1) * per_epoch
        return min(total, training.max_steps) if training.max_steps else max(total, progress.step)

    def _use_epoch(self, epoch: int) -> None:
        """The examples ``epoch`` trains on (segmented anew with subword regularisation), their
        lengths and the batch sampler over them; built once, and again only for an epoch that
        samples a segmentation of its own."""
        segmentation = epoch if self.data.sampling is not None else 0  # the examples change only when sampled
        if segmentation == self._examples_epoch:
            return
        self.examples = examples = self.data.for_epoch(segmentation)
        self._examples_epoch = segmentation
        self.lengths = (examples.src_lengths, examples.tgt_lengths)  # int32 [N] each
        self.sampler = BucketBatchSampler(*self.lengths, batch_size=self.training.batch_size,
                                          batch_tokens=self.training.batch_tokens, seed=self.config.seed)

    def _updates(self, epoch: int) -> list[Update]:
        """The epoch's optimiser updates: ``[update][rank]`` -> that process's batches (``plan_updates``);
        the last epoch's kept (planning 10M pairs takes seconds)."""
        if self._plan is None or self._plan[0] != epoch:
            self._use_epoch(epoch)
            self._plan = epoch, plan_updates(self.sampler.batches(epoch), self.lengths[1], self.training.accumulate,
                                             self.processes.world_size)
        return self._plan[1]

    def _train_epoch(self, report: ProgressReport) -> None:
        progress, epoch = self.progress, self.progress.epoch
        updates = self._updates(epoch)
        share = padded_share([batch for update in updates for share in update for batch in share], *self.lengths)
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
                self.board.step(progress.step, batch_loss / batch_tokens, batch_tokens / seconds, self.lr)
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
        """This process's batches of ``updates``, collated in order (by ``data.loader_workers``
        processes while the steps run)."""
        mine = [batch for update in updates for batch in update[self.processes.rank]]
        return iter(batch_loader(self.examples, mine, self.config.data.loader_workers,
                                 pin_memory=self.device.type == "cuda"))

    def _train_step(self, update: Update, loaded: Iterator[Batch] | None = None) -> tuple[float, int]:
        """One optimiser step over ``update``: each process's batches (lists of example indices),
        collated from ``loaded`` (this process's batches from here on), or here.

        The step's loss is the cross-entropy summed over the real target tokens of all its batches,
        in all processes, divided by their number, which the plan gives every process before the
        first backward.  Each batch's backward adds its share, and the processes' gradients are
        summed, so the gradient is that of the union of the batches in one batch (not a mean of
        per-batch or per-process means, which would weight a token by how full its batch is).
        """
        processes, trained = self.processes, self.trained
        trained.train()
        self.optimizer.zero_grad(set_to_none=True)
        tokens = sum(tokens_in(batch, self.lengths[1]) for share in update for batch in share)  # real target tokens
        mine = update[processes.rank]
        loaded = loaded if loaded is not None else self._loaded([update])
        loss_sum = torch.zeros((), device=self.device)
        for number, batch in enumerate(itertools.islice(loaded, len(mine))):
            batch = batch.to(self.device)
            exchange = number == len(mine) - 1 or not processes.distributed  # gradients cross processes once
            with nullcontext() if exchange else trained.no_sync():
                with self.precision.autocast():  # the forward pass only; backward follows the forward's dtypes
                    loss = trained(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out,
                                   label_smoothing=self.training.label_smoothing)
                # DDP averages the processes' gradients: times their number, that is their sum
                self.precision.backward(loss.total * processes.world_size / tokens)
            loss_sum = loss_sum + loss.total.detach()
        total_loss, = processes.sum([loss_sum], self.device)
        self.precision.unscale(self.optimizer)
        max_norm = self.training.clip_grad_norm if self.training.clip_grad_norm is not None else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.network.parameters(), max_norm)
        # fp16: an overflowing gradient is the scaler's to handle (it skips the update and halves its
        # scale), unless the scale has fallen below 1, where the gradient itself is not finite
        scaler_handles_it = self.precision.scaling and self.precision.scale >= 1.0
        if not math.isfinite(total_loss) or (not torch.isfinite(grad_norm) and not scaler_handles_it):
            indices = [int(i) for share in update for batch in share for i in batch]
            return self._non_finite(indices, total_loss, float(grad_norm))
        if not self.precision.step(self.optimizer):
            self.progress.skipped_batches += 1
            logger.info("fp16: the gradients of step %d overflowed; update skipped, loss scale lowered to %g",
                        self.progress.step + 1, self.precision.scale)
            return 0.0, 0
        self.progress.step += 1
        if isinstance(self.scheduler, torch.optim.lr_scheduler.LambdaLR):
            self.scheduler.step()
        return total_loss, tokens

    def _non_finite(self, indices: list[int], loss: float, grad_norm: float) -> tuple[float, int]:
        origins = [self.data.origins[i] for i in indices[:10]]
        more = f" and {len(indices) - 10} more" if len(indices) > 10 else ""
        where = (f"epoch {self.progress.epoch + 1}, step {self.progress.step + 1}: loss {loss}, gradient norm "
                 f"{grad_norm}; batch examples {', '.join(origins)}{more}")
        self.optimizer.zero_grad(set_to_none=True)
        if self.training.nan_policy == "error":
            raise TrainingError(f"non-finite loss or gradient at {where}. Lower training.lr, check these "
                                "examples, or set training.nan_policy: skip")
        self.progress.skipped_batches += 1
        logger.warning("skipped a batch with a non-finite loss or gradient at %s", where)
        return 0.0, 0

    # --- validation, early stopping, checkpoints --------------------------------------------------

    def _validate(self, share: float, epoch: int, in_history: bool) -> None:
        """Score the validation split, log a metrics.jsonl line, track the best, write last.pt.

        Once per step: a second call at the same step (an epoch ending on a ``validate_every``
        step) only records the result in the history.  The history is complete before last.pt
        is written, so a resumed run has every epoch's record.
        """
        progress = self.progress
        record = self._last_record
        fresh = record is None or record["step"] != progress.step
        if fresh:
            self._tick()
            record = {"epoch": epoch, "step": progress.step,
                      "train_loss": progress.epoch_loss_sum / max(progress.epoch_tokens, 1), "lr": self.lr,
                      "seconds": round(progress.epoch_seconds, 3), "padded_share": share,
                      "skipped_batches": progress.skipped_batches}
            if self.validator is not None:  # scored once, by rank 0; every process follows the result
                record.update(self.validator.scores())
                self._follow(record)
            if self.processes.main:
                with open(self.folder.metrics, "a", encoding="utf-8") as file:
                    file.write(json.dumps(record) + "\n")
                self._keep_checkpoint()
                self.board.validation(progress.step, record, self._example_attention())
                logger.info("epoch %d step %d: %s", epoch, progress.step,
                            ", ".join(f"{k} {v:.4g}" for k, v in record.items()
                                      if k.startswith(("train_loss", "valid_")) and isinstance(v, float)))
            self._last_record = record
        if in_history:
            progress.history.append(record)
        if fresh or in_history:
            self.save_last()

    def _example_attention(self) -> torch.Tensor | None:
        """For TensorBoard, when it is on: the first validation example's attention."""
        if self.validator is None or self.board.writer is None:
            return None
        return self.validator.example_attention()

    def _follow(self, record: dict) -> None:
        """The validation's consequences: the plateau schedule's step, best.pt when it improved
        (rank 0), and early stopping (``progress.stopped_early``, which ends the run)."""
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(record[self.training.metric])
        if self.validator.judge(self.progress, record) and self.processes.main:
            save_checkpoint(self.folder.best, self._model_payload())

    def _keep_checkpoint(self) -> None:
        """``training.keep_checkpoints``: this validation's weights beside the last N-1 (``cronos average``)."""
        keep = self.training.keep_checkpoints
        if not keep:
            return
        save_checkpoint(self.folder.kept_checkpoint(self.progress.step), self._model_payload())
        for old in self.folder.kept_checkpoints()[:-keep]:
            old.unlink()

    def _ensure_best(self) -> None:
        if self.validator is None and self.processes.main:  # no validation data: the last weights are the best
            save_checkpoint(self.folder.best, self._model_payload())

    def _model_payload(self) -> dict:
        return model_payload(self.config, self.codec, self.network.state_dict())

    def save_last(self) -> None:
        """Write last.pt (rank 0; every process calls this at the same step, for the random states)."""
        self._tick()
        state = self.state.state_dict()
        if state is not None:
            save_checkpoint(self.folder.last, {**self._model_payload(), "training": state})

    def _maybe_resume(self) -> None:
        resume = self.training.resume
        if resume is None:
            return
        path = self.folder.last if resume == "auto" else Path(resume)
        if resume == "auto" and not path.exists():
            logger.info("training.resume=auto: no %s yet, starting a new run", path)
            return
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
        self.state.check_same_plan(stored.config.training.accumulate, world_size, self.training.accumulate, path)
        if self.progress.history:
            self._last_record = self.progress.history[-1]
        if self._complete():
            logger.info("%s holds a finished run (step %d, %s completed): nothing left to train; raise "
                        "training.epochs or training.max_steps to train on, or start over with training.overwrite=true "
                        "in place of training.resume", path, self.progress.step, epochs(self.progress.epoch))
        else:
            logger.info("resumed from %s at epoch %d, step %d", path, self.progress.epoch + 1, self.progress.step)

    def request_stop(self, reason: str) -> None:
        """Stop after the current step: write last.pt and return (what SIGINT and SIGTERM do)."""
        self.stop.request(reason)
