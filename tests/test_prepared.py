"""Prepared training splits (``data.prepared``): the same examples as in memory, the same training,
and a folder that is used only when it matches what it was made from."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
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
            "sentencepiece": {"tokenizer": "sentencepiece", "sentencepiece": {"vocab_size": 200}},
            "word, sources ending with <eos>": {"tokenizer": "word", "source_eos": True}}


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


def test_two_workers_prepare_what_one_does_in_the_order_of_the_lines(tmp_path, monkeypatch):
    """In chunks of 50 lines, 16 of them; the first chunk's lines are long, so that its worker
    finishes after the other's: the chunks must still be merged in the order of the lines."""
    monkeypatch.setattr("cronos.data.preparation.CHUNK_PAIRS", 50)
    config = data_config(tmp_path, tokenizer="char", max_length=400, long_policy="truncate",
                         prepared=str(tmp_path / "one"))
    lines = Path(config.train).read_text(encoding="utf-8").splitlines(keepends=True)
    long_ones = [f"{source * 200}\t{target}" for source, target in (line.split("\t") for line in lines[:50])]
    Path(config.train).write_text("".join(long_ones + lines[50:]), encoding="utf-8")
    one = load_training_data(config)
    two = load_training_data(dataclasses.replace(config, prepared=str(tmp_path / "two"), workers=2))
    assert_same_data(two, one)
    assert two.origins[0].endswith("train.tsv:1") and two.examples[0].src_length == 400


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


def test_a_filtered_prepared_split_holds_the_examples_filtered_in_memory(tmp_path):
    config = data_config(tmp_path, filters={"max_length_ratio": 2.5, "min_length": 7})
    in_memory = load_training_data(config)
    prepared = load_training_data(dataclasses.replace(config, prepared=str(tmp_path / "prepared")))
    assert_same_data(prepared, in_memory)
    assert in_memory.stats.filtered["max_length_ratio"] > 0 and in_memory.stats.filtered["min_length"] > 0


def test_other_filters_prepare_the_split_again(tmp_path, caplog):
    config = data_config(tmp_path, prepared=str(tmp_path / "prepared"))
    prepare(config, caplog)
    filtered = dataclasses.replace(config, filters=dataclasses.replace(config.filters, max_length_ratio=2.5))
    assert prepare(filtered, caplog)[0].endswith("(made with other settings: filters)")
    assert load_training_data(filtered).stats.filtered["max_length_ratio"] > 0


def test_a_data_file_edited_in_place_is_found_by_its_content_when_its_time_changed(tmp_path, caplog):
    """The same size, another modification time: the digest decides (a file only touched is used)."""
    folder = tmp_path / "prepared"
    config = data_config(tmp_path, prepared=str(folder))
    prepare(config, caplog)
    train = Path(config.train)
    stat = train.stat()
    os.utime(train, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched: the same content
    assert prepare(config, caplog) == []
    text = train.read_text(encoding="utf-8")
    train.write_text(text.replace("2019", "2018", 1), encoding="utf-8")  # the same size
    assert train.stat().st_size == stat.st_size
    os.utime(train, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2 * 10**9))
    assert prepare(config, caplog) == [f"preparing the training split in {folder} ({train} changed since it was "
                                       "prepared)"]
    assert load_training_data(config).examples == load_training_data(dataclasses.replace(config,
                                                                                         prepared=None)).examples


