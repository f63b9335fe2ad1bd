"""What each epoch of a run trains on: its examples (segmented anew each epoch under subword
regularisation), their lengths, and its optimiser updates, planned once per epoch.

    plan = EpochPlan(data, config.training, seed, processes)
    for update in plan.updates(epoch):               # update[rank]: that process's batches
        batches = plan.loaded([update], rank, workers, pin_memory=False)

Every process plans the same updates from the same seed (``data.plan_updates``), so that R
processes x k micro-batches take the batches one process would take in one update.  With several
corpora (``data.train`` as a list), an epoch's examples are those drawn from each by its weight
(``data.corpora.epoch_examples``, seeded by the seed and the epoch), batched as one epoch.
"""
from __future__ import annotations

from typing import Iterator

from ..config import TrainingConfig
from ..data import Batch, BucketBatchSampler, TrainingData, Update, batch_loader, padded_share, plan_updates, tokens_in
from ..data.corpora import drawn_per_corpus, epoch_examples
from .state import TrainingProgress

__all__ = ["EpochPlan"]


class EpochPlan:
    """The examples, lengths and updates of the epoch last asked for; built again only when the
    epoch changes (planning 10M pairs takes seconds) and, under subword regularisation, the examples too."""

    def __init__(self, data: TrainingData, training: TrainingConfig, seed: int, world_size: int):
        self.data, self.training, self.seed, self.world_size = data, training, seed, world_size
        self._examples_epoch: int | None = None  # the segmentation the examples, lengths and sampler are of
        self._plan: tuple[int, list[Update]] | None = None  # an epoch and its updates
        self._use_epoch(0)

    def _use_epoch(self, epoch: int) -> None:
        segmentation = epoch if self.data.sampling is not None else 0  # the examples change only when sampled
        if segmentation == self._examples_epoch:
            return
        self.examples = examples = self.data.for_epoch(segmentation)
        self._examples_epoch = segmentation
        self.lengths = (examples.src_lengths, examples.tgt_lengths)  # int32 [N] each
        self.sampler = self._sampler(*self.lengths)

    def _sampler(self, src_lengths, tgt_lengths) -> BucketBatchSampler:
        return BucketBatchSampler(src_lengths, tgt_lengths, batch_size=self.training.batch_size,
                                  batch_tokens=self.training.batch_tokens, seed=self.seed)

    def updates(self, epoch: int) -> list[Update]:
        """The epoch's optimiser updates: ``[update][rank]`` -> that process's batches (``plan_updates``)."""
        if self._plan is None or self._plan[0] != epoch:
            self._use_epoch(epoch)
            self._plan = epoch, plan_updates(self._batches(epoch), self.lengths[1], self.training.accumulate,
                                             self.world_size)
        return self._plan[1]

    def _batches(self, epoch: int) -> list:
        """The epoch's batches of example indices: all examples, or those drawn from the corpora."""
        if self.data.corpora is None:
            return self.sampler.batches(epoch)
        chosen = epoch_examples(self.data.corpora, self.seed, epoch)                      # int64 [n]
        sampler = self._sampler(self.lengths[0][chosen], self.lengths[1][chosen])
        return [chosen[batch] for batch in sampler.batches(epoch)]

    @property
    def drawn(self) -> dict[str, int] | None:
        """The examples each epoch draws from each corpus, by name (None: one corpus, every example)."""
        return None if self.data.corpora is None else drawn_per_corpus(self.data.corpora)

    def planned_steps(self, progress: TrainingProgress) -> int:
        """The run's last step, if it trains every planned batch (``max_steps`` when that comes first)."""
        training = self.training
        per_epoch = len(self.updates(progress.epoch))  # epochs differ by an update at most
        total = progress.step + per_epoch - progress.batches_done + (training.epochs - progress.epoch - 1) * per_epoch
        return min(total, training.max_steps) if training.max_steps else max(total, progress.step)

    def padded_share(self, updates: list[Update]) -> float:
        """Pad positions / all positions of every batch of ``updates`` (metrics.jsonl's ``padded_share``)."""
        return padded_share([batch for update in updates for share in update for batch in share], *self.lengths)

    def target_tokens(self, update: Update) -> int:
        """The real target tokens of all the update's batches, in every process."""
        return sum(tokens_in(batch, self.lengths[1]) for share in update for batch in share)

    def loaded(self, updates: list[Update], rank: int, workers: int, pin_memory: bool) -> Iterator[Batch]:
        """Process ``rank``'s batches of ``updates``, collated in order (by ``workers`` processes
        while the steps run)."""
        mine = [batch for update in updates for batch in update[rank]]
        return iter(batch_loader(self.examples, mine, workers, pin_memory=pin_memory))
