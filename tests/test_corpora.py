"""Several training corpora (``data.train`` as a list): one vocabulary, tags that start the sources
of their corpus, epochs drawn by weight (the same in every process and epoch by epoch), what the
log and metrics.jsonl say, translating with a tag, padding still inert, P7, and bad input."""
from __future__ import annotations

import copy
import json
import logging

import numpy as np
import pytest
import torch

import cronos
from cronos.data import DataError, load_training_data
from cronos.data.corpora import epoch_examples
from cronos.training.epochs import EpochPlan
from cronos.training.trainer import Trainer
from helpers import DATES, run_cli, tiny_config, write_config

NO_DROPOUT = {"encoder": {"type": "rnn", "hidden_size": 32, "dropout": 0.0},
              "decoder": {"type": "rnn", "hidden_size": 64, "dropout": 0.0}}


def write_corpora(folder):
    """Two corpora of the dates data: dates to ISO (300 pairs) and ISO to dates (100 pairs)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = (DATES / "train.tsv").read_text(encoding="utf-8").splitlines()
    forward, backward = folder / "forward.tsv", folder / "backward.tsv"
    forward.write_text("\n".join(lines[:300]) + "\n", encoding="utf-8")
    backward.write_text("".join(f"{t}\t{s}\n" for s, t in (line.split("\t") for line in lines[300:400])),
                        encoding="utf-8")
    return forward, backward


def corpora_config(folder, forward_weight=1.0, backward_weight=1.0, **sections):
    forward, backward = write_corpora(folder / "corpora")
    corpora = [{"path": str(forward), "weight": forward_weight, "tag": "<2iso>"},
               {"path": str(backward), "weight": backward_weight, "tag": "<2text>", "name": "iso_to_text"}]
    config = tiny_config(folder, **sections)
    config["data"] = {**config["data"], "train": corpora}
    return config


def test_one_vocabulary_and_each_corpus_sources_start_with_its_tag(tmp_path):
    data = load_training_data(cronos.load_config(corpora_config(tmp_path)).data)
    vocab = data.src_vocab
    assert vocab.itos[-2:] == ["<2iso>", "<2text>"] and vocab.tags == ("<2iso>", "<2text>")
    assert len(data.examples) == 400 and [(d.name, d.start, d.stop) for d in data.corpora] == [
        ("forward.tsv", 0, 300), ("iso_to_text", 300, 400)]
    assert data.examples[0].src[0] == vocab.stoi["<2iso>"] and data.examples[299].src[0] == vocab.stoi["<2iso>"]
    assert data.examples[300].src[0] == vocab.stoi["<2text>"]
    assert data.examples[0].src_length == len(data.examples[0].src)  # the tag is one more real token
    assert data.origins[300].endswith("backward.tsv:1") and data.origins[299].endswith("forward.tsv:300")
    assert vocab.encode(["<2iso>"]) == [vocab.unk_index]  # text never becomes a tag


def test_an_epoch_draws_each_corpus_by_its_weight_the_same_in_every_process(tmp_path):
    config = cronos.load_config(corpora_config(tmp_path, forward_weight=0.5, backward_weight=2.5))
    data = load_training_data(config.data)
    chosen = epoch_examples(data.corpora, config.seed, 0)
    assert (chosen < 300).sum() == 150 and (chosen >= 300).sum() == 250  # half of 300, 2.5 x 100
    assert len(set(chosen[chosen < 300].tolist())) == 150  # a fraction is drawn without repeats
    assert np.array_equal(chosen, epoch_examples(data.corpora, config.seed, 0))
    assert not np.array_equal(chosen, epoch_examples(data.corpora, config.seed, 1))  # another half next epoch
    plans = [EpochPlan(data, config.training, config.seed, 2).updates(1) for _ in range(2)]  # two processes
    assert [[[b.tolist() for b in share] for share in u] for u in plans[0]] == \
           [[[b.tolist() for b in share] for share in u] for u in plans[1]]


def test_the_log_and_metrics_say_how_many_examples_each_corpus_gave(tmp_path, caplog):
    config = cronos.load_config(corpora_config(tmp_path, forward_weight=0.5, training={"epochs": 1}))
    with caplog.at_level(logging.INFO, logger="cronos"):
        cronos.fit(config)
    assert "each epoch draws 150 examples from forward.tsv, 100 examples from iso_to_text" in caplog.text
    line = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert line["examples_per_corpus"] == {"forward.tsv": 150, "iso_to_text": 100}


def test_a_tag_chooses_the_direction_and_padding_stays_inert(tmp_path, capsys, monkeypatch):
    config = corpora_config(tmp_path, training={"epochs": 2})
    model = cronos.fit(cronos.load_config(config))
    sources = ["1/2/07", "Thu 26 Nov 2026", "5 May 1999"]
    tagged = model.translate(sources, beam_size=2, tag="<2iso>")
    assert tagged == model.translate(model.codec.encode(sources, tag="<2iso>"), beam_size=2)
    assert tagged == [model.translate([s], beam_size=2, tag="<2iso>")[0] for s in sources]  # alone = batched
    examples = model.codec.encode(sources, ["2007-02-01", "2026-11-26", "1999-05-05"], tag="<2iso>")
    assert model.score(examples) == [model.score([e])[0] for e in examples]
    with pytest.raises(ValueError, match=r"tag '<2fr>' is not one this model was trained with \(its tags: "
                                         r"<2iso>, <2text>\)"):
        model.translate(sources, tag="<2fr>")
    best = str(tmp_path / "run" / "best.pt")
    code, out, err = run_cli(["translate", best, "--beam", "2", "--tag", "<2iso>"], "\n".join(sources) + "\n",
                             capsys, monkeypatch)
    assert code == 0 and out.splitlines() == tagged, err
    code, _, err = run_cli(["translate", best, "--tag", "<2fr>"], "1/2/07\n", capsys, monkeypatch)
    assert code == 2 and "--tag: tag '<2fr>' is not one this model was trained with" in err
    assert cronos.Cronos.load(best).codec.src_vocab.tags == ("<2iso>", "<2text>")  # tags travel in the checkpoint
    pairs = list(zip(sources, ["2007-02-01", "2026-11-26", "1999-05-05"]))
    scores = model.evaluate(pairs, beam_size=2, tag="<2iso>")
    assert scores["loss"] == pytest.approx(-sum(s.log_prob for s in model.score(examples)) / sum(
        s.tokens for s in model.score(examples)), rel=1e-5)  # the tagged pairs' loss, not the untagged ones'
    assert scores["loss"] != model.evaluate(pairs, beam_size=2)["loss"]
    (tmp_path / "pairs.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
    code, out, err = run_cli(["evaluate", best, "--data", str(tmp_path / "pairs.tsv"), "--beam", "2", "--tag",
                              "<2iso>"], "", capsys, monkeypatch)
    assert code == 0 and json.loads(out)["bleu"] == pytest.approx(
        cronos.Cronos.load(best).evaluate(pairs, beam_size=2, tag="<2iso>")["bleu"]), err
    code, _, err = run_cli(["evaluate", best, "--tag", "<2fr>"], "", capsys, monkeypatch)
    assert code == 2 and "--tag: tag '<2fr>' is not one this model was trained with" in err


def test_p7_an_update_of_accumulated_batches_of_several_corpora_is_the_update_of_their_union(tmp_path):
    config = cronos.load_config(corpora_config(tmp_path, 0.5, 2.0, model=NO_DROPOUT, training={"accumulate": 2}))
    union_config = cronos.load_config(corpora_config(tmp_path / "union", 0.5, 2.0, model=NO_DROPOUT))
    model = cronos.Cronos.from_config(config)
    data = load_training_data(config.data)
    split = Trainer(copy.deepcopy(model.network).double(), model.codec, config, data, None)
    union = Trainer(copy.deepcopy(model.network).double(), model.codec, union_config, data, None)
    for update in split.plan.updates(0)[:3]:
        split._train_step(update)
        union._train_step([[np.concatenate(update[0])]])
    differences = [float((a - b).abs().max()) for a, b in zip(split.network.state_dict().values(),
                                                                union.network.state_dict().values())]
    assert max(differences) <= 1e-10


@pytest.mark.parametrize("change, message", [
    ({"weight": 0}, "data.train.0.weight: expected a value > 0, got 0.0"),
    ({"tag": "2fr"}, "data.train.0.tag: expected one token in angle brackets, such as <2fr>, got '2fr'"),
    ({"path": None}, "data.train.0.path: give a corpus either `path` (a TSV file) or both `src` and `tgt`"),
])
def test_a_bad_corpus_is_one_clear_line(tmp_path, change, message):
    config = corpora_config(tmp_path)
    config["data"]["train"][0].update(change)
    with pytest.raises(cronos.ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        cronos.load_config(config)


def test_an_empty_corpus_and_a_colliding_tag_are_one_clear_line(tmp_path):
    config = corpora_config(tmp_path)
    empty = tmp_path / "empty.tsv"
    empty.write_text(" \t \n", encoding="utf-8")
    config["data"]["train"].append({"path": str(empty)})
    config["data"]["empty_policy"] = "skip"
    with pytest.raises(DataError, match=r"empty.tsv: no training examples left after preprocessing"):
        load_training_data(cronos.load_config(config).data)
    words = tmp_path / "words.tsv"
    words.write_text("hello <2iso> world\tx y\n", encoding="utf-8")
    colliding = corpora_config(tmp_path, data={"tokenizer": "whitespace"})
    colliding["data"]["train"].append({"path": str(words)})
    with pytest.raises(DataError, match=r"the tag <2iso> is also a token of the training text"):
        load_training_data(cronos.load_config(colliding).data)


def assert_same_training_data(left, right):
    assert left.src_vocab == right.src_vocab and left.tgt_vocab == right.tgt_vocab
    assert list(left.examples) == list(right.examples) and list(left.origins) == list(right.origins)
    assert left.corpora == right.corpora


@pytest.mark.parametrize("tokenizer", ["whitespace", "char"])
def test_prepared_corpora_give_what_reading_them_gives_and_a_new_corpus_alone_is_read(tmp_path, caplog, tokenizer):
    config = corpora_config(tmp_path, data={"tokenizer": tokenizer, "min_freq": 2})
    in_memory = load_training_data(cronos.load_config(config).data)
    folder = tmp_path / "prepared"
    config["data"]["prepared"] = str(folder)
    assert_same_training_data(load_training_data(cronos.load_config(config).data), in_memory)
    forward_arrays = (folder / "corpora" / "forward.tsv" / "src_ids.npy").stat().st_mtime_ns
    lines = (DATES / "train.tsv").read_text(encoding="utf-8").splitlines()
    third = tmp_path / "more dates.tsv"   # a name a folder cannot take as it is
    third.write_text("\n".join(lines[400:450]) + "\n", encoding="utf-8")
    config["data"]["train"].append({"path": str(third), "weight": 2.0})
    caplog.set_level(logging.INFO, logger="cronos")
    caplog.clear()  # what the second reading says
    prepared = load_training_data(cronos.load_config(config).data)
    assert "preparing the corpus more dates.tsv" in caplog.text and "preparing the corpus forward.tsv" not in caplog.text
    assert "2 of 3 corpora were prepared before" in caplog.text
    assert (folder / "corpora" / "forward.tsv" / "src_ids.npy").stat().st_mtime_ns == forward_arrays
    assert sorted(p.name for p in (folder / "corpora").iterdir())[-1].startswith("more_dates.tsv-")
    config["data"]["prepared"] = None
    assert_same_training_data(prepared, load_training_data(cronos.load_config(config).data))
    assert prepared.corpora[2].per_epoch == 100 and prepared.origins[400].endswith("more dates.tsv:1")


def test_prepared_corpora_follow_a_changed_corpus_and_refuse_a_folder_of_one(tmp_path, caplog):
    config = corpora_config(tmp_path)
    config["data"]["prepared"] = str(tmp_path / "prepared")
    load_training_data(cronos.load_config(config).data)
    backward = config["data"]["train"][1]["path"]
    with open(backward, "a", encoding="utf-8") as file:
        file.write("2020-01-01\tJanuary 1, 2020\n")
    caplog.set_level(logging.INFO, logger="cronos")
    caplog.clear()  # what the second reading says
    assert len(load_training_data(cronos.load_config(config).data).examples) == 401
    assert "preparing the corpus iso_to_text" in caplog.text and "1 of 2 corpora were prepared before" in caplog.text
    single = tiny_config(tmp_path)
    single["data"]["prepared"] = str(tmp_path / "one")
    load_training_data(cronos.load_config(single).data)
    config["data"]["prepared"] = str(tmp_path / "one")
    with pytest.raises(DataError, match=r"holds the prepared split of one corpus, and data.train lists several"):
        load_training_data(cronos.load_config(config).data)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine", encoding="utf-8")
    config["data"]["prepared"] = str(tmp_path / "mine")
    with pytest.raises(DataError, match=r"holds files cronos did not write beside the prepared corpora \(notes.txt\)"):
        load_training_data(cronos.load_config(config).data)


def test_corpora_in_a_config_file_resolve_against_its_folder(tmp_path):
    forward, backward = write_corpora(tmp_path / "corpora")
    config = tiny_config(tmp_path)
    config["data"]["train"] = [{"path": "corpora/forward.tsv"}, {"src": "corpora/backward.tsv",
                                                                 "tgt": "corpora/forward.tsv"}]
    path = write_config(tmp_path / "config.yaml", config)
    loaded = cronos.load_config(path)
    assert loaded.data.train[0].path == str(forward) and loaded.data.train[1].src == str(backward)


def test_the_server_takes_a_tag_and_refuses_one_the_model_lacks(tmp_path):
    pytest.importorskip("fastapi")
    from cronos.server import Limits, build_app
    from test_server_app import _run

    model = cronos.fit(cronos.load_config(corpora_config(tmp_path, training={"epochs": 1})))
    app = build_app(model, Limits())

    async def scenario(client):
        return (await client.post("/translate", json={"text": ["1/2/07", "5 May 1999"], "tag": "<2iso>"}),
                await client.post("/score", json={"source": "1/2/07", "target": "2007-02-01", "tag": "<2iso>"}),
                await client.post("/translate", json={"text": "1/2/07", "tag": "<2fr>"}))

    translated, scored, refused = _run(app, scenario)
    assert translated.json() == {"translations": model.translate(["1/2/07", "5 May 1999"], tag="<2iso>")}
    expected = model.score(model.codec.encode(["1/2/07"], ["2007-02-01"], tag="<2iso>"))[0]
    assert scored.json()["scores"]["log_prob"] == expected.log_prob
    assert refused.status_code == 422 and "tag '<2fr>' is not one this model was trained with" in refused.json()["error"]


def test_a_resumed_run_draws_what_an_uninterrupted_one_draws(tmp_path, monkeypatch):
    from helpers import stopping_at

    straight = corpora_config(tmp_path / "straight", 0.5, 1.5, training={"epochs": 2})
    cronos.fit(cronos.load_config(straight))
    expected = torch.load(tmp_path / "straight" / "run" / "last.pt", weights_only=True)["model"]
    interrupted = corpora_config(tmp_path / "resumed", 0.5, 1.5, training={"epochs": 2})
    with monkeypatch.context() as patched:
        patched.setattr(Trainer, "_train_step", stopping_at(7))  # inside the first epoch
        cronos.fit(cronos.load_config(interrupted))
    interrupted["training"]["resume"] = "auto"
    cronos.fit(cronos.load_config(interrupted))
    found = torch.load(tmp_path / "resumed" / "run" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(found[name], expected[name]) for name in expected)


def test_a_weight_that_draws_no_example_is_refused(tmp_path):
    config = cronos.load_config(corpora_config(tmp_path, backward_weight=0.001))
    with pytest.raises(DataError, match=r"iso_to_text has 100 examples, and a weight of 0.001 draws none of them"):
        load_training_data(config.data)


def test_subword_regularisation_with_tags_is_refused_before_any_work(tmp_path, monkeypatch):
    import cronos.data.corpus as corpus

    config = corpora_config(tmp_path, data={"tokenizer": "sentencepiece",
                                            "sentencepiece": {"vocab_size": 100, "sampling_alpha": 0.1}})
    monkeypatch.setattr(corpus, "train_subword_models", lambda *args: pytest.fail("trained before refusing"))
    with pytest.raises(DataError, match="sampling_alpha: subword regularisation segments the text anew each epoch, "
                                        "without the corpora's tags"):
        load_training_data(cronos.load_config(config).data)


def test_prepared_corpora_with_pieces_trained_on_them_are_all_prepared_again_when_one_is_added(tmp_path, caplog):
    config = corpora_config(tmp_path, data={"tokenizer": "sentencepiece",
                                            "sentencepiece": {"vocab_size": 120, "model_type": "bpe"}})
    in_memory = load_training_data(cronos.load_config(config).data)
    config["data"]["prepared"] = str(tmp_path / "prepared")
    prepared = load_training_data(cronos.load_config(config).data)
    assert_same_training_data(prepared, in_memory)
    assert prepared.subwords.source == in_memory.subwords.source
    third = tmp_path / "third.tsv"
    third.write_text("".join(line + "\n" for line in (DATES / "train.tsv").read_text().splitlines()[400:450]))
    config["data"]["train"].append({"path": str(third)})
    caplog.set_level(logging.INFO, logger="cronos")
    caplog.clear()  # what the second reading says
    load_training_data(cronos.load_config(config).data)
    assert "preparing the corpus forward.tsv" in caplog.text and "were prepared before" not in caplog.text


def test_a_subword_model_with_tags_is_saved_and_read_back_with_them(tmp_path):
    """The tags follow the SentencePiece pieces in the vocabulary; the checkpoint's check of the
    pieces against the vocabulary reads them as tags, not as an altered file."""
    config = corpora_config(tmp_path, data={"tokenizer": "sentencepiece", "sentencepiece": {"vocab_size": 120}},
                            training={"epochs": 1})
    model = cronos.fit(cronos.load_config(config))  # reads best.pt back at the end
    loaded = cronos.Cronos.load(tmp_path / "run" / "best.pt")
    assert loaded.codec.src_vocab.tags == ("<2iso>", "<2text>") and len(loaded.codec.src_vocab) == 122
    assert loaded.translate(["1/2/07"], tag="<2iso>") == model.translate(["1/2/07"], tag="<2iso>")
