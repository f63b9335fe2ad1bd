"""Every bad checkpoint gives a clear error naming the file and the problem."""
import json

import pytest
import torch

import cronos
from cronos.storage.checkpoint import FORMAT_VERSION, CheckpointError, load_checkpoint, save_checkpoint


@pytest.fixture
def good(trained_models, tmp_path):
    return trained_models["rnn"].save(tmp_path / "good.pt")


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"nope\.pt: no such checkpoint"):
        cronos.Cronos.load(tmp_path / "nope.pt")


def test_a_folder_is_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="is a folder"):
        cronos.Cronos.load(tmp_path)


def test_truncated_file(good, tmp_path):
    data = good.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pt: not a readable checkpoint \(truncated or corrupt\?\)"):
        cronos.Cronos.load(cut)


def test_corrupt_file(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match=r"junk\.pt: not a checkpoint \(cronos checkpoints are the zip files"):
        cronos.Cronos.load(junk)


def test_a_torch_file_that_is_not_ours(tmp_path):
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match=r"other\.pt: not a cronos checkpoint"):
        cronos.Cronos.load(other)


def test_future_format_version(good, tmp_path):
    payload = load_checkpoint(good)
    payload["format_version"] = FORMAT_VERSION + 1
    future = tmp_path / "future.pt"
    torch.save(payload, future)
    with pytest.raises(CheckpointError, match=rf"format version {FORMAT_VERSION + 1} is not supported"):
        cronos.Cronos.load(future)


def test_incomplete_checkpoint(good, tmp_path):
    payload = load_checkpoint(good)
    del payload["tgt_vocab"]
    torch.save(payload, tmp_path / "part.pt")
    with pytest.raises(CheckpointError, match="incomplete checkpoint, missing tgt_vocab"):
        cronos.Cronos.load(tmp_path / "part.pt")


def test_weights_that_do_not_fit_the_config(good, tmp_path):
    payload = load_checkpoint(good)
    payload["config"]["model"]["decoder"]["hidden_size"] = 48
    torch.save(payload, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="weights do not fit the model its config describes"):
        cronos.Cronos.load(tmp_path / "mismatch.pt")


def test_a_config_that_no_longer_validates(good, tmp_path):
    payload = load_checkpoint(good)
    payload["config"]["model"]["encoder"]["kind"] = "rnn"
    torch.save(payload, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match=r"incompatible checkpoint: .*model\.encoder\.kind: unknown key"):
        cronos.Cronos.load(tmp_path / "old.pt")


def test_unwritable_destination_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CheckpointError, match="cannot write checkpoint"):
        save_checkpoint(blocker / "sub" / "model.pt", {"config": {}, "src_vocab": [], "tgt_vocab": [], "model": {}})


# --- a checkpoint is untrusted input ----------------------------------------------------------------

def tampered(good, tmp_path, change) -> str:
    payload = load_checkpoint(good)
    change(payload)
    path = tmp_path / "tampered.pt"
    torch.save(payload, path)
    return str(path)


def set_model(section, key, value):
    return lambda payload: payload["config"]["model"][section].__setitem__(key, value)


