"""P7: an optimiser update over k micro-batches (gradient accumulation) equals the update of one
process on the union of those batches in one batch, and the normalisation peers use (a mean of
per-batch means) would not.

Dropout is 0 so that the only difference between the two ways is how the update is cut up.
"""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

import cronos
from cronos.data import PAD_INDEX, load_training_data, plan_updates
from cronos.training.trainer import Trainer
from helpers import DATES, tiny_config

TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}
NO_DROPOUT = {"encoder": {"type": "rnn", "hidden_size": 32, "dropout": 0.0},
              "decoder": {"type": "rnn", "hidden_size": 64, "dropout": 0.0}}


def reversing(tmp_path) -> dict:
    """Dates sources mapped to themselves reversed: targets of many lengths, so batches differ in
    their numbers of real target tokens."""
    sources = [line.split("\t")[0] for line in (DATES / "train.tsv").read_text(encoding="utf-8").splitlines()[:400]]
    path = tmp_path / "reverse.tsv"
    path.write_text("".join(f"{s}\t{s[::-1]}\n" for s in sources), encoding="utf-8")
    return {"train": str(path), "valid": None, "test": None}


def trainers(tmp_path, dtype: torch.dtype, accumulate: int, prepared: bool = False):
    """A trainer that accumulates ``accumulate`` batches and one that takes them as one batch, on
    copies of the same network, with the config's optimiser (Adam, clipping at 1); ``prepared``:
    on the training split prepared in a folder (memory-mapped) instead of read into memory."""
    sections = {"model": NO_DROPOUT,
                "data": reversing(tmp_path) | ({"prepared": str(tmp_path / "prepared")} if prepared else {})}
    config = cronos.load_config(tiny_config(tmp_path, training={"accumulate": accumulate}, **sections))
    model = cronos.Cronos.from_config(config)
    data = load_training_data(config.data)
    union_config = cronos.load_config(tiny_config(tmp_path, **sections))
    split = Trainer(copy.deepcopy(model.network).to(dtype), model.codec, config, data, None)
    union = Trainer(copy.deepcopy(model.network).to(dtype), model.codec, union_config, data, None)
    return split, union


def max_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("accumulate", [2, 3])
def test_p7_an_update_of_k_batches_is_the_update_of_their_union(tmp_path, dtype, accumulate):
    split, union = trainers(tmp_path, dtype, accumulate)
    batches = split.plan.sampler.batches(0)
    for step in range(4):  # several steps: Adam's state must agree too
        update = batches[step * accumulate: (step + 1) * accumulate]
        sizes = {sum(split.plan.data.examples[i].tgt_length for i in batch) for batch in update}
        assert len(sizes) > 1  # batches of different token counts: a per-batch mean would weight them wrongly
        split_loss, split_tokens = split._train_step([update])  # one process: [rank][batches]
        union_loss, union_tokens = union._train_step([[[i for batch in update for i in batch]]])
        assert split_tokens == union_tokens and split_loss == pytest.approx(union_loss, rel=1e-6)
    assert split.progress.step == union.progress.step == 4
    assert max_difference(split.network, union.network) <= TOLERANCE[dtype]


def test_p4_p7_hold_on_a_prepared_split(tmp_path):
    """On batches read from the memory-mapped split: accumulated updates equal the union's (P7),
    and the <pad> embedding rows stay zero (P4)."""
    split, union = trainers(tmp_path, torch.float64, 2, prepared=True)
    assert isinstance(split.plan.data.examples.src_ids, np.memmap)
    initial = copy.deepcopy(split.network)
    for update in plan_updates(split.plan.sampler.batches(0), split.plan.lengths[1], 2)[:3]:
        split._train_step(update)
        union._train_step([[np.concatenate(update[0])]])
    assert max_difference(split.network, union.network) <= TOLERANCE[torch.float64]
    for embedding in (split.network.src_embedding, split.network.tgt_embedding):
        assert torch.equal(embedding.weight[PAD_INDEX], torch.zeros_like(embedding.weight[PAD_INDEX]))
    assert max_difference(split.network, initial) > 1e-3  # it trained


def test_the_mean_of_per_batch_means_would_not_give_the_union(tmp_path):
    """The normalisation P7 rules out, applied to the same batches, moves the weights measurably
    (so the test above can fail)."""
    split, union = trainers(tmp_path, torch.float64, 2)
    update = split.plan.sampler.batches(0)[:2]
    union._train_step([[[i for batch in update for i in batch]]])
    network, optimizer = split.network.train(), split.optimizer
    optimizer.zero_grad(set_to_none=True)
    for indices in update:
        batch = cronos.data.collate([split.plan.data.examples[i] for i in indices])
        loss = network(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out)
        (loss.total / loss.tokens / len(update)).backward()  # each batch's mean, averaged over batches
    torch.nn.utils.clip_grad_norm_(network.parameters(), 1.0)
    optimizer.step()
    assert max_difference(network, union.network) > 1e-6


def test_accumulation_from_the_command_line_takes_fewer_larger_steps(tmp_path):
    config = tiny_config(tmp_path, training={"epochs": 1, "accumulate": 2})
    model = cronos.fit(cronos.load_config(config))
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["step"] == 13  # 25 batches of 32 in an epoch: 12 updates of 2 and one of 1
    assert model.translate(["1/2/07"])  # a trained model comes back


def test_resuming_inside_an_epoch_with_another_accumulate_is_refused(tmp_path):
    config = tiny_config(tmp_path, training={"epochs": 2, "accumulate": 2, "max_steps": 5})
    cronos.fit(cronos.load_config(config))  # stops inside epoch 1, at step 5
    resumed = tiny_config(tmp_path, training={"epochs": 2, "accumulate": 3, "resume": "auto"})
    with pytest.raises(cronos.CheckpointError, match=r"stopped inside epoch 1 after 5 updates of 2 batches "
                                                     r"\(training.accumulate=2 x 1 process\(es\)\); continue with "
                                                     r"training.accumulate x processes = 2"):
        cronos.fit(cronos.load_config(resumed))
