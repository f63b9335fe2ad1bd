"""Sampling (``Cronos.sample``, ``cronos translate --sampling``): reproducible for a seed, the same
for an input whatever its batch mates, position or batch size, and filtered as asked."""
from __future__ import annotations


import pytest
import torch

from cronos.decoding.search import Sampling
from helpers import run_cli
from test_nbest import MIXED


@pytest.mark.parametrize("family", ["rnn", "transformer"])
def test_samples_are_reproducible_per_seed_and_vary_between_seeds(trained_models, family):
    model = trained_models[family]
    first = model.sample(MIXED, temperature=2.0, seed=1)
    assert model.sample(MIXED, temperature=2.0, seed=1) == first
    assert model.sample(MIXED, temperature=2.0, seed=2) != first


@pytest.mark.parametrize("family", ["rnn", "transformer"])
def test_an_input_samples_the_same_alone_in_a_mixed_batch_in_any_position_and_at_batch_size_1(trained_models,
                                                                                               family):
    model = trained_models[family]
    together = model.sample(MIXED, top_p=0.95, temperature=1.5, seed=7, batch_size=8)
    assert model.sample(MIXED, top_p=0.95, temperature=1.5, seed=7, batch_size=1) == together
    assert model.sample(MIXED[::-1], top_p=0.95, temperature=1.5, seed=7)[::-1] == together
    assert [model.sample([source], top_p=0.95, temperature=1.5, seed=7)[0] for source in MIXED] == together


def test_top_k_1_and_a_tiny_nucleus_are_greedy(trained_models):
    model = trained_models["transformer"]
    greedy = model.translate(MIXED, beam_size=1)
    assert model.sample(MIXED, top_k=1, temperature=3.0, seed=5) == greedy
    assert model.sample(MIXED, top_p=1e-6, seed=5) == greedy


def test_the_filters_keep_the_top_k_or_the_nucleus_and_renormalise():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    top_2 = Sampling(top_k=2).probabilities(logits)
    torch.testing.assert_close(top_2, torch.tensor([[0.625, 0.375, 0.0, 0.0]]))
    nucleus = Sampling(top_p=0.7).probabilities(logits)  # 0.5 < 0.7, 0.5 + 0.3 reaches it: two tokens
    assert torch.equal(nucleus > 0, torch.tensor([[True, True, False, False]]))
    hot = Sampling(temperature=2.0).probabilities(logits)
    torch.testing.assert_close(hot, torch.softmax(logits / 2.0, dim=-1))


@pytest.mark.parametrize("arguments, message", [({"top_k": 0}, "top_k must be at least 1"),
                                                ({"top_p": 1.5}, r"top_p must be in \(0, 1\]"),
                                                ({"temperature": 0.0}, "temperature must be a positive number"),
                                                ({"top_k": 2, "top_p": 0.5}, "top_k or with top_p, not both")])
def test_bad_sampling_settings_are_errors(arguments, message):
    with pytest.raises(ValueError, match=message):
        Sampling(**arguments)


def test_cronos_translate_samples_what_the_api_samples(trained_models, tmp_path, capsys, monkeypatch):
    model = trained_models["rnn"]
    checkpoint = str(model.save(tmp_path / "model.pt"))
    code, out, err = run_cli(["translate", checkpoint, "--sampling", "top_k=3", "--temperature", "1.5", "--seed", "11"],
                             "\n".join(MIXED) + "\n", capsys, monkeypatch)
    assert code == 0, err
    assert out.splitlines() == model.sample(MIXED, top_k=3, temperature=1.5, seed=11)
    code, _, err = run_cli(["translate", checkpoint, "--sampling", "top_p=2"], "1/2/07\n", capsys, monkeypatch)
    assert code == 2 and "top_p must be in (0, 1]" in err


def test_a_tiny_temperature_samples_the_most_likely_output(trained_models):
    """A temperature of 1e-300 (under float32's smallest number) leaves the most likely token alone:
    sampling becomes greedy search, not a NaN distribution."""
    model = trained_models["rnn"]
    sources = ["1/2/07", "Thu 26 Nov 2026"]
    assert model.sample(sources, temperature=1e-300) == model.translate(sources, beam_size=1)
