"""Prepared training splits (``data.prepared``): the same examples as in memory, the same training,
and a folder that is used only when it matches what it was made from."""
from __future__ import annotations

import dataclasses
import json
import resource
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import cronos
from cronos.config import load_config
from cronos.data import DataError, load_training_data
from helpers import cronos_command, run_cli, tiny_config, write_config

SETTINGS = {"char": {"tokenizer": "char"},
            "word": {"tokenizer": "word", "lowercase": True, "min_freq": 2, "max_length": 6,
                     "long_policy": "truncate"},
            "sentencepiece": {"tokenizer": "sentencepiece", "sentencepiece": {"vocab_size": 200}}}


def data_config(tmp_path: Path, **data):
    return load_config(tiny_config(tmp_path, data=data)).data


def assert_same_data(prepared, in_memory) -> None:
    assert prepared.examples == in_memory.examples
    assert (prepared.src_vocab, prepared.tgt_vocab) == (in_memory.src_vocab, in_memory.tgt_vocab)
    assert list(prepared.origins) == list(in_memory.origins)
    assert prepared.stats == in_memory.stats and prepared.subwords == in_memory.subwords


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_the_prepared_split_holds_the_examples_read_into_memory(tmp_path, setting):
    config = data_config(tmp_path, **SETTINGS[setting])
    in_memory = load_training_data(config, seed=3)
    prepared = load_training_data(dataclasses.replace(config, prepared=str(tmp_path / "prepared")), seed=3)
    assert isinstance(prepared.examples.src_ids, np.memmap) and len(prepared.examples) > 700
    assert_same_data(prepared, in_memory)
    assert prepared.examples[5] == in_memory.examples[5] and prepared.origins[5].endswith("train.tsv:6")


def test_two_workers_prepare_what_one_does(tmp_path):
    config = data_config(tmp_path, tokenizer="word", prepared=str(tmp_path / "one"))
    one = load_training_data(config)
    two = load_training_data(dataclasses.replace(config, prepared=str(tmp_path / "two"), workers=2))
    assert_same_data(two, one)


def test_training_on_the_prepared_split_ends_with_the_weights_of_training_in_memory(tmp_path):
    """Also with the batches built by two loader processes (data.loader_workers)."""
    weights = {}
    for name, data in (("memory", {}), ("prepared", {"prepared": str(tmp_path / "split")}),
                       ("prepared, two loader processes", {"prepared": str(tmp_path / "split"), "loader_workers": 2})):
        config = load_config(tiny_config(tmp_path / name, data=data,
                                         training={"epochs": 1, "checkpoint_every": None}))
        model = cronos.Cronos.from_config(config)
        model.fit()
        weights[name] = model.network.state_dict()
    for name in ("prepared", "prepared, two loader processes"):
        assert weights["memory"].keys() == weights[name].keys()
        for key, value in weights["memory"].items():
            assert torch.equal(value, weights[name][key]), (name, key)


def test_a_run_on_the_prepared_split_resumed_inside_an_epoch_ends_with_the_weights_of_one_in_memory(tmp_path):
    """Stopped at step 11 of 25 and resumed, with two loader processes: the batches after the
    stop, their order and the random numbers are those of a run that never stopped."""
    cronos.fit(cronos.load_config(tiny_config(tmp_path / "straight", training={"epochs": 1})))
    data = {"prepared": str(tmp_path / "split"), "loader_workers": 2}
    stopped = tiny_config(tmp_path / "resumed", data=data, training={"epochs": 1, "max_steps": 11})
    cronos.fit(cronos.load_config(stopped))
    resumed = cronos.fit(cronos.load_config(stopped), **{"training.resume": "auto", "training.max_steps": None})
    last = torch.load(tmp_path / "resumed" / "run" / "last.pt", weights_only=True)
    assert last["training"]["progress"]["step"] == 25
    expected = torch.load(tmp_path / "straight" / "run" / "last.pt", weights_only=True)["model"]
    for name, tensor in expected.items():
        assert torch.equal(last["model"][name], tensor), name
    assert resumed.translate(["1/2/07"])


def prepare(config, caplog) -> list[str]:
    """Load the training data; the lines that say the split was prepared, and why."""
    caplog.clear()
    with caplog.at_level("INFO", logger="cronos"):
        load_training_data(config)
    return [m for m in caplog.messages if m.startswith("preparing the training split")]


def test_a_prepared_split_is_used_while_it_matches_and_prepared_again_with_the_reason(tmp_path, caplog):
    folder = tmp_path / "prepared"
    config = data_config(tmp_path, prepared=str(folder))
    assert prepare(config, caplog) == [f"preparing the training split in {folder} (no prepared split there yet)"]
    assert prepare(config, caplog) == []  # up to date: mapped as it is

    train = Path(config.train)
    train.write_text(train.read_text(encoding="utf-8") + "Mon 1 Jan 2029\t2029-01-01\n", encoding="utf-8")
    assert prepare(config, caplog)[0].endswith(f"({train} changed size since it was prepared)")
    assert prepare(dataclasses.replace(config, max_length=50), caplog)[0].endswith(
        "(made with other settings: max_length)")
    assert prepare(config, caplog)[0].endswith("(made with other settings: max_length)")

    ids = folder / "src_ids.npy"
    edited = bytearray(ids.read_bytes())
    edited[-1] ^= 1
    ids.write_bytes(bytes(edited))
    assert prepare(config, caplog)[0].endswith("(its src_ids.npy was changed since it was prepared)")
    with open(ids, "r+b") as file:
        file.truncate(ids.stat().st_size - 2)
    assert prepare(config, caplog)[0].endswith("(its src_ids.npy was truncated or extended)")

    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    (folder / "manifest.json").write_text(json.dumps({**manifest, "format_version": 0}), encoding="utf-8")
    assert prepare(config, caplog)[0].endswith("(it has format 0, this cronos reads 1)")
    (folder / "manifest.json").unlink()  # a folder of other files is never replaced: it may be someone's data
    with pytest.raises(DataError, match=rf"data\.prepared: {folder} holds files that are no prepared split \(it has "
                                        r"no manifest\.json\); give a new or empty folder, or delete it"):
        load_training_data(config)
    assert (folder / "src_ids.npy").exists()


