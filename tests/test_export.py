"""`cronos export --format ctranslate2`: CTranslate2 computes what cronos computes on the same weights."""
from __future__ import annotations

import builtins
import json
import os

import pytest
import torch

import cronos
from cronos.storage.export import ExportError, export_ctranslate2
from cronos.storage.checkpoint import read_model_file
from cronos.cli import main
from helpers import DATES, tiny_config

ctranslate2 = pytest.importorskip("ctranslate2")

TRANSFORMER = {"type": "transformer", "hidden_size": 36, "layers": 2, "heads": 3, "ff_size": 40, "dropout": 0.0}
# CTranslate2's float32 log-probs against cronos's: within 1.0e-6 on these models (and 1.4e-6 on an
# AMD EPYC); a layer norm's epsilon of 1e-6 instead of torch's 1e-5 moves them by 1.4e-5 to 2e-5
AGREE = 5e-6


def _translator(folder) -> "ctranslate2.Translator":
    return ctranslate2.Translator(str(folder), device="cpu", inter_threads=1, intra_threads=1)


def _source_tokens(model: cronos.Cronos, texts: list[str]) -> list[list[str]]:
    """The sources as CTranslate2 reads them: the tokens cronos's vocabulary gives them."""
    return [[model.codec.src_vocab.itos[i] for i in example.src] for example in model.codec.encode(texts)]


@pytest.fixture(scope="module")
def exported(trained_models, tmp_path_factory):
    model = trained_models["transformer"]
    folder = tmp_path_factory.mktemp("export")
    checkpoint = model.save(folder / "model.pt")
    return model, export_ctranslate2(read_model_file(checkpoint), folder / "ct2")


@pytest.fixture(scope="module")
def sources():
    return [line.split("\t")[0] for line in (DATES / "test.tsv").read_text(encoding="utf-8").splitlines()[:48]]


@pytest.mark.parametrize("beam", [1, 4])
def test_ctranslate2_gives_the_translations_cronos_gives(exported, sources, beam):
    model, folder = exported
    ours = model.translate(sources, beam_size=beam)
    found = _translator(folder).translate_batch(_source_tokens(model, sources), beam_size=beam,
                                                max_decoding_length=64)
    theirs = [model.codec.to_text([model.codec.tgt_vocab.stoi[t] for t in result.hypotheses[0]]) for result in found]
    assert theirs == ours


def test_ctranslate2_scores_a_pair_as_cronos_does(exported, sources):
    """Teacher-forced log-probs of every target token (``<eos>`` included) agree within float32
    rounding: the weights, positions, norms and fused projections all map as they should."""
    model, folder = exported
    targets = model.translate(sources)
    ours = model.score(list(zip(sources, targets)), per_token=True)
    target_tokens = [[model.codec.tgt_vocab.itos[i] for i in e.tgt] for e in model.codec.encode(sources, targets)]
    theirs = _translator(folder).score_batch(_source_tokens(model, sources), target_tokens)
    for mine, other in zip(ours, theirs):
        assert other.log_probs == pytest.approx(mine.token_log_probs, abs=AGREE)
    epsilons = {module.eps for module in model.network.modules() if isinstance(module, torch.nn.LayerNorm)}
    assert [json.loads((folder / "config.json").read_text())["layer_norm_epsilon"]] == list(epsilons)


def test_a_subword_model_with_shared_embeddings_exports_with_its_sentencepiece_model(tmp_path):
    config = tiny_config(tmp_path, data={"tokenizer": "sentencepiece", "sentencepiece": {"vocab_size": 120}},
                         model={"embedding_size": 36, "encoder": TRANSFORMER, "decoder": TRANSFORMER,
                                "share_embeddings": True, "tie_output_embedding": True})
    model = cronos.Cronos.from_config(cronos.load_config(config))
    folder = export_ctranslate2(read_model_file(model.save(tmp_path / "model.pt")), tmp_path / "ct2")
    description = json.loads((folder / "cronos_export.json").read_text())
    assert description["sentencepiece"] == {"source": "sentencepiece.model", "target": "sentencepiece.model"}
    import sentencepiece as spm

    pieces = spm.SentencePieceProcessor(model_file=str(folder / "sentencepiece.model"))
    source, target = pieces.encode(["Thu 26 Nov 2026", "2026-11-26"], out_type=str)
    result = _translator(folder).score_batch([source], [target])[0]
    expected = model.score([("Thu 26 Nov 2026", "2026-11-26")], per_token=True)[0]
    assert result.log_probs == pytest.approx(expected.token_log_probs, abs=AGREE)