@pytest.mark.parametrize("change, message", [
    (lambda p: p["config"]["model"].__setitem__("embedding_size", 10 ** 9),
     r"model\['src_embedding.weight'\] has shape \[\d+, 16\], the config needs \[\d+, 1000000000\]"),
    (set_model("encoder", "layers", 100000), r"model.encoder.layers is 100000, but the file holds \d+ tensors"),
    (set_model("decoder", "hidden_size", 10 ** 6), r"model\['decoder\..*'\] has shape"),
    (lambda p: p["model"].pop("output_projection.bias"), r"model\['output_projection.bias'\] is missing"),
    (lambda p: p["model"].__setitem__("extra.weight", torch.zeros(1)),
     r"model\['extra.weight'\] belongs to no part of the model"),
    (lambda p: p["model"].__setitem__("output_projection.bias", torch.zeros(3)),
     r"model\['output_projection.bias'\] has shape \[3\], the config needs \[\d+\]"),
    (lambda p: p.__setitem__("model", [1, 2, 3]), r"model: expected a mapping of weight names to tensors, got list"),
    (lambda p: p["model"].__setitem__("output_projection.bias", [0.0]),
     r"model\['output_projection.bias'\]: expected a tensor under a name, got list"),
    (lambda p: p["src_vocab"].__setitem__(5, 7), r"src_vocab\[5\]: expected a token string, got int"),
    (lambda p: p.__setitem__("config", "rm -rf /"), r"config: expected a mapping, got str"),
    (lambda p: p["model"]["output_projection.bias"].__setitem__(2, float("nan")),
     r"model\['output_projection.bias'\] holds NaN or infinite values"),
    (lambda p: p["model"]["decoder.combine.weight"].__setitem__((0, 0), float("-inf")),
     r"model\['decoder.combine.weight'\] holds NaN or infinite values"),
])
@pytest.mark.timeout(30)  # a guard that stops working builds the huge model: fail in seconds, not hours
def test_hostile_checkpoints_are_refused_naming_the_entry_before_a_model_is_built(good, tmp_path, change, message):
    import time

    path = tampered(good, tmp_path, change)
    started = time.monotonic()
    with pytest.raises(CheckpointError, match=message) as caught:
        cronos.Cronos.load(path, device="cpu")
    assert str(caught.value).startswith(path) and "\n" not in str(caught.value)
    assert time.monotonic() - started < 10  # refused from the file's own sizes, not after allocating


def test_a_file_that_is_not_a_checkpoint_says_so_and_never_advises_unsafe_loading(tmp_path):
    import os
    import pickle

    class Payload:
        def __reduce__(self):
            return os.system, ("echo this would run",)

    torch.save({"format": "cronos-checkpoint", "model": Payload()}, tmp_path / "code.pt")
    with open(tmp_path / "plain.pkl", "wb") as file:
        pickle.dump({"a": 1}, file)
    for name, message in (("code.pt", "holds Python objects other than tensors and plain data, which cronos never "
                                      "loads"),
                          ("plain.pkl", "not a checkpoint (cronos checkpoints are the zip files torch.save writes)")):
        with pytest.raises(CheckpointError) as caught:
            cronos.Cronos.load(tmp_path / name)
        assert message in str(caught.value) and "weights_only" not in str(caught.value), name
    with pytest.raises(CheckpointError, match="/dev/zero: is a device or a socket, not a checkpoint file"):
        cronos.Cronos.load("/dev/zero")


def test_resuming_from_a_tampered_last_pt_names_what_does_not_fit(tmp_path):
    from helpers import tiny_config

    config = tiny_config(tmp_path, training={"epochs": 1})
    cronos.fit(cronos.load_config(config))
    last = tmp_path / "run" / "last.pt"
    payload = load_checkpoint(last)
    payload["model"]["output_projection.bias"] = torch.zeros(2)
    torch.save(payload, last)
    config["training"].update(epochs=2, resume="auto")
    with pytest.raises(CheckpointError, match=r"model\['output_projection.bias'\] has shape \[2\]"):
        cronos.fit(cronos.load_config(config))
    payload = load_checkpoint(tmp_path / "run" / "best.pt")
    payload["training"] = {"optimizer": {"state": "nonsense"}, "scheduler": None, "rng": 3, "progress": {}}
    torch.save(payload, last)
    with pytest.raises(CheckpointError, match="its training state does not fit this run"):
        cronos.fit(cronos.load_config(config))