def test_a_failed_preparation_leaves_no_folder_a_later_run_would_use(tmp_path):
    config = data_config(tmp_path, prepared=str(tmp_path / "prepared"))
    train = Path(config.train)
    train.write_bytes(train.read_bytes() * 7 + b"Mon 1 Jan 2029\t\xff\n")  # found while preparing
    with pytest.raises(DataError, match=r"train\.tsv:5601: not valid UTF-8 \(byte 0xff at column 16\)"):
        load_training_data(config)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "prepared.lock"]


def test_subword_regularisation_on_a_prepared_split_is_refused_with_the_reason(tmp_path):
    config = data_config(tmp_path, tokenizer="sentencepiece", prepared=str(tmp_path / "prepared"),
                         sentencepiece={"vocab_size": 200, "sampling_alpha": 0.1})
    with pytest.raises(DataError, match=r"sampling_alpha: subword regularisation segments the training text anew "
                                        r"each epoch, and a prepared split \(data\.prepared\) keeps token ids"):
        load_training_data(config)


def test_two_prepare_commands_at_once_prepare_once_and_both_use_it(tmp_path):
    config = write_config(tmp_path / "tiny.yaml", tiny_config(tmp_path, data={"prepared": str(tmp_path / "p")}))
    commands = [subprocess.Popen(cronos_command("prepare", str(config)), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [command.communicate(timeout=240) for command in commands]
    assert [command.returncode for command in commands] == [0, 0], outputs
    logs = "".join(err for _, err in outputs)
    assert logs.count("preparing the training split") == 1
    assert all("examples: 800" in out for out, _ in outputs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "p", "p.lock", "tiny.yaml"]


def test_a_killed_preparation_leaves_only_a_temporary_folder_that_the_next_one_removes(tmp_path, capsys,
                                                                                     monkeypatch):
    config = tiny_config(tmp_path, data={"prepared": str(tmp_path / "p")})
    train = Path(config["data"]["train"])
    train.write_text(train.read_text(encoding="utf-8") * 300, encoding="utf-8")  # 240,000 pairs: seconds
    path = write_config(tmp_path / "tiny.yaml", config)
    command = subprocess.Popen(cronos_command("prepare", str(path)), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("p.partial-*/src_ids.provisional")) and time.monotonic() < deadline:
        time.sleep(0.05)
    command.send_signal(signal.SIGKILL)
    command.wait(timeout=60)
    assert not (tmp_path / "p").exists() and list(tmp_path.glob("p.partial-*"))  # killed while writing
    code, _, err = run_cli(["prepare", str(path)], "", capsys, monkeypatch)
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "p", "p.lock", "tiny.yaml"]


def test_a_disk_that_fills_while_preparing_is_one_line_and_leaves_no_folder(tmp_path, capsys, monkeypatch):
    """The kernel refuses the writes past a size (RLIMIT_FSIZE: what a full disk or a quota does to a
    writer, with EFBIG for ENOSPC); the next preparation, with room, succeeds."""
    config = tiny_config(tmp_path, data={"prepared": str(tmp_path / "p")})
    train = Path(config["data"]["train"])
    train.write_text(train.read_text(encoding="utf-8") * 10, encoding="utf-8")  # 8,000 pairs: 0.5 MB of ids
    path = write_config(tmp_path / "tiny.yaml", config)

    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failing write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 10, 256 << 10))

    full = subprocess.run(cronos_command("prepare", str(path)), capture_output=True, text=True, timeout=240,
                          preexec_fn=small_files)
    assert full.returncode == 1
    assert full.stderr.strip().splitlines()[-1] == (
        f"cronos: error: DataError: data.prepared: cannot write the prepared split beside {tmp_path / 'p'}: "
        "File too large; free some space or point data.prepared elsewhere")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "p.lock", "tiny.yaml"]
    code, _, err = run_cli(["prepare", str(path)], "", capsys, monkeypatch)
    assert code == 0, err


def test_a_prepared_split_where_no_lock_can_be_written_is_used_as_it_is_or_refused(tmp_path, monkeypatch):
    """A folder prepared by others in a place this user may not write (tests run as root, so the
    place is read-only by opening the lock failing as it would there)."""
    config = data_config(tmp_path, prepared=str(tmp_path / "shared"))
    prepared = load_training_data(config)
    real_open = open

    def read_only(path, *args, **kwargs):
        if str(path).endswith(".lock"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr("builtins.open", read_only)
    assert load_training_data(config).examples == prepared.examples  # up to date: used without a lock
    with pytest.raises(DataError, match=r"data\.prepared: .*shared cannot be used \(made with other settings: "
                                        r"max_length\) and cannot be prepared again here \(no lock can be written"):
        load_training_data(dataclasses.replace(config, max_length=50))


@pytest.mark.parametrize("where", ["memory", "prepared"])
def test_a_split_left_empty_by_the_rules_is_one_error_and_no_folder(tmp_path, where):
    config = data_config(tmp_path, max_length=1, prepared=str(tmp_path / "p") if where == "prepared" else None)
    with pytest.raises(DataError, match=r"train\.tsv: no training examples left after preprocessing"):
        load_training_data(config)
    assert not (tmp_path / "p").exists() and not list(tmp_path.glob("p.partial-*"))
