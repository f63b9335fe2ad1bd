"""Vocabulary shortlists: built from co-occurrence counts, saved and checked against the model, and
decoding that chooses among a sentence's candidates only."""
from __future__ import annotations

import pytest
import torch

import cronos
import cronos.shortlist
from cronos.data import Example
from cronos.data.vocab import EOS_INDEX, UNK_INDEX, Vocabulary
from cronos.shortlist import Shortlist, ShortlistError
from cronos.translator import Translator
from helpers import DATES, run_cli

SOURCES = [line.split("\t")[0] for line in (DATES / "test.tsv").read_text(encoding="utf-8").splitlines()[:40]]


def _example(index: int, src: list[int], tgt: list[int]) -> Example:
    return Example(index, tuple(src), tuple(tgt), len(src), len(tgt) + 1)


def test_each_source_token_keeps_the_target_tokens_of_its_pairs_best_first_by_dice():
    vocab = Vocabulary(["<pad>", "<unk>", "<bos>", "<eos>", "a", "b", "c", "x", "y", "z"])
    a, b, c, x, y, z = range(4, 10)
    examples = [_example(0, [a, a], [x, z]), _example(1, [a, b], [x, y]), _example(2, [b], [y, z]),
                _example(3, [c], [z])]
    shortlist = Shortlist.build(examples, vocab, vocab, per_source=2, frequent=1)
    # a: in pairs 0, 1 (counted once in pair 0); x: 0, 1 -> Dice 1; z: 0 -> 2/(2+3); y: 1 -> 2/(2+2)
    assert shortlist.by_source[a].tolist() == [x, y]
    assert shortlist.by_source[b].tolist() == [y, x]   # y: 2 of 2 -> 1; x and z: 1 shared -> 0.5 and 0.4
    assert shortlist.by_source[c].tolist() == [z, -1]  # c met z only
    assert shortlist.always.tolist() == sorted([UNK_INDEX, EOS_INDEX, z])  # z: the most frequent target
    assert shortlist.candidates([c, c]).tolist() == sorted([UNK_INDEX, EOS_INDEX, z])
    assert shortlist.candidates([a, c]).tolist() == sorted([UNK_INDEX, EOS_INDEX, x, y, z])


def test_counting_in_chunks_counts_what_counting_at_once_does(monkeypatch):
    vocab = Vocabulary(["<pad>", "<unk>", "<bos>", "<eos>", *"abcdefgh"])
    generator = torch.Generator().manual_seed(0)
    examples = [_example(i, torch.randint(4, 12, (5,), generator=generator).tolist(),
                         torch.randint(4, 12, (4,), generator=generator).tolist()) for i in range(50)]
    at_once = Shortlist.build(examples, vocab, vocab, per_source=3, frequent=2)
    monkeypatch.setattr(cronos.shortlist, "PAIRS_PER_CHUNK", 7)
    in_chunks = Shortlist.build(examples, vocab, vocab, per_source=3, frequent=2)
    assert torch.equal(at_once.by_source, in_chunks.by_source) and torch.equal(at_once.always, in_chunks.always)


