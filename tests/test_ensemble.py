"""Ensembles (``Cronos.ensemble``, ``cronos translate A.pt B.pt``): each step from the mean of the
members' probabilities, in every way of decoding, independent of batch mates, with members that
read the source their own way; members that write differently and training or saving an ensemble
are refused."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import cronos
from cronos.data import Vocabulary
from cronos.data.tokenizers import WhitespaceTokenizer
from helpers import run_cli
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


def test_members_that_write_text_differently_are_refused(trained_models):
    model = trained_models["rnn"]
    other = cronos.Cronos(model.config, model.codec.src_vocab, Vocabulary(["<pad>", "<unk>", "<bos>", "<eos>", "a"]))
    with pytest.raises(ValueError, match=r"ensemble member 2 does not write text as member 1 does: its "
                                         r"target vocabulary \(5 tokens\)"):
        cronos.Cronos.ensemble([model, other])
    with pytest.raises(ValueError, match="at least two members"):
        cronos.Cronos.ensemble([model])
    with pytest.raises(TypeError, match="'Translator' object is not callable"):
        batch = model.prepare(["Thu 26 Nov 2026"], ["2026-11-26"])
        cronos.Cronos.ensemble([model, model])(batch.src, batch.src_lengths, batch.tgt_in)


def reading_reversed(model: cronos.Cronos) -> cronos.Cronos:
    """``model`` with its source vocabulary in another order and its source embedding rows moved
    with it: the same function of the text, reading other ids."""
    itos = model.codec.src_vocab.itos
    order = list(range(4)) + list(range(len(itos) - 1, 3, -1))  # specials stay first
    other = cronos.Cronos(model.config, Vocabulary([itos[i] for i in order]), model.codec.tgt_vocab)
    weights = dict(model.network.state_dict())
    weights["src_embedding.weight"] = weights["src_embedding.weight"][order]
    other.network.load_state_dict(weights)
    return other.eval()


def reading_words(model: cronos.Cronos, seed: int = 3) -> cronos.Cronos:
    """An untrained model that writes ``model``'s characters but reads whole words."""
    words = Vocabulary(["<pad>", "<unk>", "<bos>", "<eos>", "Thu", "Nov", "2026", "26", "Mon", "March"])
    torch.manual_seed(seed)
    other = cronos.Cronos(model.config, words, model.codec.tgt_vocab)
    other.codec = dataclasses.replace(other.codec, src_tokenizer=WordsWithoutZeroWidthSpaces())
    return other.eval()


class WordsWithoutZeroWidthSpaces(WhitespaceTokenizer):
    """Words, dropping zero-width spaces as SentencePiece's normalisation does (which reads no
    pieces at all in "\u200b", a text a character tokenizer reads one token in)."""

    def tokenize(self, text: str) -> list[str]:
        return super().tokenize(text.replace("\u200b", ""))


def test_members_that_read_the_source_differently_each_read_it_their_own_way(trained_models):
    rnn, transformer = trained_models["rnn"], trained_models["transformer"]
    reversed_rnn = reading_reversed(rnn)
    assert reversed_rnn.translate(MIXED, beam_size=3) == rnn.translate(MIXED, beam_size=3)
    # fed the first member's ids, the reversed reader would translate something else
    for members in ([transformer, reversed_rnn], [reversed_rnn, transformer]):
        assert (cronos.Cronos.ensemble(members).translate(MIXED, beam_size=3)
                == cronos.Cronos.ensemble([transformer, rnn]).translate(MIXED, beam_size=3))
    words = reading_words(rnn)
    assert len(words.prepare(["Thu 26 Nov 2026"]).src[0]) == 4  # four words against 15 characters
    ensemble = cronos.Cronos.ensemble([transformer, words, reversed_rnn])
    for mixed, *alone in zip(ensemble.score(PAIRS, per_token=True), *(m.score(PAIRS, per_token=True)
                                                                      for m in (transformer, words, rnn))):
        expected = [math.log(sum(math.exp(p) for p in token) / 3) for token in zip(*(a.token_log_probs for a in alone))]
        assert mixed.token_log_probs == pytest.approx(expected, abs=1e-5)
    # attention: the mean over the members that read as the first does (the transformer alone here)
    explanation, = ensemble.explain(["Thu 26 Nov 2026"], ["2026-11-26"])
    alone, = transformer.explain(["Thu 26 Nov 2026"], ["2026-11-26"])
    torch.testing.assert_close(explanation.attention, alone.attention, atol=1e-6, rtol=0)
    assert explanation.source_tokens == alone.source_tokens


@pytest.mark.parametrize("beam", [1, 3])
def test_an_ensemble_reading_the_source_differently_does_not_depend_on_batch_mates(trained_models, beam):
    ensemble = cronos.Cronos.ensemble([trained_models["transformer"], reading_words(trained_models["rnn"])])
    together = ensemble.translate(MIXED, beam_size=beam, n_best=beam)
    alone = [ensemble.translate([source], beam_size=beam, n_best=beam)[0] for source in MIXED]
    one_by_one = ensemble.translate(MIXED, beam_size=beam, n_best=beam, batch_size=1)
    for mine, single, batched in zip(together, alone, one_by_one):
        assert [h.text for h in mine] == [h.text for h in single] == [h.text for h in batched]
        assert [h.log_prob for h in mine] == pytest.approx([h.log_prob for h in single], abs=1e-5)
    sampled = ensemble.sample(MIXED, top_k=5, seed=1)
    assert [ensemble.sample([source], top_k=5, seed=1)[0] for source in MIXED] == sampled


def test_a_source_one_member_reads_no_tokens_of_is_refused(trained_models):
    ensemble = cronos.Cronos.ensemble([trained_models["rnn"], reading_words(trained_models["rnn"])])
    with pytest.raises(ValueError, match="input 1: source reading 1 finds no tokens"):
        ensemble.translate(["Thu 26 Nov 2026", "\u200b"])


def test_an_ensemble_is_neither_trained_nor_saved(trained_models, tmp_path):
    ensemble = cronos.Cronos.ensemble([trained_models["rnn"], trained_models["rnn"]])
    assert isinstance(ensemble, cronos.Translator) and not isinstance(ensemble, cronos.Cronos)
    assert not hasattr(ensemble, "save") and not hasattr(ensemble, "fit")  # a decode-only type


def test_cronos_translate_with_several_checkpoints_decodes_with_the_ensemble(trained_models, tmp_path, capsys,
                                                                              monkeypatch):
    rnn, transformer = trained_models["rnn"], trained_models["transformer"]
    paths = [str(rnn.save(tmp_path / "rnn.pt")), str(transformer.save(tmp_path / "transformer.pt"))]
    code, out, err = run_cli(["translate", *paths, "--beam", "3"], "\n".join(MIXED) + "\n", capsys, monkeypatch)
    assert code == 0, err
    assert out.splitlines() == cronos.Cronos.ensemble([rnn, transformer]).translate(MIXED, beam_size=3)
