"""Starting from a model (``training.init_from``): its weights and a fresh run, its vocabulary kept or
extended (characters, and SentencePiece pieces merged into its model), padding still inert, and
one clear line for a config that cannot start from it."""
from __future__ import annotations

import json

import pytest
import torch

import cronos
from cronos.data import PAD_INDEX
from helpers import tiny_config

# dates in the Czech of a new "domain": characters the parent's data never had (č, ř, ú, ...)
NEW_PAIRS = [("%d. %s %d" % (day, month, year), "%d-%02d-%02d" % (year, number, day))
             for year in (1999, 2004, 2017) for number, month in enumerate(
                 ["ledna", "února", "března", "dubna", "května", "června", "července", "srpna", "září", "října",
                  "listopadu", "prosince"], start=1) for day in (3, 17, 28)]


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    """A tiny character model trained one epoch on the dates slice, and its config."""
    folder = tmp_path_factory.mktemp("parent")
    config = tiny_config(folder, training={"epochs": 1})
    cronos.fit(cronos.load_config(config))
    return folder / "run" / "best.pt", config


def child_config(folder, parent_path, data=None, **training):
    config = tiny_config(folder, training={"epochs": 1, "init_from": str(parent_path), **training})
    if data is not None:
        path = folder / "new.tsv"
        path.write_text("".join(f"{s}\t{t}\n" for s, t in data), encoding="utf-8")
        config["data"] = {**config["data"], "train": str(path), "valid": str(path)}
    return config


def test_a_run_starts_from_the_weights_with_a_fresh_optimiser_and_step_count(parent, tmp_path):
    parent_path, _ = parent
    child = cronos.Cronos.from_config(cronos.load_config(child_config(tmp_path, parent_path)))
    stored = torch.load(parent_path, weights_only=True)["model"]
    assert all(torch.equal(tensor, stored[name]) for name, tensor in child.network.state_dict().items())
    child.fit()
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [25]  # counted from 0: one epoch of 25 updates
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert last["training"]["progress"]["step"] == 25 and last["src_vocab"] == torch.load(
        parent_path, weights_only=True)["src_vocab"]


def test_dropout_and_training_settings_may_differ_and_the_architecture_may_not(parent, tmp_path):
    parent_path, config = parent
    changed = child_config(tmp_path, parent_path, lr=0.01, label_smoothing=0.1)
    changed["model"]["encoder"]["dropout"] = 0.3
    cronos.Cronos.from_config(cronos.load_config(changed))
    wider = child_config(tmp_path, parent_path)
    wider["model"]["encoder"]["hidden_size"] = 48
    with pytest.raises(cronos.ConfigError, match=r"training.init_from: .*best.pt: its model differs from this "
                                                 r"config's at model.encoder.hidden_size \(checkpoint 32, config 48\)"):
        cronos.Cronos.from_config(cronos.load_config(wider))


def test_a_kept_vocabulary_refuses_settings_that_would_read_text_otherwise(parent, tmp_path):
    parent_path, _ = parent
    config = child_config(tmp_path, parent_path)
    config["data"]["lowercase"] = True
    with pytest.raises(cronos.ConfigError, match=r"data.lowercase: the model of training.init_from was trained "
                                                 r"with False and this config says True: with training.vocabulary: "
                                                 r"keep"):
        cronos.Cronos.from_config(cronos.load_config(config))


@pytest.mark.parametrize("problem, message", [
    ({"vocabulary": "extend"}, "training.vocabulary: says what becomes of the vocabulary of training.init_from"),
    ({"init_from": "missing.pt"}, "missing.pt"),
])
def test_bad_starts_are_one_clear_line(tmp_path, problem, message):
    config = tiny_config(tmp_path, training={"epochs": 1, **problem})
    with pytest.raises((cronos.ConfigError, cronos.CheckpointError), match=message):
        cronos.Cronos.from_config(cronos.load_config(config))


def test_an_extended_vocabulary_keeps_every_old_row_and_adds_fresh_ones(parent, tmp_path):
    parent_path, _ = parent
    stored = torch.load(parent_path, weights_only=True)
    child = cronos.Cronos.from_config(cronos.load_config(child_config(tmp_path, parent_path, NEW_PAIRS,
                                                                      vocabulary="extend")))
    old = stored["src_vocab"]
    new = child.codec.src_vocab.itos
    assert new[:len(old)] == old and {"č", "ř", "ú"} <= set(new[len(old):])  # old ids kept, new tokens after
    weights = child.network.state_dict()
    assert torch.equal(weights["src_embedding.weight"][:len(old)], stored["model"]["src_embedding.weight"])
    assert weights["src_embedding.weight"][len(old):].abs().sum() > 0  # fresh rows, not zeros
    shared = [name for name in stored["model"] if not name.startswith(("src_embedding", "tgt_embedding",
                                                                       "output_projection"))]
    assert all(torch.equal(weights[name], stored["model"][name]) for name in shared)
    assert child.codec.encode(["3. září 2017"])[0].src.count(1) == 0  # no <unk>: the new characters are known
    child.fit()
    after = child.network.state_dict()
    assert torch.equal(after["src_embedding.weight"][PAD_INDEX], torch.zeros(16))  # <pad> still zero and frozen


