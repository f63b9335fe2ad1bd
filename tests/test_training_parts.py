"""The parts the Trainer composes, each on its own: the validation rule (``Validator``), stopping on
a signal (``StopSignals``), the state a run resumes (``TrainingState``), its checkpoints
(``Checkpoints``), what it records (``RunRecord``), what an epoch trains on (``EpochPlan``) and one
update (``Updater``)."""
from __future__ import annotations

import json
import logging
import os
import signal

import pytest
import torch

import cronos
from cronos.config import TrainingConfig
from cronos.data import load_split, load_training_data
from cronos.decoding.evaluation import METRICS
from cronos.precision import MixedPrecision
from cronos.storage.checkpoint import CheckpointError, load_checkpoint
from cronos.training.checkpoints import Checkpoints
from cronos.training.distributed import Processes
from cronos.training.epochs import EpochPlan
from cronos.training.record import RunRecord, validation_line
from cronos.training.run_folder import RunFolder
from cronos.training.state import TrainingProgress, TrainingState
from cronos.training.stopping import StopSignals
from cronos.training.update import TrainingError, Updater
from cronos.training.validation import Validator
from helpers import tiny_config

CPU = torch.device("cpu")


def tiny_run(folder, seed: int = 7, **training):
    """A tiny dates model, its config and its training data."""
    config = cronos.load_config(tiny_config(folder, seed=seed, training=training))
    return cronos.Cronos.from_config(config), config, load_training_data(config.data)


@pytest.fixture
def tiny(tmp_path):
    return tiny_run(tmp_path)


def state_of(network: torch.nn.Module, training: TrainingConfig) -> TrainingState:
    optimizer = torch.optim.Adam(network.parameters(), lr=training.lr)
    return TrainingState(optimizer, None, MixedPrecision("fp32", CPU), Processes(), CPU)


# --- Validator: the best so far and early stopping ---------------------------------------------------

def judge(metric: str, patience: int | None, scores: list[float]) -> tuple[list[bool], TrainingProgress]:
    validator = Validator(None, None, None, None, TrainingConfig(early_stopping_metric=metric, patience=patience),
                          Processes())
    progress, verdicts = TrainingProgress(), []
    for step, score in enumerate(scores, start=1):
        progress.step = step
        verdicts.append(validator.judge(progress, {f"valid_{metric}": score}))
    return verdicts, progress


def test_a_lower_loss_and_a_higher_bleu_are_better_and_a_tie_is_not():
    verdicts, progress = judge("loss", None, [2.0, 1.5, 1.5, 1.7, 1.0])
    assert verdicts == [True, True, False, False, True]
    assert (progress.best_score, progress.best_step, progress.bad_validations) == (1.0, 5, 0)
    verdicts, progress = judge("bleu", None, [10.0, 30.0, 20.0])
    assert verdicts == [True, True, False] and progress.best_step == 2 and progress.bad_validations == 1


def test_patience_stops_after_that_many_validations_without_improvement(caplog):
    with caplog.at_level(logging.INFO, logger="cronos"):
        _, progress = judge("loss", 2, [1.0, 1.1, 0.9, 1.2])
        assert not progress.stopped_early  # 0.9 improved: the count started again
        _, progress = judge("loss", 2, [1.0, 1.1, 1.2])
    assert progress.stopped_early and progress.bad_validations == 2
    assert "early stopping: valid_loss has not improved for 2 validations (best 1 at step 1)" in caplog.text


def test_the_validation_scores_are_every_metric_of_the_split(tiny):
    model, config, _ = tiny
    valid = load_split("valid", config.data, model.codec)
    scores = Validator(model.network, model.codec, valid, config.decoding, config.training, Processes()).scores()
    assert list(scores) == [f"valid_{name}" for name in METRICS]
    assert scores == {f"valid_{name}": value for name, value in model.evaluate("valid").items() if name in METRICS}


# --- StopSignals ----------------------------------------------------------------------------------

def test_a_request_is_agreed_after_the_step():
    stop = StopSignals(Processes())
    stop.agree(CPU)
    assert stop.agreed is None
    stop.request("SIGTERM")
    assert stop.agreed is None  # not before the processes agree, after the step
    stop.agree(CPU)
    assert stop.agreed == "SIGTERM"


