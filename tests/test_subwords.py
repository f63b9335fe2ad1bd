"""SentencePiece subwords end to end: the id mapping, training on the training split, checkpoints
that tokenise on their own, shared and tied embeddings, and explanations over words."""
from __future__ import annotations

import io
import json
import re
import shutil

import pytest
import sentencepiece as spm
import torch

import cronos
from cronos.storage.checkpoint import load_checkpoint, save_checkpoint
from cronos.config import ConfigError, SentencePieceConfig
from cronos.data import SubwordModels, TextCodec, load_training_data
from cronos.data.subwords import piece_ids
from cronos.data.vocab import SPECIALS
from helpers import DATES, run_cli, tiny_config

TEXTS = [line.split("\t")[0] for line in (DATES / "train.tsv").read_text(encoding="utf-8").splitlines()[:2000]]
SUBWORD_DATA = {"tokenizer": "sentencepiece", "sentencepiece": {"vocab_size": 150}}
TIED = {"embedding_size": 32, "share_embeddings": True, "tie_output_embedding": True,
        "encoder": {"type": "transformer", "hidden_size": 32, "layers": 1, "heads": 4, "ff_size": 64, "dropout": 0.1},
        "decoder": {"type": "transformer", "hidden_size": 32, "layers": 1, "heads": 4, "ff_size": 64, "dropout": 0.1}}


@pytest.fixture(scope="module")
def subword_run(tmp_path_factory):
    """A tiny tied Transformer on SentencePiece pieces with subword regularisation, trained on the
    dates slice, keeping its last 3 validations' weights; its data folder is deleted afterwards."""
    folder = tmp_path_factory.mktemp("subwords")
    data = {**SUBWORD_DATA, "sentencepiece": {**SUBWORD_DATA["sentencepiece"], "sampling_alpha": 0.1}}
    config = cronos.load_config(tiny_config(folder, data=data, model=TIED,
                                            training={"epochs": 3, "lr": 0.003, "keep_checkpoints": 3}))
    model = cronos.fit(config)
    shutil.rmtree(folder / "data")  # the checkpoints must not need the training files
    return folder / "run", model


def test_a_model_cronos_trains_gives_each_piece_its_sentencepiece_id():
    models = SubwordModels.train(TEXTS[:1000], TEXTS[1000:], SentencePieceConfig(vocab_size=120), seed=1)
    processor = spm.SentencePieceProcessor(model_proto=models.source)
    vocab, _ = models.vocabularies()
    assert vocab.itos[:4] == list(SPECIALS) and len(vocab) == processor.get_piece_size() == 120
    # <unk> and every ordinary piece keep their ids; <pad>, <bos>, <eos> are no pieces text becomes
    assert piece_ids(processor, vocab) == {1: 1, **{i: i for i in range(4, 120)}}
    assert all(vocab.stoi[processor.id_to_piece(i)] == i for i in range(4, 120))
    text = "Thursday, 26 November 2026"
    assert vocab.encode(models.tokenizers(lowercase=False)[0].tokenize(text)) == processor.encode(text)


def test_a_model_trained_elsewhere_maps_by_piece(tmp_path):
    """SentencePiece's own defaults (<unk> 0, <s> 1, </s> 2, no <pad>): ids differ, pieces map."""
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(TEXTS), model_writer=buffer, vocab_size=100,
                                   minloglevel=2)
    path = tmp_path / "foreign.model"
    path.write_bytes(buffer.getvalue())
    models = SubwordModels.read(path)
    processor = spm.SentencePieceProcessor(model_proto=models.source)
    vocab, target_vocab = models.vocabularies()
    assert vocab is target_vocab and vocab.itos[:4] == list(SPECIALS)
    assert len(vocab) == 100 - 3 + 4  # its <unk>, <s>, </s> replaced by cronos's four specials
    mapping = piece_ids(processor, vocab)
    assert mapping[processor.unk_id()] == vocab.unk_index and mapping[3] == 4  # its first ordinary piece
    text = "Mittwoch, 3. März 1999"
    tokenizer = models.tokenizers(lowercase=False)[0]
    assert vocab.encode(tokenizer.tokenize(text)) == [mapping[i] for i in processor.encode(text)]


