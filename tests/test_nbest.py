"""n-best lists (``translate(..., n_best=m)``, ``cronos translate --n-best M``, ``--scores``): the
first hypothesis is the 1-best output, lists are ranked and scored, and a list does not depend on
its batch mates or the batch size."""
from __future__ import annotations

import subprocess

import pytest

from helpers import run_cli
from test_scoring import SOURCES

MIXED = SOURCES + ["12.03.1987", "Sunday 1 January 2023", "31/12/99"]


@pytest.mark.parametrize("family", ["rnn", "transformer"])
def test_the_first_of_an_n_best_list_is_the_1_best_and_the_list_is_ranked(trained_models, family):
    model = trained_models[family]
    lists = model.translate(MIXED, beam_size=4, n_best=3)
    assert [hypotheses[0].text for hypotheses in lists] == model.translate(MIXED, beam_size=4)
    penalty = model.config.decoding.length_penalty
    for hypotheses in lists:
        assert len(hypotheses) == 3 and len({h.text for h in hypotheses}) == 3
        assert [h.score for h in hypotheses] == sorted((h.score for h in hypotheses), reverse=True)
        for h in hypotheses:
            tokens = len(model.codec.target_tokens(h.text)) + 1  # char tokens + <eos>
            assert h.score == pytest.approx(h.log_prob / tokens ** penalty, rel=1e-5)


@pytest.mark.parametrize("family", ["rnn", "transformer"])
@pytest.mark.parametrize("beam", [1, 4])
def test_an_n_best_list_is_the_same_alone_in_a_mixed_batch_and_at_batch_size_1(trained_models, family, beam):
    model = trained_models[family]
    n = min(beam, 3)
    together = model.translate(MIXED, beam_size=beam, n_best=n, batch_size=8)
    for one_at_a_time in (model.translate(MIXED, beam_size=beam, n_best=n, batch_size=1),
                          [model.translate([source], beam_size=beam, n_best=n)[0] for source in MIXED]):
        for mine, theirs in zip(together, one_at_a_time):
            assert [h.text for h in mine] == [h.text for h in theirs]
            assert [h.score for h in mine] == pytest.approx([h.score for h in theirs], abs=1e-5)


def test_more_hypotheses_than_beams_is_an_error(trained_models):
    with pytest.raises(ValueError, match=r"n_best must be between 1 and the beam size \(2\), got 3"):
        trained_models["rnn"].translate(["1/2/07"], beam_size=2, n_best=3)


def test_cronos_translate_writes_n_best_and_scored_lines(trained_models, tmp_path, capsys, monkeypatch):
    model = trained_models["transformer"]
    checkpoint = model.save(tmp_path / "model.pt")

    def translate(*flags: str) -> subprocess.CompletedProcess:
        code, out, err = run_cli(["translate", str(checkpoint), *flags], "1/2/07\n\nThu 26 Nov 2026\n", capsys,
                                 monkeypatch)
        return subprocess.CompletedProcess([], code, out, err)

    result = translate("--n-best", "2", "--beam", "3")
    assert result.returncode == 0, result.stderr
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    assert [int(index) for index, _, _ in lines] == [0, 0, 2, 2]  # the empty line 1 has no hypotheses
    expected = model.translate(["1/2/07", "Thu 26 Nov 2026"], beam_size=3, n_best=2)
    assert [text for _, _, text in lines] == [h.text for hypotheses in expected for h in hypotheses]
    assert [float(score) for _, score, _ in lines] == pytest.approx(
        [h.score for hypotheses in expected for h in hypotheses], abs=1e-5)
    scored = translate("--scores", "--beam", "3")
    assert scored.returncode == 0, scored.stderr
    assert scored.stdout.splitlines()[1] == "" and scored.stdout.splitlines()[2].split("\t")[1] == expected[1][0].text
    refused = translate("--n-best", "4", "--beam", "3")
    assert refused.returncode == 2 and "--n-best: 4 hypotheses need a beam of at least 4" in refused.stderr


def test_one_output_has_one_score_whichever_search_found_it(trained_models):
    """``score`` is the log-prob over length ** length_penalty in greedy search as in beam search:
    where both find the same output, they give it the same score and log-prob."""
    model = trained_models["rnn"]
    sources = ["Thu 26 Nov 2026", "1/2/07", "the 21st of June 1950", "5 May 1999"]
    greedy = model.translate(sources, beam_size=1, n_best=1)
    beam = model.translate(sources, beam_size=5, n_best=5)
    compared = 0
    for (found,), candidates in zip(greedy, beam):
        same = [c for c in candidates if c.text == found.text]
        if same:
            compared += 1
            assert found.score == pytest.approx(same[0].score, abs=1e-4)
            assert found.log_prob == pytest.approx(same[0].log_prob, abs=1e-4)
            length = len(model.codec.target_tokens(found.text)) + 1  # characters, and <eos>
            assert found.score == pytest.approx(found.log_prob / length ** model.config.decoding.length_penalty)
    assert compared >= 2
