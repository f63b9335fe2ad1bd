"""fit / evaluate / translate / explain / save / load, end to end on a slice of the dates data."""
from __future__ import annotations

import json
import math
import subprocess

import pytest
import torch

import cronos
from cronos.data import load_training_data
from cronos.training import Trainer
from helpers import cronos_command, tiny_config, write_config

SOURCES = ["Thu 26 Nov 2026", "1/2/07", "Mittwoch, 3. März 1999", "the 21st of June 1950", "2000 01 01"]
FAMILIES = ["rnn", "transformer"]


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


@pytest.mark.parametrize("family", FAMILIES)
def test_evaluate_returns_every_metric(trained_models, family):
    scores = trained_models[family].evaluate("test")
    for metric in ("loss", "ppl", "token_accuracy", "sequence_accuracy", "bleu", "chrf"):
        assert isinstance(scores[metric], float), metric
    assert scores["bleu_signature"].startswith("nrefs:1|") and "chrf_signature" in scores
    assert 0.0 <= scores["sequence_accuracy"] <= 1.0 and scores["ppl"] >= 1.0 and scores["examples"] == 100
    pairs = cronos.evaluate(trained_models[family], data=[("1/2/07", "2007-02-01")])
    assert pairs["examples"] == 1


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("beam", [1, 4])
def test_translate_is_the_same_alone_and_inside_a_padded_batch(trained_models, family, beam):
    model = trained_models[family]
    batched = model.translate(SOURCES, beam_size=beam)
    alone = [model.translate([source], beam_size=beam)[0] for source in SOURCES]
    in_pairs = model.translate(SOURCES, beam_size=beam, batch_size=2)
    assert batched == alone == in_pairs
    assert all(isinstance(output, str) for output in batched)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("beam", [1, 3])
def test_explain_rows_sum_to_one_and_padding_got_nothing(trained_models, family, beam):
    model = trained_models[family]
    explanations = model.explain(SOURCES, beam_size=beam)
    for source, explanation in zip(SOURCES, explanations):
        assert explanation.source_tokens == list(source)
        assert explanation.attention.shape == (len(explanation.output_tokens), len(source))
        assert explanation.padding_attention == 0.0  # the batch had padding; it got exactly zero
        if explanation.output_tokens:
            torch.testing.assert_close(explanation.attention.sum(-1), torch.ones(len(explanation.output_tokens)),
                                       atol=1e-5, rtol=0)
    assert [e.output for e in explanations] == model.translate(SOURCES, beam_size=beam)


def test_explain_with_forced_targets(trained_models):
    model = trained_models["transformer"]
    explanation = cronos.explain(model, ["1/2/07", "Thu 26 Nov 2026"], targets=["2007-02-01", "2026-11-26"])[0]
    assert explanation.forced and explanation.output_tokens == list("2007-02-01")
    assert explanation.attention.shape == (10, 6) and explanation.padding_attention == 0.0
    data = explanation.to_dict()
    assert set(data) == {"source", "source_tokens", "output", "output_tokens", "attention", "score",
                         "padding_attention", "forced", "method"}
    assert json.loads(json.dumps(data))["output"] == "2007-02-01"