def test_files_a_checkpoints_config_names_are_never_quoted_in_messages(good, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("admin:SECRET-HASH-7f3a9:19000:0:99999:7:::\n", encoding="utf-8")
    path = tampered(good, tmp_path, lambda p: p["config"]["data"].__setitem__("test", str(secret)))
    model = cronos.Cronos.load(path, device="cpu")
    with pytest.raises(cronos.DataError) as caught:
        model.evaluate("test")
    assert "secret.txt:1: expected 'source<TAB>target', found no tab" in str(caught.value)
    assert "SECRET" not in str(caught.value) and "admin" not in str(caught.value)


@pytest.mark.parametrize("family", ["rnn", "transformer"])
def test_a_checkpoint_of_the_previous_format_still_loads(trained_models, family, tmp_path):
    """cronos 0.1 stored every config key, also those of the other encoder/decoder type, which a
    config may no longer give; loading and resuming from such a file still work."""
    import dataclasses

    model = trained_models[family]
    payload = load_checkpoint(model.save(tmp_path / "new.pt"))
    payload["config"] = dataclasses.asdict(model.config)  # every key, as 0.1 wrote it
    assert "cell" in payload["config"]["model"]["decoder"] and "ff_size" in payload["config"]["model"]["encoder"]
    torch.save(payload, tmp_path / "old.pt")
    old = cronos.Cronos.load(tmp_path / "old.pt", device="cpu")
    assert old.config == model.config
    assert old.translate(["1/2/07", "Thu 26 Nov 2026"]) == model.translate(["1/2/07", "Thu 26 Nov 2026"])


def test_non_finite_weights_are_refused_by_every_command_and_scores_stay_json(good, tmp_path, monkeypatch, capsys):
    from cronos.cli import main

    broken = tampered(good, tmp_path, lambda p: p["model"]["output_projection.bias"].__setitem__(0, float("nan")))
    for argv in (["average", broken, str(good), "-o", str(tmp_path / "avg.pt")], ["evaluate", broken],
                 ["score", broken], ["explain", broken, "1/2/07", "--out", str(tmp_path / "x")]):
        assert main(argv) == 1, argv
        error = capsys.readouterr().err
        assert "holds NaN or infinite values" in error and error.count("\n") == 1, argv
    assert not (tmp_path / "avg.pt").exists() and not (tmp_path / "x").exists()
    # a loss that overflows (from finite weights) is written as JSON's null, never as NaN
    monkeypatch.setattr(cronos.Translator, "evaluate",
                        lambda self, data, beam_size=None, tag=None: {"loss": float("nan"), "bleu": 1.5})
    assert main(["evaluate", str(good)]) == 0
    assert json.loads(capsys.readouterr().out, parse_constant=pytest.fail) == {"loss": None, "bleu": 1.5}


def test_a_checkpoint_that_reads_text_another_way_is_not_the_same_model():
    """The same vocabularies, but lowercased input: resuming or averaging with it would feed the
    model other ids for the same text, so it is another model (``TextCodec.differences``)."""
    from cronos.storage.checkpoint import StoredModel, check_same_model
    from cronos.data import TextCodec, Vocabulary

    vocab = Vocabulary(["<pad>", "<unk>", "<bos>", "<eos>", "a", "b"])
    ours = cronos.load_config({"data": {"tokenizer": "char"}})
    theirs = cronos.load_config({"data": {"tokenizer": "char", "lowercase": True}})
    codec = TextCodec.for_data(ours.data, vocab, vocab)
    assert [str(d) for d in codec.differences(TextCodec.for_data(theirs.data, vocab, vocab))] == [
        "its source tokenizer differs", "its target tokenizer differs"]
    with pytest.raises(CheckpointError, match=r"^last\.pt: its source tokenizer differs from that of this config "
                                              r"\(data\.tokenizer, data\.lowercase\)"):
        check_same_model(StoredModel(theirs, vocab, vocab, {}, None), ours, codec, "last.pt")
    check_same_model(StoredModel(ours, vocab, vocab, {}, None), ours, codec, "last.pt")  # the same: no error
