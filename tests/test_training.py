"""fit, end to end on a slice of the dates data: what a run writes, determinism, resume, validation and
max_steps, early stopping, the schedule, and the training step's loss."""
from __future__ import annotations

import json

import pytest
import torch

import cronos
from cronos.storage.checkpoint import load_checkpoint
from cronos.data import load_training_data
from cronos.training.trainer import Trainer
from helpers import run_cli, stopping_at, tiny_config, write_config


def test_fit_improves_loss_and_writes_the_run(tmp_path):
    model = cronos.fit(cronos.load_config(tiny_config(tmp_path)), **{"training.epochs": 3})
    run = tmp_path / "run"
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2, 3]
    assert lines[-1]["train_loss"] < lines[0]["train_loss"] and lines[-1]["valid_loss"] < lines[0]["valid_loss"]
    assert {"train_loss", "valid_loss", "valid_sequence_accuracy", "valid_bleu", "lr", "seconds",
            "padded_share"} <= set(lines[0])
    assert (run / "best.pt").exists() and (run / "last.pt").exists()
    assert isinstance(model, cronos.Cronos)


def test_fit_is_deterministic_for_a_seed(tmp_path):
    first = cronos.fit(cronos.load_config(tiny_config(tmp_path / "a")), **{"training.epochs": 1})
    second = cronos.fit(cronos.load_config(tiny_config(tmp_path / "b")), **{"training.epochs": 1})
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name


def test_resume_after_a_stop_mid_run_ends_with_the_same_weights(tmp_path, monkeypatch):
    config = tiny_config(tmp_path / "straight", training={"epochs": 2})
    straight = cronos.fit(cronos.load_config(config))
    expected = torch.load(tmp_path / "straight" / "run" / "last.pt", weights_only=True)["model"]

    stop_at = 11  # inside the first epoch of 25 batches
    original = Trainer._train_step
    interrupted = tiny_config(tmp_path / "resumed", training={"epochs": 2})
    monkeypatch.setattr(Trainer, "_train_step", stopping_at(stop_at))
    cronos.fit(cronos.load_config(interrupted))
    monkeypatch.setattr(Trainer, "_train_step", original)
    stopped = torch.load(tmp_path / "resumed" / "run" / "last.pt", weights_only=True)
    assert stopped["training"]["progress"]["step"] == stop_at

    resumed_model = cronos.fit(cronos.load_config(interrupted), **{"training.resume": "auto"})
    resumed = torch.load(tmp_path / "resumed" / "run" / "last.pt", weights_only=True)
    assert resumed["training"]["progress"]["step"] == 50
    for name, tensor in expected.items():
        assert torch.equal(resumed["model"][name], tensor), name
    for name, tensor in straight.network.state_dict().items():  # both hold the same run's best weights
        assert torch.equal(resumed_model.network.state_dict()[name], tensor), name
    # metrics.jsonl after a resume reports whole epochs: the same lines as the straight run, and the
    # resumed epoch's seconds include the time trained before the stop
    straight_lines, resumed_lines = (metrics(tmp_path / name / "run") for name in ("straight", "resumed"))
    without_seconds = lambda lines: [{k: v for k, v in line.items() if k != "seconds"} for line in lines]  # noqa: E731
    assert without_seconds(resumed_lines) == without_seconds(straight_lines)
    assert resumed_lines[0]["seconds"] > stopped["training"]["progress"]["epoch_seconds"] > 0


def metrics(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_validate_every_and_max_steps(tmp_path):
    config = tiny_config(tmp_path, training={"epochs": 50, "max_steps": 30, "validate_every": 10,
                                             "early_stopping_metric": "sequence_accuracy"})
    history = cronos.Cronos.from_config(cronos.load_config(config)).fit()
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [(line["epoch"], line["step"]) for line in lines] == [(1, 10), (1, 20), (1, 25), (2, 30)]
    assert [(h["epoch"], h["step"]) for h in history] == [(1, 25), (2, 30)]
    assert history.epochs_completed == 1  # the second epoch was cut short at step 30


def test_max_steps_on_an_epochs_last_step_completes_that_epoch(tmp_path, capsys, monkeypatch):
    """800 examples in batches of 32: 25 steps an epoch, so max_steps 50 ends on epoch 2's last step."""
    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, training={"epochs": 50, "max_steps": 50}))
    code, out, err = run_cli(["train", str(config)], "", capsys, monkeypatch)
    assert code == 0, err
    assert "epoch 2 step 50: train_loss" in err and "trained 2 epochs, 50 steps" in out
    assert [(line["epoch"], line["step"]) for line in metrics(tmp_path / "run")] == [(1, 25), (2, 50)]
    code, _, err = run_cli(["train", str(config), "--set", "training.resume=auto"], "", capsys, monkeypatch)
    assert "holds a finished run (step 50, 2 epochs completed)" in err, err
    one = cronos.Cronos.from_config(cronos.load_config(tiny_config(tmp_path / "one", training={
        "epochs": 50, "max_steps": 25}))).fit()
    assert one.epochs_completed == 1 and [(h["epoch"], h["step"]) for h in one] == [(1, 25)]