def _edit_manifest(folder: Path, edit) -> None:
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    edit(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


def _rewrite_array(folder: Path, name: str, array: np.ndarray) -> None:
    """Replace an array and record its new size and digest, as a manifest that vouches for it would."""
    np.save(folder / f"{name}.npy", array, allow_pickle=False)
    data = (folder / f"{name}.npy").read_bytes()

    def record(manifest):
        manifest["files"][f"{name}.npy"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    _edit_manifest(folder, record)


@pytest.mark.parametrize("edit, reason", [
    (lambda m: m.update(files=[]), "its manifest does not list the files of a prepared split"),
    (lambda m: m["files"].update({"src_ids.npy": 5}), "its manifest records src_ids.npy without its size"),
    (lambda m: m.update(files={}), "its manifest does not list the files of a prepared split"),
    (lambda m: m.update(settings=[]), "its manifest holds no settings"),
    (lambda m: m.update(data={"x": {}}), "its manifest does not record its data files as cronos does"),
    (lambda m: m.update(examples="many"), "its manifest does not record how many examples it holds"),
    (lambda m: m.clear() or m.update(format="cronos prepared training split", format_version=1),
     "its manifest holds no settings"),
])
def test_a_manifest_of_the_wrong_shape_is_stale_and_prepared_again(tmp_path, caplog, edit, reason):
    folder = tmp_path / "prepared"
    config = data_config(tmp_path, prepared=str(folder))
    load_training_data(config)
    expected = load_training_data(dataclasses.replace(config, prepared=None)).examples
    _edit_manifest(folder, edit)
    said = prepare(config, caplog)
    assert len(said) == 1 and said[0].startswith(f"preparing the training split in {folder} ({reason}"), said
    assert load_training_data(config).examples == expected


def test_an_emptied_file_list_does_not_turn_the_integrity_checks_off(tmp_path, caplog):
    folder = tmp_path / "prepared"
    config = data_config(tmp_path, prepared=str(folder))
    load_training_data(config)
    expected = load_training_data(dataclasses.replace(config, prepared=None)).examples
    ids = folder / "src_ids.npy"
    edited = bytearray(ids.read_bytes())
    edited[-1] ^= 1
    ids.write_bytes(bytes(edited))
    _edit_manifest(folder, lambda m: m.update(files={}))
    assert prepare(config, caplog)[0].endswith("(its manifest does not list the files of a prepared split "
                                               "(src_ids.npy, src_offsets.npy, tgt_ids.npy, tgt_offsets.npy, "
                                               "lines.npy, vocabularies.json))")
    assert load_training_data(config).examples == expected


@pytest.mark.parametrize("name, change, reason", [
    ("src_ids", lambda a: np.where(np.arange(len(a)) == 3, 70, a).astype(a.dtype),
     "its src_ids.npy holds ids outside its vocabulary of 70 ("),
    ("tgt_offsets", lambda a: np.where(np.arange(len(a)) == 2, a[1] - 1, a),
     "its tgt_offsets.npy gives example 1 -1 tokens (offsets must increase)"),
    ("src_offsets", lambda a: a - 1, "its src_offsets.npy does not span its"),
    ("src_offsets", lambda a: np.append(a[:-1], a[-1] + 5), "its src_offsets.npy does not span its"),
    ("lines", lambda a: a[:-1], "its lines.npy has 799 entries for 800 examples"),
    ("tgt_ids", lambda a: a.astype(np.float32), "its tgt_ids.npy is not a list of whole numbers"),
])
def test_arrays_that_their_manifest_vouches_for_but_cronos_never_writes_are_prepared_again(tmp_path, caplog, name,
                                                                                            change, reason):
    folder = tmp_path / "prepared"
    config = data_config(tmp_path, prepared=str(folder))
    load_training_data(config)
    expected = load_training_data(dataclasses.replace(config, prepared=None)).examples
    _rewrite_array(folder, name, change(np.load(folder / f"{name}.npy")))
    said = prepare(config, caplog)
    assert len(said) == 1 and reason in said[0], said
    assert load_training_data(config).examples == expected


def test_a_folder_cronos_did_not_write_is_never_replaced_nor_are_temporary_folders_a_user_made(tmp_path, caplog):
    folder = tmp_path / "prepared"
    config = data_config(tmp_path, prepared=str(folder))
    folder.mkdir()
    (folder / "manifest.json").write_text('{"name": "x"}', encoding="utf-8")
    (folder / "thesis.tex").write_text("years of work", encoding="utf-8")
    with pytest.raises(DataError, match=rf"data\.prepared: {folder} holds a manifest\.json that cronos did not "
                                        r"write; give a new or empty folder, or delete it"):
        load_training_data(config)
    assert (folder / "thesis.tex").read_text(encoding="utf-8") == "years of work"
    with open(folder / "manifest.json", "wb") as huge:  # 17 MiB (sparse): refused from its size, never read
        huge.truncate(17 << 20)
    with pytest.raises(DataError, match=r"holds a manifest\.json that cronos did not write"):
        load_training_data(config)
    assert (folder / "manifest.json").stat().st_size == 17 << 20

    (folder / "manifest.json").unlink()
    (folder / "thesis.tex").unlink()
    load_training_data(config)  # an empty folder is taken
    (folder / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(DataError, match=r"holds files cronos did not write beside its prepared split \(notes\.txt\)"):
        load_training_data(dataclasses.replace(config, max_length=50))  # stale: it would be replaced
    assert (folder / "notes.txt").read_text(encoding="utf-8") == "mine"
    (folder / "notes.txt").unlink()

    users = [tmp_path / "prepared.partial-1", tmp_path / "prepared.old-2", tmp_path / "prepared.partial-x"]
    for made in users:
        made.mkdir()
        (made / "keep.txt").write_text("mine", encoding="utf-8")
    (users[1] / ".cronos-temporary").write_text("not what cronos writes", encoding="utf-8")
    assert prepare(dataclasses.replace(config, max_length=50), caplog)[0].endswith(
        "(made with other settings: max_length)")
    assert all((made / "keep.txt").read_text(encoding="utf-8") == "mine" for made in users)

    link = tmp_path / "linked"
    link.symlink_to(folder)  # used as it is while it matches; never replaced through the link
    assert prepare(dataclasses.replace(config, max_length=50, prepared=str(link)), caplog) == []
    with pytest.raises(DataError, match=r"linked is a link; a prepared split is replaced by renaming folders"):
        load_training_data(dataclasses.replace(config, prepared=str(link)))
    assert link.is_symlink() and (folder / "manifest.json").exists()


@pytest.mark.parametrize("place, message", [
    ("/", "data.prepared: / is the root of the file system; name a folder of its own"),
    ("file/prepared", "data.prepared: {tmp}/file/prepared is under {tmp}/file, which is a file, not a folder"),
])
def test_a_prepared_folder_where_none_can_be_is_one_line(tmp_path, place, message):
    (tmp_path / "file").write_text("a file", encoding="utf-8")
    config = data_config(tmp_path, prepared=place if place == "/" else str(tmp_path / place))
    with pytest.raises(DataError, match=re.escape(message.format(tmp=tmp_path))):
        load_training_data(config)


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


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux's /proc)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended while listed
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="lists processes through Linux's /proc")
def test_a_killed_parallel_preparation_takes_its_workers_along_and_the_next_one_neither_waits_nor_keeps_its_folder(
        tmp_path):
    """``kill -9`` of ``cronos prepare --workers 2`` while its workers tokenise: they end with it, no
    lock is left held, and the next preparation removes the killed one's temporary folder."""
    config = tiny_config(tmp_path, data={"prepared": str(tmp_path / "p")})
    train = Path(config["data"]["train"])
    train.write_text(train.read_text(encoding="utf-8") * 300, encoding="utf-8")  # 240,000 pairs: seconds
    path = write_config(tmp_path / "tiny.yaml", config)
    command = subprocess.Popen(cronos_command("prepare", str(path), "--workers", "2"), stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 120
    while len(workers := _children(command.pid)) < 2 or not list(tmp_path.glob("p.partial-*/src_ids.provisional")):
        assert command.poll() is None and time.monotonic() < deadline, command.stderr.read()
        time.sleep(0.05)
    command.send_signal(signal.SIGKILL)
    command.wait(timeout=60)
    assert not (tmp_path / "p").exists() and list(tmp_path.glob("p.partial-*"))  # killed while writing
    deadline = time.monotonic() + 10
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(map(_alive, workers)), "the workers outlived the killed preparation"
    again = subprocess.run(cronos_command("prepare", str(path)), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "waiting for" not in again.stderr, again.stderr
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
    real_open = os.open

    def read_only(path, *args, **kwargs):
        if str(path).endswith(".lock"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr("os.open", read_only)
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


@pytest.mark.parametrize("prepared", [False, True], ids=["in memory", "prepared"])
def test_sources_end_with_eos_in_training_as_in_every_other_door(tmp_path, prepared):
    """``data.source_eos``: a training source ends with <eos> as the codec's do (what translate and
    evaluate read), its length counts it, and the vocabulary counted from the data holds no trace of it."""
    from cronos.data import PAD_INDEX, TextCodec
    from cronos.data.vocab import EOS_INDEX

    config = data_config(tmp_path, tokenizer="word", source_eos=True)
    if prepared:
        config = dataclasses.replace(config, prepared=str(tmp_path / "prepared"))
    data = load_training_data(config)
    plain = load_training_data(dataclasses.replace(config, source_eos=False, prepared=None))
    assert data.src_vocab == plain.src_vocab and "\n<eos>" not in data.src_vocab
    codec = TextCodec.for_data(config, data.src_vocab, data.tgt_vocab)
    first = (tmp_path / "data" / "train.tsv").read_text(encoding="utf-8").splitlines()[0].split("\t")
    (encoded,) = codec.encode([first[0]], [first[1]])
    assert data.examples[0].src == encoded.src == plain.examples[0].src + (EOS_INDEX,)
    assert data.examples[0].src_length == plain.examples[0].src_length + 1 and PAD_INDEX not in encoded.src