def test_training_is_deterministic_and_separate_models_per_side():
    options = SentencePieceConfig(vocab_size=100, joint=False)
    first = SubwordModels.train(TEXTS[:1000], TEXTS[1000:], options, seed=3)
    assert first == SubwordModels.train(TEXTS[:1000], TEXTS[1000:], options, seed=3)
    assert not first.joint and first.source != first.target


def test_too_many_pieces_for_the_text_is_a_config_error_with_the_largest_that_fits():
    with pytest.raises(ConfigError, match=r"data\.sentencepiece\.vocab_size: 50000 pieces cannot be trained .* "
                                          r"supports at most \d+"):
        SubwordModels.train(TEXTS[:200], TEXTS[200:400], SentencePieceConfig(vocab_size=50000), seed=0)


def test_a_model_file_that_is_no_sentencepiece_model_is_a_config_error(tmp_path):
    path = tmp_path / "broken.model"
    path.write_bytes(b"not a model")
    with pytest.raises(ConfigError, match=r"data\.sentencepiece\.model: .*broken\.model: not a readable"):
        SubwordModels.read(path)


def test_detokenising_gives_the_text_back():
    models = SubwordModels.train(TEXTS, TEXTS, SentencePieceConfig(vocab_size=150), seed=0)
    codec = TextCodec.for_data(cronos.load_config({"data": SUBWORD_DATA}).data, *models.vocabularies(), models)
    for text in ["Thursday, 26 November 2026", "1/2/07", "the 21st of June 1950"]:
        examples = codec.encode([text], [text])
        assert codec.to_text(examples[0].tgt) == text == codec.as_output(text)


def test_the_checkpoint_alone_translates_evaluates_and_explains(subword_run, capsys, monkeypatch):
    run, trained = subword_run
    model = cronos.Cronos.load(run / "best.pt")
    sources = ["Thu 26 Nov 2026", "1/2/07"]
    assert model.translate(sources) == trained.translate(sources)
    assert model.codec.subwords == trained.codec.subwords and model.codec.src_vocab == model.codec.tgt_vocab
    scores = model.evaluate([("Thu 26 Nov 2026", "2026-11-26"), ("1/2/07", "2007-02-01")])
    assert 0 <= scores["bleu"] <= 100 and scores["examples"] == 2
    explanation, = model.explain(["Thu 26 Nov 2026"], ["2026-11-26"])
    assert explanation.word_pieces and "".join(explanation.source_tokens).replace("\u2581", " ").strip() == \
        "Thu 26 Nov 2026"
    assert explanation.padding_attention == 0.0
    # and from the command line, with nothing but the .pt
    code, out, err = run_cli(["translate", str(run / "best.pt")], "1/2/07\n", capsys, monkeypatch)
    assert code == 0, err
    assert out == model.translate(["1/2/07"])[0] + "\n"  # as it is: an output may end in a space


@pytest.mark.parametrize("text", ["1/2\ud800/07", "\udced\udca0\udc80"])
def test_a_lone_surrogate_is_one_clear_error_from_the_api_and_the_command_line(subword_run, text, capsys,
                                                                               monkeypatch):
    """``"\\ud800"`` in JSON, or bytes that are not UTF-8 in an argument (Python decodes those to
    surrogates): SentencePiece cannot take it (a pybind RuntimeError), so cronos refuses it first."""
    run, model = subword_run
    message = f"input 0 holds a lone surrogate (U+{ord(next(c for c in text if 0xD800 <= ord(c) < 0xE000)):04X})"
    for call in (lambda: model.translate([text]), lambda: model.score([(text, "2007-01-02")]),
                 lambda: model.explain([text])):
        with pytest.raises(ValueError, match=re.escape(message)):
            call()
    with pytest.raises(ValueError, match=r"target 0 holds a lone surrogate \(U\+D800\)"):
        model.score([("1/2/07", "2007\ud800")])
    code, out, err = run_cli(["explain", str(run / "best.pt"), text], "", capsys, monkeypatch)
    assert (code, out) == (1, "") and err == f"cronos: error: ValueError: {message} at character " \
        f"{text.index(next(c for c in text if 0xD800 <= ord(c) < 0xE000))}, which is not a character; send valid " \
        "Unicode (UTF-8)\n"


