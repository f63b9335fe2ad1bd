"""Decoding that a translator controls: a forced start (prefix) per sentence, a minimum length, no
repeated n-grams, the length penalty's form and the coverage penalty; through the API and the
command line, with bad input one clear line.  That each leaves an output independent of its
batch mates, bit for bit, is P0's (tests/test_batch_invariance.py)."""
from __future__ import annotations

import math

import pytest
import torch

import cronos
from cronos.decoding.controls import LengthPenalty, Ranking, StepRules, Guide
from helpers import run_cli, tiny_config

SOURCES = ["1/2/07", "Thu 26 Nov 2026", "5 May 1999", "12 December 1850"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("controls")
    return cronos.fit(cronos.load_config(tiny_config(folder, training={"epochs": 1})))


def repeats(tokens: list[str], n: int) -> bool:
    grams = [tuple(tokens[i: i + n]) for i in range(len(tokens) - n + 1)]
    return len(grams) != len(set(grams))


@pytest.mark.parametrize("beam", [1, 3])
def test_each_output_starts_with_its_prefix_and_its_limit_counts_from_it(model, beam):
    prefixes = ["1850-12-12-", None, "19", "2026-11-26-2026-11-26"]
    found = model.translate(SOURCES, beam_size=beam, prefixes=prefixes, n_best=1,
                            decoding={"max_length_ratio": 0.0, "max_length_offset": 3})
    for (hypothesis,), prefix in zip(found, prefixes):
        assert hypothesis.text.startswith(prefix or "")
        assert len(hypothesis.text) <= len(prefix or "") + 3  # characters: the limit counts from the prefix
    free = model.translate(SOURCES[1:2], beam_size=beam, n_best=1,
                           decoding={"max_length_ratio": 0.0, "max_length_offset": 3})
    assert found[1] == free[0]  # a sentence without a prefix decodes as it would alone
    # a forced token has probability 1 under the search: log_prob is the rest's, as the model gives it
    forced = model.score([(SOURCES[0], found[0][0].text)], per_token=True)[0].token_log_probs
    ended = len(found[0][0].text) < len(prefixes[0]) + 3  # with <eos>, which counts
    rest = forced[len(prefixes[0]):] if ended else forced[len(prefixes[0]):-1]
    assert found[0][0].log_prob == pytest.approx(sum(rest), abs=1e-4)


@pytest.mark.parametrize("beam", [1, 2, 5])
def test_every_output_holds_its_constraints_and_the_others_decode_as_without_them(model, beam):
    constraints = [["1999", "-07"], [], ["12-"], ["555", "2026"]]  # "555": a phrase no date holds
    found = model.translate(SOURCES, beam_size=beam, constraints=constraints)
    for text, phrases in zip(found, constraints):
        assert all(phrase in text for phrase in phrases), (text, phrases)
    assert found[1] == model.translate(SOURCES[1:2], beam_size=beam)[0]  # no constraints: plain beam search
    both = model.translate(SOURCES, beam_size=beam, constraints=constraints, prefixes=["2007", None, None, "20"])
    assert both[0].startswith("2007") and "1999" in both[0] and both[3].startswith("20") and "555" in both[3]


def test_constraints_rank_complete_outputs_first_and_fall_back_when_the_limit_leaves_no_room(model):
    long_phrase = "1850-12-12-1850-12-12"
    found = model.translate(SOURCES[:1], beam_size=3, n_best=3, constraints=[[long_phrase]],
                            decoding={"max_length_ratio": 0.0, "max_length_offset": 1})
    assert long_phrase in found[0][0].text  # the limit grows by the constraint's tokens: it fits
    scores = [h.score for h in found[0] if long_phrase in h.text]
    assert scores == sorted(scores, reverse=True)


def test_a_sampled_output_starts_with_its_prefix_too(model):
    drawn = model.sample(SOURCES, prefixes=["2007-", None, "1999", None], seed=5)
    assert drawn[0].startswith("2007-") and drawn[2].startswith("1999")


@pytest.mark.parametrize("beam", [1, 4])
def test_min_length_and_no_repeated_ngrams_hold_in_every_output(model, beam):
    free = model.translate(SOURCES, beam_size=beam)
    assert any(repeats(list(text), 2) for text in free)  # the untrained model repeats itself
    controlled = model.translate(SOURCES, beam_size=beam, decoding={"min_length": 14, "no_repeat_ngram_size": 2})
    assert all(len(text) >= 14 and not repeats(list(text), 2) for text in controlled), controlled


def test_the_length_penalties_and_the_coverage_penalty_rank_as_their_formulas_say():
    assert LengthPenalty(0.6, "power")(10) == 10 ** 0.6
    assert LengthPenalty(0.6, "gnmt")(10) == (15 / 6) ** 0.6 and LengthPenalty(0.6, "none")(10) == 1.0
    attention = torch.tensor([[0.5, 0.25, 0.25, 0.0], [0.5, 0.5, 0.0, 0.0]])  # [T, S]: 3 real positions, 1 padded
    ranking = Ranking(LengthPenalty(1.0, "power"), coverage=0.2)
    expected = -6.0 / 3 + 0.2 * (math.log(1.0) + math.log(0.75) + math.log(0.25))
    assert ranking.score(-6.0, 3, attention, src_length=3) == pytest.approx(expected)  # the padded 0 never enters
    assert ranking.score(-6.0, 3, attention, src_length=4) < expected - 10  # counted, the padded 0 would dominate


def test_no_repeat_blocks_exactly_the_tokens_that_would_repeat_an_ngram():
    rules = StepRules([Guide()], no_repeat_ngram_size=3)
    history = torch.tensor([[5, 6, 7, 5, 6]])  # "5 6" was followed by 7: 7 is blocked, nothing else
    blocked = rules.blocked([5], [0], history, 10)
    assert blocked[0].nonzero().flatten().tolist() == [7]
    assert StepRules([Guide((4, 4))], min_length=3).blocked([1], [0], history[:, :1], 10)[0].nonzero().flatten().tolist() \
        == [i for i in range(10) if i != 4]  # inside the prefix only its token; the prefix wins over min_length


def test_the_gnmt_penalty_ranks_the_same_hypotheses_by_its_own_scores(model):
    plain = model.translate(SOURCES, beam_size=4, n_best=4, decoding={"length_penalty_form": "none"})
    gnmt = model.translate(SOURCES, beam_size=4, n_best=4, decoding={"length_penalty_form": "gnmt",
                                                                     "length_penalty": 0.6})
    assert all(h.score == h.log_prob for found in plain for h in found)  # none: the log-probability itself
    assert any(h.score != h.log_prob for found in gnmt for h in found)
    assert all([h.score for h in found] == sorted((h.score for h in found), reverse=True) for found in gnmt)


@pytest.mark.parametrize("changes, message", [
    ({"min_length": -1}, "decoding.min_length: expected a value >= 0, got -1"),
    ({"length_penalty_form": "average"}, "decoding.length_penalty_form"),
    ({"no_repeat": 3}, "decoding.no_repeat: unknown key"),
])
def test_a_bad_control_is_one_clear_error(model, changes, message):
    with pytest.raises(cronos.ConfigError, match=message):
        model.translate(SOURCES, decoding=changes)


@pytest.mark.parametrize("prefixes, message", [
    (["", None, None, None], "prefix 1 is empty \\(no text, or only white space\\)"),
    ([None, "2026-Ж", None, None], "prefix 2 holds 'Ж', which the model's target vocabulary lacks"),
    (["2007"], "give one of the prefixes per source \\(None or \\[\\] for none\\): 4 sources, 1 prefixes"),
    ("2007", "give one of the prefixes per source \\(None or \\[\\] for none\\): 4 sources, a string prefixes"),
])
def test_a_bad_prefix_is_one_clear_error(model, prefixes, message):
    with pytest.raises(ValueError, match=message):
        model.translate(SOURCES, prefixes=prefixes)


@pytest.mark.parametrize("constraints, message", [
    ([["2026"], [], [], ["Ж"]], "constraint 1 of source 4 holds 'Ж', which the model's target vocabulary lacks"),
    ([["2026"], [], [], ["  "]], "constraint 1 of source 4 is empty"),
    ([["2026"]], "give one of the constraint lists per source \\(None or \\[\\] for none\\): 4 sources, 1"),
    (["2026", [], [], []], "give each source's constraints as a list of phrases"),
])
def test_a_bad_constraint_is_one_clear_error(model, constraints, message):
    with pytest.raises(ValueError, match=message):
        model.translate(SOURCES, constraints=constraints)


def test_the_command_line_takes_prefixes_line_by_line_and_the_controls(model, tmp_path, capsys, monkeypatch):
    best = str(tmp_path / "model.pt")
    model.save(best)
    (tmp_path / "prefixes.txt").write_text("2007-\n\n\n1850\n", encoding="utf-8")
    lines = "\n".join([SOURCES[0], SOURCES[1], "", SOURCES[3]]) + "\n"
    code, out, err = run_cli(["translate", best, "--beam", "2", "--prefix", str(tmp_path / "prefixes.txt"),
                              "--no-repeat-ngram-size", "3", "--min-length", "5"], lines, capsys, monkeypatch)
    assert code == 0, err
    expected = model.translate([SOURCES[0], SOURCES[1], SOURCES[3]], beam_size=2, prefixes=["2007-", None, "1850"],
                               decoding={"no_repeat_ngram_size": 3, "min_length": 5})
    assert out.split("\n")[:-1] == [expected[0], expected[1], "", expected[2]]
    (tmp_path / "short.txt").write_text("2007-\n", encoding="utf-8")
    code, _, err = run_cli(["translate", best, "--prefix", str(tmp_path / "short.txt")], lines, capsys, monkeypatch)
    assert code == 2 and "--prefix: " in err and "short.txt has 1 lines and the input more" in err
    (tmp_path / "bad.txt").write_text("Ж\n", encoding="utf-8")
    code, _, err = run_cli(["translate", best, "--prefix", str(tmp_path / "bad.txt")], "1/2/07\n", capsys, monkeypatch)
    assert code == 2 and "bad.txt: the prefix of line 1 holds 'Ж', which the model's target vocabulary lacks" in err
    code, _, err = run_cli(["translate", best, "--min-length", "-2"], "1/2/07\n", capsys, monkeypatch)
    assert code == 2 and "--min-length: expected a value >= 0, got -2" in err
    code, _, err = run_cli(["translate", best, "--prefix", str(tmp_path / "missing.txt")], "1/2/07\n", capsys,
                           monkeypatch)
    assert code == 2 and "--prefix: " in err and "missing.txt" in err


def test_the_server_takes_prefixes_and_controls_and_refuses_bad_ones_in_one_line(model):
    pytest.importorskip("fastapi")
    from cronos.server import Limits, build_app
    from test_server_app import _run

    app = build_app(model, Limits())
    controls = {"no_repeat_ngram_size": 2, "min_length": 6, "length_penalty_form": "gnmt"}

    async def scenario(client):
        return [await client.post("/translate", json=body) for body in (
            {"text": SOURCES[:3], "prefix": ["2007-", None, "19"], "beam_size": 2, "decoding": controls},
            {"text": SOURCES[0], "prefix": "2007-", "sampling": {"seed": 3}},
            {"text": SOURCES[:2], "prefix": "2007-"},
            {"text": SOURCES[:2], "prefix": ["Ж", None]},
            {"text": SOURCES[0], "decoding": {"min_length": -1}},
            {"text": SOURCES[0], "decoding": {"no_repeat": 2}},
            {"text": SOURCES[:2], "constraints": [["1999"], []], "beam_size": 3},
            {"text": SOURCES[0], "constraints": ["19", "Ж"], "beam_size": 3},
            {"text": SOURCES[:2], "constraints": ["1999"]},
            {"text": SOURCES[0], "constraints": ["1999"], "sampling": {"seed": 1}},
            {"text": SOURCES[:2], "prefix": [None, "2" * 2001]},
            {"text": SOURCES[0], "constraints": ["1" * 1000, "2" * 1001]})]

    (searched, sampled, unpaired, unwritable, negative, unknown, constrained, bad, flat, drawn, long_prefix,
     long_terms) = _run(app, scenario)
    assert long_prefix.status_code == 413 and "the prefix of text 1: 2001 characters; at most 2000" in \
        long_prefix.json()["error"]  # bounded as a text is, before it queues
    assert long_terms.status_code == 413 and "the constraints of text 0: 2001 characters" in long_terms.json()["error"]
    assert constrained.json() == {"translations": model.translate(SOURCES[:2], beam_size=3, constraints=[["1999"], []])}
    assert bad.status_code == 422 and "constraint 1 of text 0 holds 'Ж'" in bad.json()["error"]
    assert flat.status_code == 422 and "constraints: send a list of phrases with one text" in flat.json()["error"]
    assert drawn.status_code == 422 and "constraints are met by beam search" in drawn.json()["error"]
    assert searched.json() == {"translations": model.translate(SOURCES[:3], beam_size=2, prefixes=["2007-", None, "19"],
                                                               decoding=controls)}
    assert sampled.json() == {"translations": model.sample(SOURCES[:1], seed=3, prefixes=["2007-"])[0]}
    assert unpaired.status_code == 422 and "prefix: send one prefix with one text, or a list" in unpaired.json()["error"]
    assert unwritable.status_code == 422 and "prefix 0 holds 'Ж'" in unwritable.json()["error"]
    assert negative.status_code == 422 and "min_length" in negative.json()["error"]
    assert unknown.status_code == 422 and "no_repeat" in unknown.json()["error"]


def test_the_command_line_takes_constraints_as_json_lines(model, tmp_path, capsys, monkeypatch):
    best = str(tmp_path / "model.pt")
    model.save(best)
    (tmp_path / "constraints.jsonl").write_text('["1999", "-07"]\n\n["555"]\n', encoding="utf-8")
    lines = "\n".join(SOURCES[:3]) + "\n"
    code, out, err = run_cli(["translate", best, "--beam", "3", "--constraints", str(tmp_path / "constraints.jsonl")],
                             lines, capsys, monkeypatch)
    assert code == 0, err
    assert out.split("\n")[:-1] == model.translate(SOURCES[:3], beam_size=3, constraints=[["1999", "-07"], [], ["555"]])
    for text, message in (("der Hund\n", "line 1 is not a JSON list of phrases"),
                          ('["19", "Ж"]\n', "phrase 2 of line 1 holds 'Ж'")):
        (tmp_path / "bad.jsonl").write_text(text, encoding="utf-8")
        code, _, err = run_cli(["translate", best, "--constraints", str(tmp_path / "bad.jsonl")], "1/2/07\n", capsys,
                               monkeypatch)
        assert code == 2 and "--constraints: " in err and message in err, err
    code, _, err = run_cli(["translate", best, "--constraints", str(tmp_path / "constraints.jsonl"), "--sampling",
                            "all"], lines, capsys, monkeypatch)
    assert code == 2 and "--constraints: constraints are met by beam search, and samples are drawn" in err


def test_word_alignment_pairs_each_output_token_with_its_most_attended_real_source_word():
    from cronos.decoding.alignment import moses, word_alignment

    attention = torch.tensor([[0.1, 0.7, 0.2, 0.0, 0.0],    # [T, S]: 3 real source tokens, 2 padded
                              [0.6, 0.1, 0.3, 0.0, 0.0],
                              [0.2, 0.2, 0.6, 0.0, 0.0]])
    pairs = word_alignment(attention, source_words=[None, 0, 1], output_words=[0, 1, 1])  # a tag, two words
    assert pairs == [(0, 0), (1, 1)] and moses(pairs) == "0-0 1-1"  # the tag's row aligns nothing


def test_each_tokenizer_says_which_word_each_token_belongs_to(tmp_path):
    from cronos.data.tokenizers import CharTokenizer, WordTokenizer
    from cronos.data import SubwordModels

    assert CharTokenizer().words(list("ab  c")) == [0, 0, None, None, 1]
    assert WordTokenizer().words(["hi", ",", "you"]) == [0, 1, 2]
    pieces = SubwordModels.train(["der Hund läuft im Park"] * 50, ["the dog runs in the park"] * 50,
                                 cronos.config.SentencePieceConfig(vocab_size=30, model_type="bpe"), 0)
    tokenizer = pieces.tokenizers(False)[0]
    tokens = tokenizer.tokenize("der Hund läuft")
    words = tokenizer.words(tokens)
    assert words[0] == 0 and words[-1] == 2 and words == sorted(words)
    assert all(token.startswith("\u2581") == (i == 0 or words[i] != words[i - 1]) for i, token in enumerate(tokens))


def test_alignments_through_the_api_the_command_line_and_the_server(model, tmp_path, capsys, monkeypatch):
    from cronos.decoding.alignment import moses

    found = model.translate(SOURCES, beam_size=2, alignments=True)
    assert all(len(hypotheses) == 1 and hypotheses[0].alignment for hypotheses in found)
    assert [h[0].text for h in found] == model.translate(SOURCES, beam_size=2)
    source_words = [len(source.split()) for source in SOURCES]
    assert all(i < words for h, words in zip(found, source_words) for i, _ in h[0].alignment)
    best = str(tmp_path / "model.pt")
    model.save(best)
    code, out, err = run_cli(["translate", best, "--beam", "2", "--alignments"], "\n".join(SOURCES) + "\n", capsys,
                             monkeypatch)
    assert code == 0 and out.splitlines() == [f"{h[0].text}\t{moses(h[0].alignment)}" for h in found], err
    pytest.importorskip("fastapi")
    from cronos.server import Limits, build_app
    from test_server_app import _run

    async def scenario(client):
        return (await client.post("/translate", json={"text": SOURCES[:2], "beam_size": 2, "alignments": True})).json()
    assert _run(build_app(model, Limits()), scenario) == {"translations": [
        {"text": h[0].text, "alignment": moses(h[0].alignment)} for h in found[:2]]}


def test_int8_models_and_ensembles_take_the_controls_too(model, tmp_path):
    path = model.save(tmp_path / "model.pt")
    int8 = cronos.Translator.load(path, device="cpu", quantize="int8")
    ensemble = cronos.Cronos.ensemble([model, int8])
    for translator in (int8, ensemble):
        found = translator.translate(SOURCES, beam_size=3, prefixes=["2007", None, None, None],
                                     constraints=[[], ["555"], [], []], decoding={"no_repeat_ngram_size": 3},
                                     alignments=True)
        assert found[0][0].text.startswith("2007") and "555" in found[1][0].text and found[2][0].alignment
        assert [h[0].text for h in found] == [translator.translate([s], beam_size=3, prefixes=[p], constraints=[c],
                                                                   decoding={"no_repeat_ngram_size": 3})[0]
                                              for s, p, c in zip(SOURCES, ["2007", None, None, None],
                                                                 [[], ["555"], [], []])]