def test_sigterm_and_sigint_request_a_stop_inside_the_block_and_the_handlers_come_back_after():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    stop = StopSignals(Processes())
    with stop.handled():
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C of one process aborts
            os.kill(os.getpid(), signal.SIGINT)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


# --- TrainingState --------------------------------------------------------------------------------

def test_the_state_comes_back_whole_optimiser_random_state_and_progress(tiny):
    model, config, _ = tiny
    state = state_of(model.network, config.training)
    model.network(*[torch.tensor([[4, 5]]), torch.tensor([2]), torch.tensor([[1, 6]]), torch.tensor([[6, 2]])]
                  ).total.backward()
    state.optimizer.step()
    state.progress.step, state.progress.epoch, state.progress.history = 3, 1, [{"step": 3}]
    saved = state.state_dict()
    expected = torch.rand(4)

    restored = state_of(model.network, config.training)
    restored.load_state_dict(saved)
    assert restored.progress == state.progress
    assert torch.equal(torch.rand(4), expected)  # the random state of the save
    ours, theirs = restored.optimizer.state_dict()["state"], state.optimizer.state_dict()["state"]
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k]["exp_avg"], theirs[k]["exp_avg"]) for k in ours)


def test_a_run_stopped_inside_an_epoch_continues_only_with_the_same_batches_per_update(tiny, tmp_path):
    model, config, _ = tiny
    state = state_of(model.network, config.training)
    state.check_same_plan(2, 2, 1, tmp_path / "last.pt")  # at an epoch's boundary: anything goes
    state.progress.batches_done = 3
    state.check_same_plan(2, 1, 2, tmp_path / "last.pt")  # 2 x 1 = 2 x 1
    with pytest.raises(CheckpointError, match=r"last.pt: stopped inside epoch 1 after 3 updates of 4 batches "
                                              r"\(training.accumulate=2 x 2 process\(es\)\)"):
        state.check_same_plan(2, 2, 1, tmp_path / "last.pt")


# --- Checkpoints ----------------------------------------------------------------------------------

def checkpoints_of(model: cronos.Cronos, config, folder) -> Checkpoints:
    folder.mkdir(exist_ok=True)
    return Checkpoints(RunFolder(folder), config, model.codec, model.network, state_of(model.network, config.training))


def test_a_resumed_run_gets_the_weights_and_progress_of_its_last_checkpoint(tiny, tmp_path):
    model, config, _ = tiny
    first = checkpoints_of(model, config, tmp_path / "run")
    assert first.resume(None) is None and first.resume("auto") is None  # nothing yet: a new run
    first.state.progress.step = 7
    first.save_last()

    fresh = tiny_run(tmp_path / "other", seed=8)[0]
    again = checkpoints_of(fresh, config, tmp_path / "run")
    assert again.resume("auto") == tmp_path / "run" / "last.pt"
    assert again.state.progress.step == 7
    assert all(torch.equal(a, b) for a, b in zip(fresh.network.state_dict().values(),
                                                 model.network.state_dict().values()))


def test_best_pt_holds_weights_only_and_is_refused_as_a_run_to_resume(tiny, tmp_path):
    model, config, _ = tiny
    checkpoints = checkpoints_of(model, config, tmp_path / "run")
    checkpoints.save_best()
    assert "training" not in load_checkpoint(tmp_path / "run" / "best.pt")
    with pytest.raises(CheckpointError, match="holds weights only"):
        checkpoints.resume(str(tmp_path / "run" / "best.pt"))
    with torch.no_grad():
        for weight in model.network.parameters():
            weight.add_(1.0)
    checkpoints.load_best()
    assert torch.equal(model.network.state_dict()["src_embedding.weight"],
                       load_checkpoint(tmp_path / "run" / "best.pt")["model"]["src_embedding.weight"])


def test_keep_checkpoints_keeps_the_last_n(tiny, tmp_path):
    model, config, _ = tiny
    checkpoints = checkpoints_of(model, tiny_run(tmp_path, keep_checkpoints=2)[1], tmp_path / "run")
    for step in (5, 10, 15):
        checkpoints.keep(step)
    assert [path.name for path in checkpoints.folder.kept_checkpoints()] == ["step_00000010.pt", "step_00000015.pt"]
    none = checkpoints_of(model, config, tmp_path / "other")
    none.keep(5)
    assert none.folder.kept_checkpoints() == []