def test_a_model_with_a_sentencepiece_model_per_side_exports_each_in_its_place(trained_models, tmp_path, sources):
    """``joint: false``: source.spm is the source side's model and target.spm the target's, byte for
    byte; text through them and CTranslate2 translates as cronos does."""
    config = tiny_config(tmp_path, data={"tokenizer": "sentencepiece",
                                         "sentencepiece": {"vocab_size": 90, "joint": False}},
                         model={"embedding_size": 36, "encoder": TRANSFORMER, "decoder": TRANSFORMER},
                         training={"epochs": 1, "lr": 0.003})
    model = cronos.fit(cronos.load_config(config))
    stored = read_model_file(model.save(tmp_path / "model.pt"))
    assert stored.subwords.source != stored.subwords.target
    folder = export_ctranslate2(stored, tmp_path / "ct2")
    description = json.loads((folder / "cronos_export.json").read_text())
    assert description["sentencepiece"] == {"source": "source.spm", "target": "target.spm"}
    assert (folder / "source.spm").read_bytes() == stored.subwords.source
    assert (folder / "target.spm").read_bytes() == stored.subwords.target
    import sentencepiece as spm

    source_pieces = spm.SentencePieceProcessor(model_file=str(folder / "source.spm"))
    target_pieces = spm.SentencePieceProcessor(model_file=str(folder / "target.spm"))
    texts = sources[:16]
    found = _translator(folder).translate_batch(source_pieces.encode(texts, out_type=str), beam_size=1,
                                                max_decoding_length=64)
    assert [target_pieces.decode(result.hypotheses[0]) for result in found] == model.translate(texts, beam_size=1)


def test_temporary_folders_a_user_made_survive_and_a_dangling_link_is_refused_before_any_work(exported, tmp_path):
    checkpoint = exported[1].parent / "model.pt"
    mine = tmp_path / "ct2.partial"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine", encoding="utf-8")
    export_ctranslate2(read_model_file(checkpoint), tmp_path / "ct2")
    assert (mine / "notes.txt").read_text(encoding="utf-8") == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct2", "ct2.partial"]
    assert ".cronos-temporary" not in {p.name for p in (tmp_path / "ct2").iterdir()}

    os.symlink(tmp_path / "nowhere", tmp_path / "link")
    with pytest.raises(ExportError, match=r"link is a link to nothing \(.*nowhere\); the export goes to a new folder"):
        export_ctranslate2(read_model_file(checkpoint), tmp_path / "link")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct2", "ct2.partial", "link"]


def test_int8_weights_translate_and_make_the_folder_smaller(exported, sources, tmp_path):
    model, folder = exported
    checkpoint = folder.parent / "model.pt"
    small = export_ctranslate2(read_model_file(checkpoint), tmp_path / "int8", quantization="int8")
    assert (small / "model.bin").stat().st_size < (folder / "model.bin").stat().st_size
    found = _translator(small).translate_batch(_source_tokens(model, sources), beam_size=1)
    assert all(result.hypotheses[0] for result in found)


def test_an_rnn_model_is_refused_with_the_reason(trained_models, tmp_path):
    checkpoint = trained_models["rnn"].save(tmp_path / "rnn.pt")
    with pytest.raises(ExportError, match="CTranslate2 runs Transformer models only; this model has a rnn encoder"):
        export_ctranslate2(read_model_file(checkpoint), tmp_path / "ct2")
    assert not (tmp_path / "ct2").exists()


def test_the_command_exports_into_a_new_folder_only(exported, tmp_path, capsys):
    checkpoint, out = exported[1].parent / "model.pt", tmp_path / "ct2"
    assert main(["export", str(checkpoint), "--format", "ctranslate2", str(out), "--quantization", "int8"]) == 0
    assert capsys.readouterr().out == f"exported {checkpoint} to {out} (CTranslate2, int8 weights)\n"
    assert {"model.bin", "config.json", "cronos_export.json"} <= {p.name for p in out.iterdir()}
    assert main(["export", str(checkpoint), "--format", "ctranslate2", str(out)]) == 2
    assert capsys.readouterr().err == f"cronos: error: {checkpoint}: {out} exists; the export goes to a new folder\n"


