"""Every bad checkpoint gives a clear error naming the file and the problem."""
import pytest
import torch

import cronos
from cronos.checkpoint import FORMAT_VERSION, CheckpointError, load_checkpoint, save_checkpoint


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
    with pytest.raises(CheckpointError, match=r"junk\.pt: not a readable checkpoint"):
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
