"""The weights' moving average (``training.ema_decay``): its rule, what validation, best.pt and the
trained model hold, an exact resume, and padding still inert on the averaged weights."""
from __future__ import annotations

import json

import pytest
import torch

import cronos
from cronos.data import PAD_INDEX
from cronos.training.ema import ExponentialAverage
from cronos.training.trainer import Trainer
from helpers import stopping_at, tiny_config


def test_the_average_follows_its_rule_and_is_swapped_in_and_out_exactly():
    torch.manual_seed(0)
    network = torch.nn.Linear(3, 2)
    average = ExponentialAverage(network, decay=0.5)
    expected = [p.detach().clone() for p in network.parameters()]
    for update in range(1, 5):
        with torch.no_grad():
            for p in network.parameters():
                p.add_(torch.randn_like(p))
        average.update()
        decay = min(0.5, (1 + update) / (10 + update))
        expected = [decay * e + (1 - decay) * p.detach() for e, p in zip(expected, network.parameters())]
    assert all(torch.allclose(s, e, atol=1e-6) for s, e in zip(average.shadow, expected))
    own = [p.detach().clone() for p in network.parameters()]
    with average.in_use():
        assert all(torch.equal(p, s) for p, s in zip(network.parameters(), average.shadow))
    assert all(torch.equal(p, o) for p, o in zip(network.parameters(), own))  # back, to the bit
    restored = ExponentialAverage(network, decay=0.5)
    restored.load_state_dict(average.state_dict())
    assert restored.updates == 4 and all(torch.equal(a, b) for a, b in zip(restored.shadow, average.shadow))
    with pytest.raises(ValueError, match="does not fit"):
        ExponentialAverage(torch.nn.Linear(3, 3), 0.5).load_state_dict(average.state_dict())


@pytest.mark.parametrize("value", [0.0, 1.0, 1.5])
def test_a_decay_outside_0_and_1_is_refused(tmp_path, value):
    with pytest.raises(cronos.ConfigError, match="training.ema_decay"):
        cronos.load_config(tiny_config(tmp_path, training={"ema_decay": value}))


def averaged_run(folder, **training):
    config = cronos.load_config(tiny_config(folder, training={"epochs": 1, "ema_decay": 0.9, **training}))
    return cronos.fit(config), folder / "run"


def test_validation_best_pt_and_the_trained_model_hold_the_average_and_last_pt_both(tmp_path):
    model, run = averaged_run(tmp_path)
    best = torch.load(run / "best.pt", weights_only=True)["model"]
    last = torch.load(run / "last.pt", weights_only=True)
    names = [name for name, _ in model.network.named_parameters()]
    shadow = dict(zip(names, last["training"]["average"]["shadow"], strict=True))
    assert all(torch.equal(best[name], shadow[name]) for name in names)  # best.pt: the average
    assert any(not torch.equal(last["model"][name], shadow[name]) for name in names)  # last.pt: the weights too
    assert all(torch.equal(p, best[name]) for name, p in model.network.named_parameters())
    line = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert line["valid_loss"] == pytest.approx(model.evaluate("valid")["loss"], rel=1e-9)  # scored averaged
    for side in ("src_embedding.weight", "tgt_embedding.weight"):
        assert torch.equal(best[side][PAD_INDEX], torch.zeros_like(best[side][PAD_INDEX]))


def test_padding_is_inert_and_batching_changes_nothing_on_the_averaged_weights(tmp_path):
    model, _ = averaged_run(tmp_path)
    sources = ["1/2/07", "Thu 26 Nov 2026", "5 May 1999", "2000 01 01"]
    targets = ["2007-02-01", "2026-11-26", "1999-05-05", "2000-01-01"]
    assert model.translate(sources, beam_size=3) == [model.translate([s], beam_size=3)[0] for s in sources]
    alone = [model.score([pair])[0] for pair in zip(sources, targets)]
    assert model.score(list(zip(sources, targets))) == alone


def test_a_resumed_run_ends_with_the_average_of_an_uninterrupted_one(tmp_path, monkeypatch):
    _, straight = averaged_run(tmp_path / "straight", epochs=2)
    expected = torch.load(straight / "last.pt", weights_only=True)
    original = Trainer._train_step
    monkeypatch.setattr(Trainer, "_train_step", stopping_at(11))
    averaged_run(tmp_path / "resumed", epochs=2)
    monkeypatch.setattr(Trainer, "_train_step", original)
    _, resumed = averaged_run(tmp_path / "resumed", epochs=2, resume="auto")
    found = torch.load(resumed / "last.pt", weights_only=True)
    assert found["training"]["average"]["updates"] == expected["training"]["average"]["updates"] == 50
    for a, b in zip(found["training"]["average"]["shadow"], expected["training"]["average"]["shadow"], strict=True):
        assert torch.equal(a, b)
    assert all(torch.equal(found["model"][name], expected["model"][name]) for name in expected["model"])
