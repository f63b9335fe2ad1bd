"""Checkpoint averaging: ``training.keep_checkpoints`` keeps the last validations' weights, and
``cronos average`` (``averaging.average_checkpoints``) writes their mean as a checkpoint that
evaluates like any other; incompatible checkpoints are refused."""
from __future__ import annotations

import subprocess

import pytest
import torch

import cronos
from cronos.storage.averaging import average_checkpoints
from cronos.storage.checkpoint import load_checkpoint
from helpers import run_cli, tiny_config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("averaging")
    config = cronos.load_config(tiny_config(folder, training={"epochs": 4, "keep_checkpoints": 3}))
    cronos.fit(config)
    return folder / "run"


@pytest.fixture
def cli(capsys, monkeypatch):
    """``cronos ARGS`` in this process: its exit code, stdout and stderr."""
    def run_command(*args: str) -> subprocess.CompletedProcess:
        return subprocess.CompletedProcess(args, *run_cli(list(args), "", capsys, monkeypatch))
    return run_command


def test_a_run_keeps_the_last_n_validations_weights(run):
    kept = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert kept == ["step_00000050.pt", "step_00000075.pt", "step_00000100.pt"]  # 25 steps an epoch, 4 epochs
    last = load_checkpoint(run / "checkpoints" / "step_00000100.pt")
    assert "training" not in last  # weights only, like best.pt
    final = load_checkpoint(run / "last.pt")["model"]
    assert all(torch.equal(last["model"][name], final[name]) for name in final)


def test_the_average_is_the_mean_of_the_weights_and_keeps_the_pad_rows_zero(run):
    paths = sorted((run / "checkpoints").iterdir())
    payload = average_checkpoints(paths)
    weights = [load_checkpoint(p)["model"] for p in paths]
    for name, averaged in payload["model"].items():
        expected = (sum(w[name].double() for w in weights) / 3).to(averaged.dtype)
        assert torch.equal(averaged, expected), name
    for table in ("src_embedding.weight", "tgt_embedding.weight"):
        assert torch.equal(payload["model"][table][0], torch.zeros_like(payload["model"][table][0]))
    assert not torch.equal(payload["model"]["tgt_embedding.weight"], weights[-1]["tgt_embedding.weight"])


def test_cronos_average_last_n_writes_a_checkpoint_that_evaluates(run, cli, tmp_path):
    out = tmp_path / "averaged.pt"
    result = cli("average", "--last", "3", str(run), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "averaged 3 checkpoints" in result.stdout
    model = cronos.Cronos.load(out)
    scores = model.evaluate("valid", beam_size=1)
    best = cronos.Cronos.load(run / "best.pt").evaluate("valid", beam_size=1)
    assert abs(scores["loss"] - best["loss"]) < 0.5  # a model of the same run, not noise
    assert model.translate(["Thu 26 Nov 2026"])[0]


def test_average_last_n_takes_the_newest_n_of_more_kept(run, cli, tmp_path):
    result = cli("average", "--last", "2", str(run), "-o", str(tmp_path / "two.pt"))
    assert result.returncode == 0, result.stderr
    averaged = result.stdout.split(": ", 1)[1].split(", ")
    assert [p.rsplit("/", 1)[1].strip() for p in averaged] == ["step_00000075.pt", "step_00000100.pt"]


def test_rotation_and_overwrite_touch_only_the_checkpoints_cronos_kept(tmp_path):
    """A user's file in checkpoints/ (named like a kept checkpoint, sorting after them) is neither
    rotated away nor counted, on resume or on overwrite; rotation goes by step, not by name."""
    config = tiny_config(tmp_path, training={"epochs": 2, "keep_checkpoints": 2})
    cronos.fit(cronos.load_config(config))
    run = tmp_path / "run"
    mine = run / "checkpoints" / "step_best_so_far_KEEP.pt"
    mine.write_bytes((run / "best.pt").read_bytes())
    (run / "checkpoints" / "step_100.pt").write_bytes(b"a user's file too")
    resumed = tiny_config(tmp_path, training={"epochs": 4, "keep_checkpoints": 2, "resume": "auto"})
    cronos.fit(cronos.load_config(resumed))
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["step_00000075.pt", "step_00000100.pt", "step_100.pt", "step_best_so_far_KEEP.pt"]
    replaced = tiny_config(tmp_path, training={"epochs": 1, "keep_checkpoints": 2, "overwrite": True})
    cronos.fit(cronos.load_config(replaced))
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["step_00000025.pt", "step_100.pt", "step_best_so_far_KEEP.pt"]


def test_average_refuses_an_existing_output_and_too_few_kept_checkpoints(run, cli, tmp_path):
    existing = tmp_path / "there.pt"
    existing.write_bytes(b"x")
    result = cli("average", "--last", "2", str(run), "-o", str(existing))
    assert result.returncode == 2 and "exists; the average goes to a new file" in result.stderr
    result = cli("average", "--last", "5", str(run), "-o", str(tmp_path / "new.pt"))
    assert result.returncode == 2 and "keeps 3 checkpoint(s)" in result.stderr and "keep_checkpoints >= 5" in result.stderr
    result = cli("average", str(run / "best.pt"), "-o", str(tmp_path / "one.pt"))
    assert result.returncode == 2 and "at least two checkpoints" in result.stderr
    assert not (tmp_path / "new.pt").exists() and not (tmp_path / "one.pt").exists()


def test_average_never_writes_where_a_run_keeps_its_own_files(run, cli):
    """A new step_99999999.pt in the run's checkpoints/ would pass for a kept checkpoint, and the
    next ``--last 2`` would average it as one."""
    kept, name = sorted(p.name for p in (run / "checkpoints").iterdir()), "checkpoints/step_99999999.pt"
    result = cli("average", "--last", "2", str(run), "-o", str(run / name))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert f"--out: {run / name} is where a training run keeps its own files" in result.stderr
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == kept


def test_checkpoints_of_another_model_are_refused_naming_the_file(run, trained_models, tmp_path):
    other = trained_models["transformer"].save(tmp_path / "other.pt")
    with pytest.raises(cronos.CheckpointError, match=r"other\.pt: the source vocabulary differs|other\.pt: "
                                                     r"architecture differs") as caught:
        average_checkpoints([run / "best.pt", other])
    message = str(caught.value)  # what differs is said against the first file, not against a config
    assert str(run / "best.pt") in message and "the first checkpoint 'rnn'" in message and "config" not in message


def test_a_file_whose_config_asks_for_more_layers_than_it_has_tensors_is_refused_before_building(run, tmp_path):
    """Untrusted files: the guard of ``Cronos.load`` holds for averaging too (it is ``read_model``'s)."""
    payload = load_checkpoint(run / "best.pt")
    payload["config"]["model"]["encoder"]["layers"] = 100000
    torch.save(payload, tmp_path / "huge.pt")
    with pytest.raises(cronos.CheckpointError, match=r"huge\.pt: .*model.encoder.layers is 100000, but the file "
                                                     r"holds \d+ tensors"):
        average_checkpoints([run / "best.pt", tmp_path / "huge.pt"])