def test_without_ctranslate2_the_error_names_the_extra(exported, tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_ctranslate2(name, *args, **kwargs):
        if name.startswith("ctranslate2"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ctranslate2)
    with pytest.raises(ExportError, match=r"pip install 'cronos\[ctranslate2\]'"):
        export_ctranslate2(read_model_file(exported[1].parent / "model.pt"), tmp_path / "ct2")


@pytest.mark.parametrize("beam", [1, 4])
@pytest.mark.parametrize("ours, theirs", [
    ({"decoding": {"min_length": 12}}, {"min_decoding_length": 12}),
    ({"decoding": {"no_repeat_ngram_size": 2}}, {"no_repeat_ngram_size": 2}),
    ({"decoding": {"length_penalty": 0.6}}, {"length_penalty": 0.6}),
    ({"prefixes": "first 3 characters of another year"}, {"target_prefix": None}),
])
def test_ctranslate2_decodes_with_the_controls_as_cronos_does(exported, sources, beam, ours, theirs):
    """The controls that both engines have give the same outputs: CTranslate2 also removes the
    blocked tokens before it normalises a step's distribution."""
    model, folder = exported
    unlimited = {"max_length_ratio": 0.0, "max_length_offset": 64}
    if "prefixes" in ours:  # a start the model would not choose: "19" <-> "20"
        free = model.translate(sources, beam_size=1)
        prefixes = [("19" if text.startswith("20") else "20") + text[2:3] for text in free]
        ours, theirs = {"prefixes": prefixes}, {"target_prefix": [list(prefix) for prefix in prefixes]}
    mine = model.translate(sources, beam_size=beam, **{**ours, "decoding": {**unlimited, **ours.get("decoding", {})}})
    found = _translator(folder).translate_batch(_source_tokens(model, sources), beam_size=beam,
                                                max_decoding_length=64, **theirs)
    assert [model.codec.to_text([model.codec.tgt_vocab.stoi[t] for t in result.hypotheses[0]])
            for result in found] == mine


def test_the_export_says_the_models_decoding_settings_as_ctranslate2_takes_them(exported):
    from cronos.config import DecodingConfig
    from cronos.storage.export import translate_batch_options

    model, folder = exported
    options = json.loads((folder / "cronos_export.json").read_text())["decoding"]["translate_batch"]
    assert options == translate_batch_options(model.config.decoding)
    controls = DecodingConfig(beam_size=5, min_length=3, no_repeat_ngram_size=3, length_penalty=0.6,
                              coverage_penalty=0.2)
    assert translate_batch_options(controls) == {"beam_size": 5, "coverage_penalty": 0.2, "min_decoding_length": 3,
                                                 "no_repeat_ngram_size": 3, "length_penalty": 0.6}
    gnmt = translate_batch_options(DecodingConfig(length_penalty_form="gnmt"))
    assert "length_penalty" not in gnmt and gnmt["not_in_ctranslate2"] == ["decoding.length_penalty_form: gnmt"]
    assert translate_batch_options(DecodingConfig(length_penalty_form="none"))["length_penalty"] == 0.0


@pytest.mark.parametrize("variant", [
    {"normalize_before": False, "activation": "swish", "sinusoids": "halves", "scale_embeddings": False},
    {"activation": "gelu", "sinusoids": "halves"},
    {"normalize_before": False, "scale_embeddings": False}], ids=["marian", "gelu-halves", "post-norm-unscaled"])
def test_the_transformer_variants_export_and_score_as_cronos_does(tmp_path, sources, variant):
    """Post-norm layers (no final norm), GELU/swish, [sin | cos] positions and unscaled embeddings
    each reach CTranslate2 as cronos runs them (random weights: nothing hides a wrong mapping)."""
    stack = {**TRANSFORMER, **variant}
    config = tiny_config(tmp_path, model={"embedding_size": 36, "encoder": stack, "decoder": stack})
    model = cronos.Cronos.from_config(cronos.load_config(config))
    folder = export_ctranslate2(read_model_file(model.save(tmp_path / "model.pt")), tmp_path / "ct2")
    texts = sources[:16]
    targets = model.translate(texts, beam_size=1)
    ours = model.score(list(zip(texts, targets)), per_token=True)
    target_tokens = [[model.codec.tgt_vocab.itos[i] for i in e.tgt] for e in model.codec.encode(texts, targets)]
    theirs = _translator(folder).score_batch(_source_tokens(model, texts), target_tokens)
    for mine, other in zip(ours, theirs):
        assert other.log_probs == pytest.approx(mine.token_log_probs, abs=AGREE)


def test_positions_in_two_layouts_are_refused_with_the_reason(tmp_path):
    stack = {**TRANSFORMER}
    config = tiny_config(tmp_path, model={"embedding_size": 36, "encoder": {**stack, "sinusoids": "halves"},
                                          "decoder": stack})
    model = cronos.Cronos.from_config(cronos.load_config(config))
    with pytest.raises(ExportError, match="one layout.*halves and interleaved"):
        export_ctranslate2(read_model_file(model.save(tmp_path / "model.pt")), tmp_path / "ct2")