def test_explain_plot_writes_a_png(trained_models, tmp_path):
    path = trained_models["rnn"].explain(["Thu 26 Nov 2026"])[0].plot(tmp_path / "heat.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_names_the_extra(trained_models, tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(ImportError, match=r"pip install 'cronos\[plot\]'"):
        trained_models["rnn"].explain(["1/2/07"])[0].plot(tmp_path / "x.png")


@pytest.mark.parametrize("family", FAMILIES)
def test_save_load_round_trip_gives_identical_outputs(trained_models, family, tmp_path):
    model = trained_models[family]
    path = model.save(tmp_path / "model.pt")
    loaded = cronos.Cronos.load(path, device="cpu")
    assert loaded.translate(SOURCES, beam_size=3) == model.translate(SOURCES, beam_size=3)
    batch = model.prepare(SOURCES, ["2026-11-26"] * len(SOURCES))
    model.eval()
    torch.testing.assert_close(loaded(batch.src, batch.src_lengths, batch.tgt_in)[0],
                               model(batch.src, batch.src_lengths, batch.tgt_in)[0], atol=0, rtol=0)
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temporary behind


def test_resume_after_a_stop_mid_run_ends_with_the_same_weights(tmp_path, monkeypatch):
    config = tiny_config(tmp_path / "straight", training={"epochs": 2})
    straight = cronos.fit(cronos.load_config(config))
    expected = torch.load(tmp_path / "straight" / "run" / "last.pt", weights_only=True)["model"]

    stop_at = 11  # inside the first epoch of 25 batches
    original = Trainer._train_step

    def stop_after(self, indices):
        result = original(self, indices)
        if self.progress.step == stop_at:
            self.request_stop("test")
        return result

    interrupted = tiny_config(tmp_path / "resumed", training={"epochs": 2})
    monkeypatch.setattr(Trainer, "_train_step", stop_after)
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


def test_max_steps_on_an_epochs_last_step_completes_that_epoch(tmp_path):
    """800 examples in batches of 32: 25 steps an epoch, so max_steps 50 ends on epoch 2's last step."""
    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, training={"epochs": 50, "max_steps": 50}))
    result = subprocess.run(cronos_command("train", str(config)), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "epoch 2 step 50: train_loss" in result.stderr and "trained 2 epochs, 50 steps" in result.stdout
    assert [(line["epoch"], line["step"]) for line in metrics(tmp_path / "run")] == [(1, 25), (2, 50)]
    again = subprocess.run(cronos_command("train", str(config), "--set", "training.resume=auto"),
                           capture_output=True, text=True, timeout=300)
    assert "holds a finished run (step 50, 2 epochs completed)" in again.stderr, again.stderr
    one = cronos.Cronos.from_config(cronos.load_config(tiny_config(tmp_path / "one", training={
        "epochs": 50, "max_steps": 25}))).fit()
    assert one.epochs_completed == 1 and [(h["epoch"], h["step"]) for h in one] == [(1, 25)]


def test_early_stopping_after_patience_runs_out(tmp_path):
    config = tiny_config(tmp_path, training={"epochs": 50, "patience": 2, "lr": 0.0})
    history = cronos.Cronos.from_config(cronos.load_config(config)).fit()
    assert len(history) == 3  # lr 0: the first validation stays the best, two more without improvement


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


@pytest.mark.parametrize("beam", [1, 5])
def test_inputs_longer_than_max_length_are_cut_to_it_with_one_warning(trained_models, caplog, beam):
    import time

    model = trained_models["transformer"]
    limit = model.config.data.max_length
    long = "Thu 26 Nov 2026 " * 1250  # 20,000 characters
    started = time.monotonic()
    with caplog.at_level("WARNING", logger="cronos"):
        outputs = model.translate([long, "1/2/07"], beam_size=beam)
    assert time.monotonic() - started < 30
    assert caplog.text.count(f"1 of 2 inputs were longer than data.max_length ({limit} tokens) and were cut") == 1
    assert outputs[0] == model.translate([long[:limit]], beam_size=beam)[0]
    explanation = model.explain([long], beam_size=beam)[0]
    assert explanation.source_tokens == list(long[:limit]) and explanation.attention.shape[1] == limit
    scores = model.evaluate([(long, "2026-11-26"), ("1/2/07", "2007-02-01")], beam_size=beam)
    assert scores["examples"] == 2 and math.isfinite(scores["loss"])


def test_mostly_unknown_input_is_reported(trained_models, caplog):
    model = trained_models["rnn"]
    with caplog.at_level("WARNING", logger="cronos"):
        model.translate(["1/2/07"])
    assert "unknown to the model's vocabulary" not in caplog.text
    with caplog.at_level("WARNING", logger="cronos"):
        model.translate(["日本語の文章です", "1/2/07"])
    assert "57% of the 14 source tokens are unknown to the model's vocabulary (<unk>)" in caplog.text


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