def test_the_word_view_sums_over_source_pieces_and_averages_over_output_pieces(subword_run):
    run, _ = subword_run
    model = cronos.Cronos.load(run / "best.pt")
    explanation, = model.explain(["Thursday, 26 November 2026"], ["2026-11-26"])
    words = explanation.to_words()
    assert words.source_tokens == ["Thursday,", "26", "November", "2026"]
    assert words.output_tokens == ["2026-11-26"]
    torch.testing.assert_close(words.attention.sum(-1), torch.ones(len(words.output_tokens)), atol=1e-5, rtol=0)
    # the first source word's weight: its pieces' columns summed, averaged over the output's pieces
    starts = [i for i, piece in enumerate(explanation.source_tokens) if piece.startswith("\u2581")]
    assert len(starts) == 4 and len(explanation.source_tokens) > 4  # pieces, some words in several
    expected = explanation.attention[:, starts[0]: starts[1]].sum(1).mean(0)
    torch.testing.assert_close(words.attention[0, 0], expected)
    assert json.loads(json.dumps(explanation.to_dict()))["words"]["source_words"] == words.source_tokens


def test_pad_rows_of_the_tied_and_shared_embedding_stay_zero_through_training(subword_run):
    run, trained = subword_run
    network = trained.network
    assert network.src_embedding is network.tgt_embedding
    assert network.output_projection.weight is network.tgt_embedding.weight
    assert torch.equal(network.tgt_embedding.weight[0], torch.zeros_like(network.tgt_embedding.weight[0]))
    payload = load_checkpoint(run / "last.pt")
    assert isinstance(payload["subwords"]["source"], bytes) and payload["subwords"]["source"] == \
        payload["subwords"]["target"]


def test_shared_embeddings_without_one_vocabulary_is_a_config_error(tmp_path):
    config = cronos.load_config(tiny_config(tmp_path, model=TIED))  # char tokenizer: two vocabularies
    with pytest.raises(ConfigError, match=r"model\.share_embeddings: needs one vocabulary for both sides, and this "
                                          r"data gives two .*data\.tokenizer: sentencepiece"):
        cronos.Cronos.from_config(config)


def test_a_subword_checkpoint_without_its_models_is_refused(subword_run, tmp_path):
    run, _ = subword_run
    payload = load_checkpoint(run / "best.pt")
    del payload["subwords"]
    save_checkpoint(tmp_path / "stripped.pt", {k: v for k, v in payload.items() if not k.startswith("format")})
    with pytest.raises(cronos.CheckpointError, match="holds no SentencePiece models"):
        cronos.Cronos.load(tmp_path / "stripped.pt")


@pytest.mark.parametrize("sections, message", [
    ({"data": {"tokenizer": "word", "sentencepiece": {"vocab_size": 100}}},
     r"data\.sentencepiece: means something only for tokenizer `sentencepiece`, and data\.tokenizer is `word`"),
    ({"data": {"tokenizer": "sentencepiece", "sentencepiece": {"joint": False}}, "model": {"share_embeddings": True}},
     r"model\.share_embeddings: needs one vocabulary for both sides, and data\.sentencepiece\.joint is false"),
    ({"model": {"tie_output_embedding": True, "embedding_size": 32}},
     r"model\.tie_output_embedding: needs model\.decoder\.hidden_size \(128\) equal to model\.embedding_size \(32\)"),
    ({"data": {"tokenizer": "sentencepiece", "sentencepiece": {"model_type": "word"}}},
     r"data\.sentencepiece\.model_type"),
    ({"data": {"tokenizer": "sentencepiece", "sentencepiece": {"vocab_size": 2147483648}}},
     r"data\.sentencepiece\.vocab_size: expected a value <= 1,000,000, got 2147483648"),
])
def test_subword_and_embedding_config_mistakes_name_the_key(sections, message):
    with pytest.raises(ConfigError, match=message):
        cronos.load_config(sections)


