"""The Cronos object on trained models: evaluate, translate alone and in padded batches, save and
load, and the warnings about inputs (too long, mostly unknown)."""
from __future__ import annotations

import math

import pytest
import torch

import cronos

SOURCES = ["Thu 26 Nov 2026", "1/2/07", "Mittwoch, 3. März 1999", "the 21st of June 1950", "2000 01 01"]
FAMILIES = ["rnn", "transformer"]


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


def test_the_module_level_functions_take_every_option_of_the_methods(trained_models, tmp_path):
    model = trained_models["rnn"]
    path = model.save(tmp_path / "rnn.pt")
    sources = ["1/2/07", "Thu 26 Nov 2026"]
    assert cronos.translate(path, sources, beam_size=3, n_best=2) == model.translate(sources, beam_size=3, n_best=2)
    assert cronos.sample(path, sources, top_k=3, seed=5) == model.sample(sources, top_k=3, seed=5)
    pairs = [("1/2/07", "2007-02-01")]
    assert cronos.score(path, pairs, batch_size=1) == model.score(pairs, batch_size=1)


@pytest.mark.parametrize("family", ["rnn", "transformer"])
def test_a_translator_takes_the_examples_its_codec_made_of_the_texts(trained_models, family):
    """A front end that has tokenised the texts hands over the examples: the results are those of
    the texts, and the texts are not tokenised again."""
    model = trained_models[family]
    sources, targets = ["1/2/07", "Thu 26 Nov 2026", "5 May 1999"], ["2007-02-01", "2026-11-26", "1999-05-05"]
    examples, pairs = model.codec.encode(sources), model.codec.encode(sources, targets)
    assert model.translate(examples, beam_size=3, n_best=2) == model.translate(sources, beam_size=3, n_best=2)
    assert model.sample(examples, top_k=3) == model.sample(sources, top_k=3)
    assert model.score(pairs, per_token=True) == model.score(list(zip(sources, targets)), per_token=True)
    with pytest.raises(ValueError, match="scoring needs a target for every source"):
        model.score(examples)


def test_lines_are_encoded_once_each_and_an_empty_one_is_none(trained_models, monkeypatch):
    model = trained_models["rnn"]
    read = []
    tokenize = model.codec.src_tokenizer.tokenize
    monkeypatch.setattr(model.codec.src_tokenizer, "tokenize", lambda text: read.append(text) or tokenize(text))
    lines = ["1/2/07", "", "   ", "5 May 1999"]
    examples = model.codec.encode_lines(lines)
    assert read == lines  # each line tokenised once
    assert [example is None for example in examples] == [False, True, True, False]
    assert examples[0].src == model.codec.encode(["1/2/07"])[0].src
