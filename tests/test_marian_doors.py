"""An imported MarianMT model through every door: evaluate, translate with the controls, score,
explain, int8, the server's jobs, averaging, ensembles, fine-tuning from it (``init_from``), and
``export --format ctranslate2`` against CTranslate2's own converter of the same folder."""
from __future__ import annotations

import json

import pytest
import torch

import cronos
from cronos.cli import main
from cronos.data.vocab import BOS_INDEX, EOS_INDEX, PAD_INDEX
from cronos.storage.marian import NEVER
from marian_models import LANGUAGE_CODES, dates

pytest.importorskip("transformers")
pytestmark = pytest.mark.filterwarnings("ignore:Recommended. pip install sacremoses")

SHAPE = "shared, swish, scaled, 2+2"


@pytest.fixture(scope="module")
def imported(marian_folders):
    folder, checkpoint = marian_folders(SHAPE)
    return folder, checkpoint, cronos.Translator.load(checkpoint)


@pytest.fixture(scope="module")
def child(imported, tmp_path_factory):
    """A model fine-tuned from the import for two epochs (label smoothing on), through the config
    ``cronos import`` writes beside the checkpoint."""
    folder, checkpoint, _ = imported
    out = tmp_path_factory.mktemp("child")
    assert main(["import", "--from", "marian", str(folder), str(out / "parent.pt")]) == 0
    config = cronos.load_config(out / "parent.yaml", overrides={
        "data.train": str(out / "train.tsv"), "data.valid": str(out / "train.tsv"), "output_dir": str(out / "run"),
        "training.epochs": 2, "training.batch_size": 32, "training.lr": 0.003, "training.progress": False,
        "training.label_smoothing": 0.1})
    pairs = dates("train", 640)
    (out / "train.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in zip(pairs.sources, pairs.targets)))
    return cronos.fit(config), out


def test_evaluate_scores_an_imported_model(imported):
    _, _, model = imported
    pairs = dates("valid", 40)
    scores = model.evaluate(list(zip(pairs.sources, pairs.targets)))
    assert 0 <= scores["bleu"] <= 100 and scores["loss"] > 0


def test_the_controls_and_alignments_decode_an_imported_model(imported):
    _, _, model = imported
    sources = dates("test", 12).sources
    plain = model.translate(sources, beam_size=4)
    prefixed = model.translate(sources, beam_size=4, prefixes=["19"] * len(sources))
    assert all(text.startswith("19") for text in prefixed)
    constrained = model.translate(sources, beam_size=4, constraints=[["-12-"]] * len(sources))
    assert all("-12-" in text for text in constrained)
    aligned = [best for best, in model.translate(sources, beam_size=4, alignments=True)]
    assert [a.text for a in aligned] == plain
    for item, source in zip(aligned, sources):  # the <eos> that ends a source is no word: never aligned to
        words = len(source.split())
        assert all(0 <= i < words for i, _ in item.alignment)


def test_explanations_show_the_eos_that_ends_each_source(imported, tmp_path):
    _, _, model = imported
    (explanation,) = model.explain(["march 24th, 2095"])
    assert explanation.source_tokens[-1] == "<eos>"
    assert explanation.attention.shape[-1] == len(explanation.source_tokens)


def test_int8_decodes_an_imported_model(imported):
    _, checkpoint, model = imported
    int8 = cronos.Translator.load(checkpoint, quantize="int8")
    sources = dates("test", 100).sources
    same = sum(a == b for a, b in zip(int8.translate(sources), model.translate(sources)))
    assert same >= 80  # a tiny, barely trained model: near-ties that int8's rounding tips (89 of 100 here)


def test_the_server_translates_with_an_imported_model(imported):
    """The application in this process (no socket): a request, with a tag and a prefix."""
    import asyncio

    httpx = pytest.importorskip("httpx")
    from cronos.server import Limits, build_app

    _, _, model = imported
    app = build_app(model, Limits(max_wait_ms=0))
    texts = dates("test", 4).sources

    async def scenario():
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://cronos") as client:
                plain = await client.post("/translate", json={"text": texts})
                tagged = await client.post("/translate", json={"text": texts[0], "prefix": "19",
                                                               "tag": LANGUAGE_CODES[1]})
                return plain.json(), tagged.json()

    plain, tagged = asyncio.run(scenario())
    assert plain["translations"] == model.translate(texts)
    expected = model.translate(model.codec.encode(texts[:1], tag=LANGUAGE_CODES[1]), prefixes=["19"])[0]
    assert tagged["translations"] == expected and expected.startswith("19")


def test_fine_tuning_keeps_pad_inert_and_pad_and_bos_never_outputs(imported, child):
    _, _, parent = imported
    model, _ = child
    network = model.network
    assert not network.src_embedding.weight[PAD_INDEX].any()
    assert network.output_projection.bias[[PAD_INDEX, BOS_INDEX]].tolist() == [NEVER, NEVER]  # smoothed over neither
    assert not torch.equal(network.src_embedding.weight[EOS_INDEX], parent.network.src_embedding.weight[EOS_INDEX])
    pairs = dates("train", 640)  # what it was fine-tuned on: it learned them
    before = parent.evaluate(list(zip(pairs.sources, pairs.targets)))["loss"]
    after = model.evaluate(list(zip(pairs.sources, pairs.targets)))["loss"]
    assert after < before


def test_an_ensemble_and_an_average_of_the_import_and_its_child(imported, child, tmp_path):
    _, checkpoint, parent = imported
    model, out = child
    sources = dates("test", 30).sources
    ensemble = cronos.Cronos.ensemble([parent, model])
    assert len(ensemble.translate(sources)) == len(sources)
    averaged = tmp_path / "average.pt"
    assert main(["average", str(checkpoint), str(out / "run" / "best.pt"), "--out", str(averaged)]) == 0
    assert len(cronos.Translator.load(averaged).translate(sources)) == len(sources)


def test_the_fine_tuning_config_is_the_models_own(imported, tmp_path, capsys):
    folder, _, _ = imported
    out = tmp_path / "m.pt"
    assert main(["import", "--from", "marian", str(folder), str(out)]) == 0
    config = cronos.load_config(tmp_path / "m.yaml")
    assert config.training.init_from == str(out.resolve()) and config.data.source_eos
    assert "m.yaml" in capsys.readouterr().out


def test_the_exported_model_translates_as_ctranslate2s_own_conversion(imported, tmp_path):
    """cronos's export and CTranslate2's ``TransformersConverter`` of the same folder: the same
    translations, greedy and beam 4."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    folder, checkpoint, model = imported
    ours = tmp_path / "ours"
    assert main(["export", str(checkpoint), str(ours), "--format", "ctranslate2"]) == 0
    theirs = ctranslate2.converters.TransformersConverter(str(folder)).convert(str(tmp_path / "theirs"))
    settings = json.loads((ours / "cronos_export.json").read_text())
    assert settings["source_ends_with"] == "<eos>"
    import sentencepiece as spm

    pieces = spm.SentencePieceProcessor(model_file=str(ours / "source.spm"))
    target = spm.SentencePieceProcessor(model_file=str(ours / "target.spm"))
    sources = dates("test", 100).sources
    tokens = pieces.encode(sources, out_type=str)
    for beam in (1, 4):
        found = []
        for path, end in ((ours, settings["source_ends_with"]), (theirs, "</s>")):
            translator = ctranslate2.Translator(str(path), device="cpu", intra_threads=1)
            results = translator.translate_batch([t + [end] for t in tokens], beam_size=beam, max_decoding_length=60)
            found.append([target.decode(r.hypotheses[0]) for r in results])
        assert found[0] == found[1]
        assert found[0] == model.translate(sources, beam_size=beam)