def test_padding_is_inert_and_batching_changes_nothing_with_an_extended_vocabulary(parent, tmp_path):
    parent_path, _ = parent
    child = cronos.Cronos.from_config(cronos.load_config(child_config(tmp_path, parent_path, NEW_PAIRS,
                                                                      vocabulary="extend")))
    child.fit()
    sources = [s for s, _ in NEW_PAIRS[:6]] + ["Thu 26 Nov 2026"]
    targets = [t for _, t in NEW_PAIRS[:6]] + ["2026-11-26"]
    assert child.translate(sources, beam_size=3) == [child.translate([s], beam_size=3)[0] for s in sources]
    assert child.score(list(zip(sources, targets))) == [child.score([pair])[0] for pair in zip(sources, targets)]
    explanations = child.explain(sources[:3])
    padded = child.explain(sources[:3] + ["a much longer source sentence than the others, to pad them"])[:3]
    assert all(torch.equal(a.attention, b.attention) for a, b in zip(explanations, padded))


def test_sentencepiece_pieces_are_merged_into_the_models_and_shared_tied_embeddings_stay_one(tmp_path):
    transformer = {"type": "transformer", "hidden_size": 16, "layers": 1, "heads": 2, "ff_size": 32}
    subwords = {"tokenizer": "sentencepiece", "sentencepiece": {"vocab_size": 100}}
    model = {"embedding_size": 16, "encoder": transformer, "decoder": transformer, "share_embeddings": True,
             "tie_output_embedding": True}
    parent_config = tiny_config(tmp_path / "parent", data=subwords, model=model, training={"epochs": 1})
    cronos.fit(cronos.load_config(parent_config))
    parent_path = tmp_path / "parent" / "run" / "best.pt"
    config = child_config(tmp_path / "child", parent_path, NEW_PAIRS, vocabulary="extend")
    config["data"] = {**config["data"], "tokenizer": "sentencepiece", "sentencepiece": {"vocab_size": 60}}
    config["model"] = model
    child = cronos.Cronos.from_config(cronos.load_config(config))
    stored = torch.load(parent_path, weights_only=True)
    old, new = stored["src_vocab"], child.codec.src_vocab.itos
    assert new[:len(old)] == old and len(new) > len(old)
    assert child.codec.src_vocab == child.codec.tgt_vocab  # one joint vocabulary still
    assert child.network.src_embedding is child.network.tgt_embedding  # shared
    assert torch.equal(child.network.src_embedding.weight[:len(old)], stored["model"]["src_embedding.weight"])
    pieces = child.codec.src_tokenizer.tokenize("3. září 2017")
    assert all(piece in child.codec.src_vocab for piece in pieces)
    saved = child.save(tmp_path / "child.pt")  # the merged SentencePiece model travels in the checkpoint
    assert cronos.Cronos.load(saved).codec.src_tokenizer.tokenize("3. září 2017") == pieces


def test_an_extended_run_refuses_another_tokenizer(parent, tmp_path):
    parent_path, _ = parent
    config = child_config(tmp_path, parent_path, vocabulary="extend")
    config["data"]["tokenizer"] = "word"
    with pytest.raises(cronos.ConfigError, match="data.tokenizer: the model of training.init_from was trained with "
                                                 "'char' and this config says 'word': an extended vocabulary adds"):
        cronos.Cronos.from_config(cronos.load_config(config))


def test_prepare_reads_the_data_with_the_vocabulary_the_run_will_train_with(parent, tmp_path, capsys, monkeypatch):
    from helpers import run_cli, write_config

    parent_path, _ = parent
    config = write_config(tmp_path / "child.yaml", child_config(tmp_path, parent_path, NEW_PAIRS,
                                                                vocabulary="extend"))
    code, out, err = run_cli(["prepare", str(config)], "", capsys, monkeypatch)
    assert code == 0, err
    child = cronos.Cronos.from_config(cronos.load_config(config))
    assert (f"vocabulary: {len(child.codec.src_vocab)} source, {len(child.codec.tgt_vocab)} target tokens"
            in out)


def test_a_model_started_from_learns_new_tags_as_fresh_rows(parent, tmp_path):
    parent_path, _ = parent
    config = child_config(tmp_path, parent_path)
    new = tmp_path / "new.tsv"
    new.write_text("".join(f"{s}\t{t}\n" for s, t in NEW_PAIRS), encoding="utf-8")
    config["data"]["train"] = [{"path": config["data"]["train"], "tag": "<2iso>"}, {"path": str(new), "tag": "<2cs>"}]
    child = cronos.Cronos.from_config(cronos.load_config(config))
    stored = torch.load(parent_path, weights_only=True)
    old = stored["src_vocab"]
    assert child.codec.src_vocab.itos[:len(old)] == old and child.codec.src_vocab.tags == ("<2iso>", "<2cs>")
    assert torch.equal(child.network.state_dict()["src_embedding.weight"][:len(old)],
                       stored["model"]["src_embedding.weight"])