def test_early_stopping_after_patience_runs_out(tmp_path):
    config = tiny_config(tmp_path, training={"epochs": 50, "patience": 2, "lr": 0.0})
    history = cronos.Cronos.from_config(cronos.load_config(config)).fit()
    assert len(history) == 3  # lr 0: the first validation stays the best, two more without improvement


@pytest.mark.parametrize("metric, scores", [("valid_loss", [3.0, 2.0, 2.5, 2.2]), ("valid_bleu", [10.0, 30.0, 20.0, 29.0])])
def test_best_pt_holds_the_weights_of_the_best_validation_whichever_way_the_metric_improves(tmp_path, monkeypatch,
                                                                                          metric, scores):
    """Validations at steps 5, 10, 15, 20 scored as scripted: the second is the best (the lowest
    loss, the highest BLEU); the two after it are worse and must not replace its weights."""
    from cronos.training.validation import Validator

    scripted = iter(scores)

    def scores_of_the_script(self):
        value = next(scripted)
        return {name: value for name in ("valid_loss", "valid_ppl", "valid_token_accuracy", "valid_sequence_accuracy",
                                         "valid_bleu", "valid_chrf")}
    monkeypatch.setattr(Validator, "scores", scores_of_the_script)
    config = tiny_config(tmp_path, training={"epochs": 50, "max_steps": 20, "validate_every": 5,
                                             "early_stopping_metric": metric, "keep_checkpoints": 4})
    history = cronos.Cronos.from_config(cronos.load_config(config)).fit()
    assert history.best_step == 10
    run = tmp_path / "run"
    best = load_checkpoint(run / "best.pt")["model"]
    for step, kept in ((10, True), (15, False), (20, False)):
        weights = load_checkpoint(run / "checkpoints" / f"step_{step:08d}.pt")["model"]
        assert all(torch.equal(best[name], weights[name]) for name in best) == kept, step


def test_warmup_inverse_sqrt_schedule(tmp_path):
    config = tiny_config(tmp_path, training={"epochs": 1, "scheduler": "warmup_inverse_sqrt", "warmup_steps": 10,
                                             "lr": 0.01})
    config = cronos.load_config(config)
    model = cronos.Cronos.from_config(config)
    trainer = Trainer(model.network, model.codec, config, load_training_data(config.data), None)
    lrs = []
    for _ in range(20):
        lrs.append(trainer.lr)
        trainer.optimizer.step()
        trainer.scheduler.step()
    assert lrs[0] == pytest.approx(0.001) and lrs[9] == pytest.approx(0.01)
    assert lrs[19] == pytest.approx(0.01 * (10 / 20) ** 0.5)


def test_the_training_step_divides_the_summed_loss_by_the_real_target_tokens(tmp_path):
    """The loss training optimises, through the function training calls (not the loss helper):
    its gradient is the sum of each example's summed cross-entropy, computed alone and unpadded,
    divided by the batch's real target tokens."""
    import copy

    words = ["ab", "banana", "cd", "dates are fun", "e", "padding is inert", "xyz", "seq2seq"]
    (tmp_path / "reverse.tsv").write_text("".join(f"{w}\t{w[::-1]}\n" for w in words), encoding="utf-8")
    no_dropout = {"dropout": 0.0}
    config = cronos.load_config(tiny_config(tmp_path, training={"clip_grad_norm": None},
                                            data={"train": str(tmp_path / "reverse.tsv")},
                                            model={"encoder": {"type": "rnn", "hidden_size": 32, **no_dropout},
                                                   "decoder": {"type": "rnn", "hidden_size": 64, **no_dropout}}))
    model = cronos.Cronos.from_config(config)
    data = load_training_data(config.data)
    indices = list(range(len(words)))
    lengths = [data.examples[i].tgt_length for i in indices]
    assert len(set(lengths)) > 1  # the batch has padded target positions
    reference = copy.deepcopy(model)
    trainer = Trainer(model.network, model.codec, config, data, None)
    loss_sum, count = trainer._train_step([[indices]])  # one update: one process, one batch
    assert count == sum(lengths)

    summed = 0.0
    for i in indices:
        example = data.examples[i]
        alone = cronos.data.collate([example])
        logits, _ = reference(alone.src, alone.src_lengths, alone.tgt_in)
        summed = summed + torch.nn.functional.cross_entropy(logits[0], alone.tgt_out[0], reduction="sum")
    (summed / sum(lengths)).backward()
    assert loss_sum == pytest.approx(summed.item(), rel=1e-5)
    for (name, trained), (_, expected) in zip(model.named_parameters(), reference.named_parameters()):
        torch.testing.assert_close(trained.grad, expected.grad, atol=1e-7, rtol=1e-4, msg=lambda m: f"{name}: {m}")