# --- RunRecord ------------------------------------------------------------------------------------

def test_rank_0_records_each_validation_as_a_metrics_line_and_a_log_line(tmp_path, caplog):
    progress = TrainingProgress(step=20, epoch_loss_sum=30.0, epoch_tokens=10, epoch_seconds=1.23456,
                                skipped_batches=1)
    line = {**validation_line(progress, 2, 0.001, 0.25), "valid_loss": 0.5}
    assert line == {"epoch": 2, "step": 20, "train_loss": 3.0, "lr": 0.001, "seconds": 1.235, "padded_share": 0.25,
                    "skipped_batches": 1, "valid_loss": 0.5}
    with caplog.at_level(logging.INFO, logger="cronos"):
        RunRecord(RunFolder(tmp_path), writes=True).validation(line, None)
        RunRecord(RunFolder(tmp_path), writes=False).validation({**line, "step": 40}, None)  # another rank
    assert [json.loads(text) for text in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [line]
    assert caplog.text.count("epoch 2 step 20: train_loss 3, valid_loss 0.5") == 1


# --- EpochPlan ------------------------------------------------------------------------------------

def test_every_process_plans_the_same_updates_and_an_epoch_is_planned_once(tiny):
    _, config, data = tiny
    plan, other = (EpochPlan(data, config.training, config.seed, 1) for _ in range(2))
    first = plan.updates(0)
    assert plan.updates(0) is first  # kept, not planned again
    assert [[b.tolist() for b in u[0]] for u in first] == [[b.tolist() for b in u[0]] for u in other.updates(0)]
    assert [[b.tolist() for b in u[0]] for u in plan.updates(1)] != [[b.tolist() for b in u[0]] for u in first]
    assert sorted(int(i) for u in first for b in u[0] for i in b) == list(range(len(data.examples)))
    assert plan.target_tokens(first[0]) == sum(data.examples[int(i)].tgt_length for b in first[0][0] for i in b)


def test_the_planned_steps_count_every_epoch_left_or_stop_at_max_steps(tiny, tmp_path):
    _, config, data = tiny
    plan = EpochPlan(data, config.training, config.seed, 1)
    per_epoch = len(plan.updates(0))
    assert plan.planned_steps(TrainingProgress()) == config.training.epochs * per_epoch
    assert plan.planned_steps(TrainingProgress(step=per_epoch + 2, epoch=1, batches_done=2)) == 2 * per_epoch
    capped = EpochPlan(data, tiny_run(tmp_path, max_steps=3)[1].training, config.seed, 1)
    assert capped.planned_steps(TrainingProgress()) == 3


# --- Updater --------------------------------------------------------------------------------------

def poisoned(folder, nan_policy: str):
    """An updater whose network gives a non-finite loss, and the update of the first two examples."""
    model, config, data = tiny_run(folder, nan_policy=nan_policy)
    with torch.no_grad():
        model.network.src_embedding.weight[4:].fill_(float("nan"))
    training = config.training
    updater = Updater(model.network, training, MixedPrecision("fp32", CPU), Processes(), CPU, data.origins)
    plan = EpochPlan(data, training, config.seed, 1)
    update = [[torch.tensor([0, 1]).numpy()]]
    return updater, plan, update, model


def test_a_non_finite_loss_stops_the_run_naming_the_examples(tmp_path):
    updater, plan, update, _ = poisoned(tmp_path, "error")
    with pytest.raises(TrainingError, match=r"non-finite loss or gradient at epoch 1, step 1: .* batch examples "
                                            r"\S+:1, \S+:2\. Lower training.lr"):
        updater.step(updater.network, plan.loaded([update], 0, 0, False), update, plan.target_tokens(update),
                     TrainingProgress())


def test_a_non_finite_loss_under_skip_changes_no_weight_and_is_counted(tmp_path):
    updater, plan, update, model = poisoned(tmp_path, "skip")
    before = {name: tensor.clone() for name, tensor in model.network.state_dict().items()}
    progress = TrainingProgress()
    assert updater.step(updater.network, plan.loaded([update], 0, 0, False), update, plan.target_tokens(update),
                        progress) == (0.0, 0)
    assert (progress.step, progress.skipped_batches) == (0, 1)
    after = model.network.state_dict()
    assert all(torch.equal(before[name], after[name]) or before[name].isnan().any() for name in before)
