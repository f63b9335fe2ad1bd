"""Scoring pairs (``Cronos.score``, ``cronos score``): a pair's log-probability is its own, whatever
its batch, and it is what beam and greedy search report for the same output."""
from __future__ import annotations

import dataclasses

import pytest

from cronos.modules.network import evaluating
from cronos.decoding.scoring import score_examples
from cronos.decoding.search import Beam, max_output_lengths, search_batch
from cronos.data import collate
from helpers import DATES, run_cli

SOURCES = ["Thu 26 Nov 2026", "1/2/07", "Mittwoch, 3. März 1999", "the 21st of June 1950", "2026-11-27"]
PAIRS = [(line.split("\t")[0], line.split("\t")[1])
         for line in (DATES / "valid.tsv").read_text(encoding="utf-8").splitlines()[:12]]


@pytest.mark.parametrize("family", ["rnn", "transformer"])
@pytest.mark.parametrize("beam", [1, 3])
def test_the_score_of_a_decoded_output_is_the_log_prob_search_reported(trained_models, family, beam):
    model = trained_models[family]
    examples = model.codec.encode(SOURCES)
    batch = collate(examples)
    options = dataclasses.replace(model.config.decoding, length_penalty=0.7)
    with evaluating(model.network):  # dropout off, as decode and score_examples have it
        hypotheses = [found[0] for found in search_batch(model.network, batch, Beam(beam), options)]
    forced = [dataclasses.replace(e, tgt=tuple(h.tokens), tgt_length=len(h.tokens) + 1)
              for e, h in zip(examples, hypotheses)]
    scores = score_examples(model.network, forced, batch_size=2)
    limits = max_output_lengths(batch.src_lengths, options.max_length_ratio, options.max_length_offset).tolist()
    ended = [(h, s) for h, s, limit in zip(hypotheses, scores, limits) if len(h.tokens) < limit]
    assert len(ended) >= 3  # outputs that ended with <eos>, as the scored pairs do (the others were cut)
    for hypothesis, score in ended:
        reported = hypothesis.score * score.tokens ** 0.7  # every search ranks by sum / length**lp
        assert score.log_prob == pytest.approx(reported, abs=1e-4)
        assert score.log_prob == pytest.approx(hypothesis.log_prob, abs=1e-4)


@pytest.mark.parametrize("family", ["rnn", "transformer"])
def test_a_pair_scores_the_same_alone_in_a_mixed_batch_and_at_any_batch_size(trained_models, family):
    model = trained_models[family]
    together = model.score(PAIRS, batch_size=12)
    for batch_size in (1, 5):
        for one, other in zip(together, model.score(PAIRS, batch_size=batch_size)):
            assert one.log_prob == pytest.approx(other.log_prob, abs=1e-5) and one.tokens == other.tokens
    for pair, score in zip(PAIRS[:4], together):
        alone, = model.score([pair])
        assert alone.log_prob == pytest.approx(score.log_prob, abs=1e-5)


def test_per_token_log_probs_sum_to_the_pair_and_count_the_eos(trained_models):
    model = trained_models["rnn"]
    for (source, target), score in zip(PAIRS, model.score(PAIRS, per_token=True)):
        assert score.tokens == len(target) + 1 == len(score.token_log_probs)  # char tokens + <eos>
        assert sum(score.token_log_probs) == pytest.approx(score.log_prob, abs=1e-6)
        assert all(p <= 0 for p in score.token_log_probs)
        assert score.mean_log_prob == pytest.approx(score.log_prob / score.tokens)
    assert model.score(PAIRS)[0].token_log_probs is None


def test_scoring_needs_targets(trained_models):
    with pytest.raises(ValueError, match="scoring needs a target for every source"):
        score_examples(trained_models["rnn"].network, trained_models["rnn"].codec.encode(SOURCES), 4)


def test_cronos_score_writes_a_line_per_pair(trained_models, tmp_path, capsys, monkeypatch):
    model = trained_models["transformer"]
    checkpoint = model.save(tmp_path / "model.pt")
    data = tmp_path / "pairs.tsv"
    data.write_text("".join(f"{s}\t{t}\n" for s, t in PAIRS), encoding="utf-8")
    code, out, err = run_cli(["score", str(checkpoint), "--data", str(data), "--per-token", "--batch-size", "3"], "",
                             capsys, monkeypatch)
    assert code == 0, err
    lines = [line.split("\t") for line in out.splitlines()]
    assert [int(fields[0]) for fields in lines] == list(range(len(PAIRS)))
    for fields, score in zip(lines, model.score(PAIRS)):
        assert float(fields[1]) == pytest.approx(score.log_prob, abs=1e-5) and int(fields[3]) == score.tokens
        assert len(fields[4].split()) == score.tokens