def test_subword_regularisation_samples_each_epoch_anew_and_the_same_for_the_same_epoch(tmp_path):
    data_section = {**SUBWORD_DATA, "sentencepiece": {"vocab_size": 150, "sampling_alpha": 0.1}, "max_length": 12}
    config = cronos.load_config(tiny_config(tmp_path, data=data_section))
    data = load_training_data(config.data, seed=config.seed)
    first, again, second = data.for_epoch(0), data.for_epoch(0), data.for_epoch(1)
    assert first == again and first != second and len(first) == len(second) == len(data.examples)
    assert first != data.examples  # sampled, not the best segmentation
    codec = TextCodec.for_data(config.data, data.src_vocab, data.tgt_vocab, data.subwords)
    for sampled, (source, _) in zip(first[:50], data.texts[:50]):
        assert sampled.src_length <= 12
        if sampled.src_length < 12:  # uncut: the sampled pieces spell the text
            assert codec.src_tokenizer.detokenize(data.src_vocab.to_tokens(sampled.src)) == source
    assert codec.encode([data.texts[0][0]]) == codec.encode([data.texts[0][0]])  # evaluation: the best one


def test_subword_regularisation_on_several_processes_is_refused_before_they_wait_for_each_other(tmp_path,
                                                                                             monkeypatch):
    """Each process would sample its own segmentation (sentencepiece 0.2 seeds its sampler from the
    operating system), plan other batches, and hang at the first exchange: refused in one line."""
    data_section = {**SUBWORD_DATA, "sentencepiece": {"vocab_size": 150, "sampling_alpha": 0.1}}
    model = cronos.Cronos.from_config(cronos.load_config(tiny_config(tmp_path, data=data_section)))
    for name, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "2")):
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=r"data\.sentencepiece\.sampling_alpha: subword regularisation samples "
                                          r"with SentencePiece's own generator.*train on one process"):
        model.fit()


def test_without_sampling_every_epoch_trains_on_the_examples_as_read(tmp_path):
    config = cronos.load_config(tiny_config(tmp_path, data=SUBWORD_DATA))
    data = load_training_data(config.data, seed=config.seed)
    assert data.for_epoch(0) is data.for_epoch(3) is data.examples and data.sampling is None


def test_attributions_over_pieces_and_over_words(subword_run):
    """On tied embeddings and SentencePiece pieces: the attribution of a word is the sum over its
    pieces (rows: the mean over an output word's pieces), padding still gets exactly 0."""
    run, _ = subword_run
    model = cronos.Cronos.load(run / "best.pt")
    explanation, = model.explain(["Thursday, 26 November 2026", "1/2/07"], ["2026-11-26", "2007-02-01"],
                                 method="input_x_gradient")[:1]
    assert explanation.attribution.shape == (len(explanation.output_tokens), len(explanation.source_tokens))
    assert explanation.padding_attribution == 0.0
    words = explanation.to_words()
    starts = [i for i, piece in enumerate(explanation.source_tokens) if piece.startswith("\u2581")]
    expected = explanation.attribution[:, starts[0]: starts[1]].sum(1).mean(0)
    torch.testing.assert_close(words.attribution[0, 0], expected)
    entry = explanation.to_dict()
    assert len(entry["words"]["attribution"][0]) == len(words.source_tokens) == 4


def test_text_in_an_unseen_script_is_reported_as_unknown(subword_run, caplog):
    """``你好世界`` reads as the bare word-start piece and one ``<unk>``: all of what a user calls a
    word is unknown, and the warning says so (the bare piece does not dilute the share)."""
    _, model = subword_run
    assert model.codec.source_tokens("你好世界") == ["▁", "你好世界"]
    with caplog.at_level("WARNING", logger="cronos"):
        model.translate(["你好世界"])
    assert "100% of the 1 source tokens are unknown to the model's vocabulary (<unk>)" in caplog.text


