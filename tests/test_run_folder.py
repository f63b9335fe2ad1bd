"""A run's folder: an earlier run is never replaced by surprise, one run per folder at a time, and
``fit`` returns only weights of its own run."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
import torch

import cronos
from cronos.storage.checkpoint import load_checkpoint
from cronos.training.run_folder import RunFolder, RunFolderError, claim
from cronos.training.trainer import Trainer
from helpers import ROOT, cronos_command, run_cli, stopping_at, tiny_config, write_config

RUN_FILES = ("best.pt", "last.pt", "metrics.jsonl")


def snapshot(run) -> dict[str, bytes]:
    return {name: (run / name).read_bytes() for name in RUN_FILES}


@pytest.fixture
def finished_run(tmp_path):
    """A finished one-epoch run in tmp_path/run, and its config."""
    config = tiny_config(tmp_path, training={"epochs": 1})
    cronos.fit(cronos.load_config(config))
    return config, tmp_path / "run"


def test_a_new_run_in_a_folder_holding_a_run_is_refused_and_changes_nothing(finished_run):
    config, run = finished_run
    before = snapshot(run)
    with pytest.raises(RunFolderError) as caught:
        cronos.fit(cronos.load_config(config))
    message = str(caught.value)
    assert message.startswith(f"{run}: holds a run (last.pt, best.pt, metrics.jsonl)")
    for way_on in ("training.resume=auto", "training.overwrite=true", "another output_dir"):
        assert way_on in message
    assert isinstance(caught.value, cronos.ConfigError) and "\n" not in message
    assert snapshot(run) == before
    # resuming from a checkpoint elsewhere into this folder would mix two runs: refused too
    elsewhere = tiny_config(run.parent / "other", training={"epochs": 1})
    cronos.fit(cronos.load_config(elsewhere))
    config["training"]["resume"] = str(run.parent / "other" / "run" / "last.pt")
    with pytest.raises(RunFolderError, match="holds a run"):
        cronos.fit(cronos.load_config(config))
    assert snapshot(run) == before


def test_resume_auto_on_a_finished_run_keeps_it_and_returns_its_best_weights(finished_run):
    config, run = finished_run
    before = snapshot(run)
    config["training"]["resume"] = "auto"
    model = cronos.Cronos.from_config(cronos.load_config(config))
    history = model.fit()
    assert snapshot(run) == before
    assert [h["step"] for h in history] == [25] and history.step == 25 and history.stopped_by is None
    for name, tensor in load_checkpoint(run / "best.pt")["model"].items():
        assert torch.equal(model.network.state_dict()[name], tensor), name


def test_overwrite_replaces_the_earlier_run(finished_run):
    config, run = finished_run
    (run / "notes.txt").write_text("mine")
    config["training"].update(epochs=2, overwrite=True)
    cronos.fit(cronos.load_config(config))
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2]  # the new run's lines only
    assert load_checkpoint(run / "last.pt")["training"]["progress"]["step"] == 50
    assert (run / "notes.txt").read_text() == "mine"  # files a run does not write are not touched


def test_overwrite_and_resume_together_are_a_config_error():
    with pytest.raises(cronos.ConfigError, match="training.overwrite: .*set only one"):
        cronos.load_config({"training": {"overwrite": True, "resume": "auto"}})


def test_resume_auto_with_run_files_but_no_last_pt_is_refused(finished_run):
    config, run = finished_run
    (run / "last.pt").unlink()
    config["training"]["resume"] = "auto"
    with pytest.raises(RunFolderError, match=r"holds files of a run \(best.pt, metrics.jsonl\) but no last.pt"):
        cronos.fit(cronos.load_config(config))


@pytest.mark.parametrize("decoder_size", [64, 48])  # the same architecture, and another one
def test_fit_stopped_before_its_first_validation_returns_its_own_weights(finished_run, monkeypatch, decoder_size):
    config, run = finished_run
    config["training"].update(overwrite=True)
    config["model"]["decoder"]["hidden_size"] = decoder_size
    monkeypatch.setattr(Trainer, "_train_step", stopping_at(3))
    model = cronos.Cronos.from_config(cronos.load_config(config))
    history = model.fit()
    assert history.stopped_by == "test" and history.step == 3 and history.best_step is None and list(history) == []
    assert not (run / "best.pt").exists()
    for name, tensor in load_checkpoint(run / "last.pt")["model"].items():
        assert torch.equal(model.network.state_dict()[name], tensor), name


def test_cli_refuses_a_second_run_with_one_line_and_exit_code_2(finished_run, tmp_path, capsys, monkeypatch):
    config, run = finished_run
    before = snapshot(run)
    code, _, err = run_cli(["train", str(write_config(tmp_path / "c.yaml", config))], "", capsys, monkeypatch)
    assert code == 2 and err.strip().splitlines()[-1] == (
        f"cronos: error: {run}: holds a run (last.pt, best.pt, metrics.jsonl); continue it with "
        "training.resume=auto, replace it with training.overwrite=true, or choose another output_dir")
    assert "Traceback" not in err and snapshot(run) == before


HOLD = """
import sys, time
from pathlib import Path
from cronos.training.run_folder import RunFolder, claim
with claim(RunFolder(Path(sys.argv[1])), None, False):
    print("holding", flush=True)
    time.sleep(600)
"""


def hold_the_folder(path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True,
                               cwd=ROOT)
    assert process.stdout.readline().strip() == "holding"
    return process


def test_one_run_per_folder_and_a_killed_run_does_not_leave_it_locked(tmp_path):
    folder = RunFolder(tmp_path / "run")
    holder = hold_the_folder(folder.path)
    try:
        with pytest.raises(RunFolderError, match=rf"another training run is using this folder \(pid {holder.pid} on "):
            with claim(folder, None, False):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    with claim(folder, None, False):  # the kernel released the dead process's lock
        pass


def test_a_second_training_on_a_busy_folder_stops_at_once_and_the_first_goes_on(tmp_path, capsys, monkeypatch):
    config = write_config(tmp_path / "long.yaml", tiny_config(tmp_path, training={"epochs": 400,
                                                                                   "checkpoint_every": 2}))
    first = subprocess.Popen(cronos_command("train", str(config)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "run" / "last.pt").exists():
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.05)
        code, _, err = run_cli(["train", str(config), "--set", "training.resume=auto"], "", capsys, monkeypatch)
        assert code == 2, err
        assert f"another training run is using this folder (pid {first.pid} on" in err
        assert first.poll() is None  # the first run is untouched and still training
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    assert first.returncode == 0