@pytest.fixture(scope="module")
def transformer(trained_models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("shortlist")
    return trained_models["transformer"], str(trained_models["transformer"].save(folder / "model.pt"))


def _with(model, shortlist: Shortlist | None) -> Translator:
    return Translator(model.network, model.codec, model.config, shortlist)


def test_a_shortlist_of_every_token_decodes_as_the_whole_vocabulary(transformer):
    model, _ = transformer
    every = Shortlist.build([], model.codec.src_vocab, model.codec.tgt_vocab, per_source=1,
                            frequent=len(model.codec.tgt_vocab))
    every = Shortlist(every.by_source, torch.arange(len(model.codec.tgt_vocab)), every.vocabularies)
    for beam in (1, 4):
        assert _with(model, every).translate(SOURCES, beam_size=beam) == model.translate(SOURCES, beam_size=beam)


def test_outputs_are_made_of_the_sentences_candidates_only(transformer):
    model, _ = transformer
    codec = model.codec
    examples = codec.encode(SOURCES)
    narrow = Shortlist.build(cronos.data.load_split("train", model.config.data, codec).examples[:200],
                             codec.src_vocab, codec.tgt_vocab, per_source=2, frequent=0)
    restricted = _with(model, narrow)
    for outputs in (restricted.translate(SOURCES, beam_size=1, n_best=1), restricted.translate(SOURCES, beam_size=3,
                                                                                               n_best=3)):
        for example, hypotheses in zip(examples, outputs):
            allowed = set(narrow.candidates(example.src).tolist())
            for hypothesis in hypotheses:
                tokens = codec.tgt_vocab.encode(codec.target_tokens(hypothesis.text)) if hypothesis.text else []
                assert set(tokens) <= allowed, (example.index, hypothesis.text)
    for example, text in zip(examples, restricted.sample(SOURCES, top_k=3)):
        assert set(codec.tgt_vocab.encode(codec.target_tokens(text))) <= set(narrow.candidates(example.src).tolist())


def test_the_command_line_builds_a_shortlist_and_decodes_with_it(transformer, tmp_path, capsys, monkeypatch):
    model, checkpoint = transformer
    out = tmp_path / "shortlist.pt"
    code, printed, err = run_cli(["shortlist", checkpoint, "-o", str(out), "--per-source", "5", "--frequent", "10"], "",
                                 capsys, monkeypatch)
    assert code == 0, err
    assert "counted 800 pairs of train: 5 candidates per source token" in printed
    code, printed, err = run_cli(["translate", checkpoint, "--shortlist", str(out)], "\n".join(SOURCES[:5]) + "\n",
                                 capsys, monkeypatch)
    assert code == 0, err
    assert printed.splitlines() == cronos.Cronos.load(checkpoint, "cpu", shortlist=out).translate(SOURCES[:5])
    code, printed, err = run_cli(["evaluate", checkpoint, "--shortlist", str(out), "--data", "valid"], "",
                                 capsys, monkeypatch)
    assert code == 0 and '"bleu"' in printed, err


@pytest.mark.parametrize("argv, message", [
    (["shortlist", "{checkpoint}", "-o", "{checkpoint}"], "--out: {checkpoint} exists; the shortlist goes to a new file"),
    (["translate", "{checkpoint}", "--shortlist", "{tmp}/none.pt"], "--shortlist: {tmp}/none.pt: no such shortlist file"),
    (["translate", "{checkpoint}", "--shortlist", "{checkpoint}"], "not a shortlist written by `cronos shortlist`"),
    (["translate", "{checkpoint}", "--shortlist", "{other}"], "was built for another model's vocabularies"),
    (["translate", "{checkpoint}", "{checkpoint}", "--shortlist", "{shortlist}"], "an ensemble decodes without one"),
    (["translate", "{checkpoint}", "--quantize", "int8", "--device", "cpu", "--shortlist", "{shortlist}"],
     "use --quantize or --shortlist, not both"),
])
def test_a_shortlist_that_does_not_fit_is_one_line(transformer, tmp_path, capsys, monkeypatch, argv, message):
    model, checkpoint = transformer
    codec, small = model.codec, Vocabulary(["<pad>", "<unk>", "<bos>", "<eos>", "a"])
    shortlist, other = tmp_path / "shortlist.pt", tmp_path / "other.pt"
    Shortlist.build([], codec.src_vocab, codec.tgt_vocab).save(shortlist)
    Shortlist.build([], small, small).save(other)
    names = {"checkpoint": checkpoint, "tmp": tmp_path, "shortlist": shortlist, "other": other}
    code, _, err = run_cli([a.format(**names) for a in argv], "1/2/07\n", capsys, monkeypatch)
    assert code == 2 and message.format(**names) in err and err.count("\n") == 1, err


def test_the_api_refuses_a_shortlist_for_an_ensemble_or_an_int8_model(transformer, tmp_path):
    model, checkpoint = transformer
    shortlist = Shortlist.build([], model.codec.src_vocab, model.codec.tgt_vocab)
    with pytest.raises(ValueError, match="load with quantize or with a shortlist, not both"):
        cronos.Cronos.load(checkpoint, "cpu", quantize="int8", shortlist=shortlist)
    ensemble = cronos.Cronos.ensemble([checkpoint, checkpoint], "cpu")
    with pytest.raises(TypeError, match="an ensemble decodes without one"):
        Translator(ensemble.network, ensemble.codec, ensemble.config, shortlist)
    with pytest.raises(ShortlistError, match="another model's vocabularies"):
        small = Vocabulary(["<pad>", "<unk>", "<bos>", "<eos>", "a"])
        cronos.Cronos.load(checkpoint, "cpu", shortlist=Shortlist.build([], small, small))
