"""Ensembles (``Cronos.ensemble``, ``cronos translate A.pt B.pt``): each step from the mean of the
members' probabilities, in every way of decoding, independent of batch mates; incompatible members
and training or saving an ensemble are refused."""
from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

import cronos
from cronos.data import Vocabulary
from helpers import ROOT
from test_nbest import MIXED
from test_scoring import PAIRS


def test_an_ensemble_of_a_model_with_itself_is_the_model(trained_models):
    model = trained_models["transformer"]
    twice = cronos.Cronos.ensemble([model, model])
    assert twice.translate(MIXED, beam_size=3) == model.translate(MIXED, beam_size=3)
    for mine, theirs in zip(twice.translate(MIXED, beam_size=3, n_best=2), model.translate(MIXED, beam_size=3, n_best=2)):
        assert [h.text for h in mine] == [h.text for h in theirs]
        assert [h.log_prob for h in mine] == pytest.approx([h.log_prob for h in theirs], abs=1e-5)


def test_each_token_gets_the_log_of_the_members_mean_probability(trained_models):
    rnn, transformer = trained_models["rnn"], trained_models["transformer"]  # same data, same vocabularies
    ensemble = cronos.Cronos.ensemble([rnn, transformer])
    for mixed, first, second in zip(ensemble.score(PAIRS, per_token=True), rnn.score(PAIRS, per_token=True),
                                    transformer.score(PAIRS, per_token=True)):
        expected = [math.log((math.exp(a) + math.exp(b)) / 2)
                    for a, b in zip(first.token_log_probs, second.token_log_probs)]
        assert mixed.token_log_probs == pytest.approx(expected, abs=1e-5)
    explanation, = ensemble.explain(["Thu 26 Nov 2026"], ["2026-11-26"])
    alone = [m.explain(["Thu 26 Nov 2026"], ["2026-11-26"])[0].attention for m in (rnn, transformer)]
    torch.testing.assert_close(explanation.attention, (alone[0] + alone[1]) / 2, atol=1e-6, rtol=0)


@pytest.mark.parametrize("beam", [1, 3])
def test_an_ensembles_outputs_do_not_depend_on_batch_mates(trained_models, beam):
    ensemble = cronos.Cronos.ensemble([trained_models["rnn"], trained_models["transformer"]])
    together = ensemble.translate(MIXED, beam_size=beam)
    assert [ensemble.translate([source], beam_size=beam)[0] for source in MIXED] == together
    assert ensemble.translate(MIXED, beam_size=beam, batch_size=1) == together


def test_members_that_read_or_write_text_differently_are_refused(trained_models):
    model = trained_models["rnn"]
    other = cronos.Cronos(model.config, Vocabulary(["<pad>", "<unk>", "<bos>", "<eos>", "a"]), model.codec.tgt_vocab)
    with pytest.raises(ValueError, match=r"ensemble member 2 does not read and write text as member 1 does: its "
                                         r"source vocabulary \(5 tokens\)"):
        cronos.Cronos.ensemble([model, other])
    with pytest.raises(ValueError, match="at least two members"):
        cronos.Cronos.ensemble([model])


def test_an_ensemble_is_neither_trained_nor_saved(trained_models, tmp_path):
    ensemble = cronos.Cronos.ensemble([trained_models["rnn"], trained_models["rnn"]])
    with pytest.raises(TypeError, match="an ensemble decodes only; it is not saved"):
        ensemble.save(tmp_path / "ensemble.pt")
    with pytest.raises(TypeError, match="it is not trained"):
        ensemble.fit()


def test_cronos_translate_with_several_checkpoints_decodes_with_the_ensemble(trained_models, tmp_path):
    rnn, transformer = trained_models["rnn"], trained_models["transformer"]
    paths = [str(rnn.save(tmp_path / "rnn.pt")), str(transformer.save(tmp_path / "transformer.pt"))]
    result = subprocess.run([sys.executable, "-m", "cronos", "translate", *paths, "--beam", "3"],
                            input="\n".join(MIXED) + "\n", capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == cronos.Cronos.ensemble([rnn, transformer]).translate(MIXED, beam_size=3)