def altered(run, tmp_path, name: str, change) -> str:
    """A copy of the run's best.pt with ``change(payload)`` applied."""
    payload = load_checkpoint(run / "best.pt")
    change(payload)
    return str(save_checkpoint(tmp_path / name, {k: v for k, v in payload.items() if not k.startswith("format")}))


def test_sentencepiece_models_that_do_not_fit_the_stored_vocabulary_or_config_are_refused(subword_run, tmp_path):
    """A valid SentencePiece model with other pieces would give the model other ids than it learned."""
    run, _ = subword_run
    other = SubwordModels.train(TEXTS[:500], TEXTS[:500], SentencePieceConfig(vocab_size=120), 3).to_dict()
    swapped = altered(run, tmp_path, "swapped.pt", lambda payload: payload.update(subwords=other))
    with pytest.raises(cronos.CheckpointError, match=r"swapped\.pt: its source SentencePiece model's pieces differ "
                                                     r"from its source vocabulary"):
        cronos.Cronos.load(swapped)

    def as_characters(payload):
        payload["config"]["data"]["tokenizer"] = "char"
        del payload["config"]["data"]["sentencepiece"]
    with pytest.raises(cronos.CheckpointError, match=r"its config's tokenizer is char, but it holds SentencePiece"):
        cronos.Cronos.load(altered(run, tmp_path, "char.pt", as_characters))
    empty = altered(run, tmp_path, "empty.pt", lambda payload: payload.update(subwords={"source": b"", "target": b""}))
    with pytest.raises(cronos.CheckpointError, match=r"an entry is an empty byte string"):
        cronos.Cronos.load(empty)


def test_resuming_with_another_sentencepiece_model_of_the_same_pieces_is_refused(tmp_path):
    from sentencepiece import sentencepiece_model_pb2

    model_file = tmp_path / "pieces.model"
    model_file.write_bytes(SubwordModels.train(TEXTS, TEXTS, SentencePieceConfig(vocab_size=150), 1).source)
    data = {"tokenizer": "sentencepiece", "sentencepiece": {"model": str(model_file)}}
    cronos.fit(cronos.load_config(tiny_config(tmp_path, data=data, model=TIED, training={"epochs": 1})))
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model_file.read_bytes())
    for piece in proto.pieces:
        piece.score = -piece.score  # the same pieces, segmenting text the other way round
    model_file.write_bytes(proto.SerializeToString())
    resumed = tiny_config(tmp_path, data=data, model=TIED, training={"epochs": 2, "resume": "auto"})
    with pytest.raises(cronos.CheckpointError, match=r"last\.pt: its SentencePiece models differ from those of this "
                                                     r"config \(the same pieces, other scores"):
        cronos.fit(cronos.load_config(resumed))


def test_separate_source_and_target_models_survive_save_and_load(tmp_path):
    """With ``joint: false`` each side has its own SentencePiece model: after save and load, text
    encodes to the same ids on each side, and scores and translations are the same."""
    data = {"tokenizer": "sentencepiece", "sentencepiece": {"vocab_size": 120, "joint": False}}
    model = cronos.fit(cronos.load_config(tiny_config(tmp_path, data=data, training={"epochs": 1})))
    assert not model.codec.subwords.joint
    loaded = cronos.Cronos.load(model.save(tmp_path / "separate.pt"))
    assert loaded.codec.subwords.source == model.codec.subwords.source
    assert loaded.codec.subwords.target == model.codec.subwords.target
    pairs = [("Thu 26 Nov 2026", "2026-11-26"), ("1/2/07", "2007-02-01")]
    before, after = model.codec.encode(*zip(*pairs)), loaded.codec.encode(*zip(*pairs))
    assert [(e.src, e.tgt) for e in after] == [(e.src, e.tgt) for e in before]
    assert [s.log_prob for s in loaded.score(pairs)] == pytest.approx([s.log_prob for s in model.score(pairs)],
                                                                     abs=1e-6)
    assert loaded.translate([p[0] for p in pairs]) == model.translate([p[0] for p in pairs])
