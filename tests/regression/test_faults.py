"""cronos under faults: signals, kill -9, NaNs, unwritable or full disks, mismatched checkpoints.
Each test fails if the handling it pins is removed."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

import cronos
from cronos.storage.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from cronos.decoding.inference import NonFiniteOutput
from cronos.training.trainer import TrainingError
from helpers import cronos_command, run_cli, tiny_config, write_config

STEPS_PER_EPOCH = 25  # 800 training examples in batches of 32


def start_training(config: Path, *settings: str) -> subprocess.Popen:
    args = ["train", str(config)] + [item for s in settings for item in ("--set", s)]
    return subprocess.Popen(cronos_command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint(path: Path, process: subprocess.Popen, min_step: int = 1, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            step = load_checkpoint(path)["training"]["progress"]["step"]
            if step >= min_step:
                return step
        except CheckpointError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint at step >= {min_step} within {timeout}s")


def last_step(run: Path) -> int:
    return load_checkpoint(run / "last.pt")["training"]["progress"]["step"]


@pytest.fixture
def long_run(tmp_path) -> tuple[Path, Path]:
    """A config whose run is far longer than the test lets it live."""
    config = write_config(tmp_path / "long.yaml", tiny_config(tmp_path, training={"epochs": 400}))
    return config, tmp_path / "run"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_finishes_the_step_writes_a_checkpoint_and_exits_0(long_run, signum):
    config, run = long_run
    process = start_training(config, "training.checkpoint_every=5")
    wait_for_checkpoint(run / "last.pt", process, min_step=5)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert "training.resume=auto" in stderr and signal.Signals(signum).name in stderr
    stopped = last_step(run)
    assert 5 <= stopped < 400 * STEPS_PER_EPOCH
    # the summary gives the step the run stopped at, not the last validation's
    assert stdout.startswith(f"stopped by {signal.Signals(signum).name} at step {stopped} "), stdout

    resumed = subprocess.run(cronos_command("train", str(config), "--set", "training.resume=auto",
                                            "--set", f"training.max_steps={stopped + 3}"),
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"step {stopped}" in resumed.stderr and last_step(run) == stopped + 3


def test_kill_9_leaves_a_loadable_checkpoint_and_resuming_loses_only_unsaved_steps(long_run):
    config, run = long_run
    previous = 0
    for attempt in range(3):  # checkpoint every step: a kill often lands inside a write
        settings = ["training.checkpoint_every=1"] + (["training.resume=auto"] if attempt else [])
        process = start_training(config, *settings)
        wait_for_checkpoint(run / "last.pt", process, min_step=previous + 3)
        time.sleep(0.05 * attempt)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
        step = last_step(run)  # loads: the kill never leaves a half-written last.pt
        assert step >= previous + 3
        previous = step
    finish = subprocess.run(cronos_command("train", str(config), "--set", "training.resume=auto",
                                           "--set", f"training.max_steps={previous + 2}"),
                            capture_output=True, text=True, timeout=300)
    assert finish.returncode == 0, finish.stderr
    assert f"resumed from {run / 'last.pt'} at epoch" in finish.stderr and f"step {previous}" in finish.stderr
    assert last_step(run) == previous + 2
    assert not list(run.glob(".*.tmp"))


def test_a_write_that_dies_midway_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"config": {}, "src_vocab": [], "tgt_vocab": [], "model": {"w": torch.ones(3)}})

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(CheckpointError, match=r"last\.pt: cannot write checkpoint \(No space left on device\); "
                                              "the previous checkpoint, if any, is unchanged"):
        save_checkpoint(path, {"config": {}, "src_vocab": [], "tgt_vocab": [], "model": {"w": torch.zeros(3)}})
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def payload_of(value: float) -> dict:
    return {"config": {}, "src_vocab": [], "tgt_vocab": [], "model": {"w": torch.full((1000,), value)}}


def test_a_reader_of_the_old_checkpoint_keeps_reading_it_whole_while_a_new_one_is_written(tmp_path):
    """A write replaces the file by renaming a complete new one over it; writing into the old
    file in place (truncating, copying over it) would change what the open reader sees."""
    path = tmp_path / "last.pt"
    save_checkpoint(path, payload_of(1.0))
    old_bytes = path.read_bytes()
    with open(path, "rb") as reader:
        save_checkpoint(path, payload_of(2.0))
        assert reader.read() == old_bytes
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.full((1000,), 2.0))


def test_a_crash_half_way_through_a_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, payload_of(1.0))
    real_fdopen = os.fdopen

    class HalfWriter:
        def __init__(self, file):
            self.file = file

        def write(self, data):
            self.file.write(bytes(data)[: len(data) // 2])
            raise OSError(errno.EIO, "Input/output error")

        def __getattr__(self, name):
            return getattr(self.file, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc_info):
            self.file.close()

    monkeypatch.setattr(os, "fdopen", lambda fd, *args, **kwargs: HalfWriter(real_fdopen(fd, *args, **kwargs)))
    with pytest.raises(CheckpointError, match="Input/output error"):
        save_checkpoint(path, payload_of(2.0))
    monkeypatch.setattr(os, "fdopen", real_fdopen)
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.full((1000,), 1.0))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_a_full_disk_during_training_stops_with_a_clear_error_and_the_previous_checkpoint(tmp_path, monkeypatch):
    config = cronos.load_config(tiny_config(tmp_path, training={"epochs": 3, "checkpoint_every": 10}))
    model = cronos.Cronos.from_config(config)
    real_fsync, calls = os.fsync, []

    def fail_after_two(fd):
        calls.append(fd)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fail_after_two)
    with pytest.raises(CheckpointError, match="No space left on device"):
        model.fit()
    monkeypatch.setattr(os, "fsync", real_fsync)
    # writes 1 and 2 are last.pt at steps 10 and 20; write 3 (best.pt at the step-25 validation) fails
    assert last_step(tmp_path / "run") == 20


def test_stale_temporary_files_from_a_killed_write_are_cleaned_up(tmp_path):
    config = cronos.load_config(tiny_config(tmp_path, training={"epochs": 1}))
    (tmp_path / "run").mkdir()
    stale = tmp_path / "run" / ".last.pt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    cronos.Cronos.from_config(config).fit()
    assert not stale.exists()


def test_unwritable_output_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    config = cronos.load_config(tiny_config(tmp_path, output_dir=str(blocker / "run")))
    with pytest.raises(CheckpointError, match=r"output_dir .*not-a-folder/run is not writable"):
        cronos.Cronos.from_config(config).fit()
    result = subprocess.run(cronos_command("train", str(write_config(tmp_path / "c.yaml", config_dict(config)))),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "is not writable" in result.stderr and "Traceback" not in result.stderr


def config_dict(config) -> dict:
    from cronos.config import config_to_dict

    return config_to_dict(config)


def nan_on_call(model, call: int) -> None:
    """Make the ``call``-th training loss NaN: a forward hook on the network sees every training step."""
    calls = []

    def hook(network, inputs, output):
        if network.training:
            calls.append(1)
            if len(calls) == call:
                return output._replace(total=output.total * float("nan"))
        return output

    model.network.register_forward_hook(hook)


def test_nan_loss_stops_naming_epoch_step_and_examples(tmp_path):
    model = cronos.Cronos.from_config(cronos.load_config(tiny_config(tmp_path)))
    nan_on_call(model, 3)
    with pytest.raises(TrainingError, match=r"epoch 1, step 3: loss nan.*batch examples .*train\.tsv:\d+"):
        model.fit()


def test_nan_gradient_is_caught_too(tmp_path):
    model = cronos.Cronos.from_config(cronos.load_config(tiny_config(tmp_path)))
    calls = []

    def poison(grad):
        calls.append(1)
        return grad * float("nan") if len(calls) == 2 else grad

    model.network.output_projection.weight.register_hook(poison)
    with pytest.raises(TrainingError, match=r"epoch 1, step 2: loss \d.*gradient norm nan"):
        model.fit()


def test_nan_policy_skip_drops_the_batch_and_counts_it(tmp_path):
    model = cronos.Cronos.from_config(cronos.load_config(tiny_config(tmp_path, training={
        "epochs": 1, "nan_policy": "skip"})))
    nan_on_call(model, 3)
    history = model.fit()
    assert history[-1]["skipped_batches"] == 1 and history[-1]["step"] == STEPS_PER_EPOCH - 1
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.fixture(scope="module")
def overflowing(trained_models, tmp_path_factory) -> Path:
    """The tiny Transformer with its output projection x 1e38: finite weights whose products are not."""
    folder = tmp_path_factory.mktemp("overflowing")
    model = cronos.Cronos.load(trained_models["transformer"].save(folder / "trained.pt"), "cpu")
    with torch.no_grad():
        model.network.output_projection.weight.mul_(1e38)
    return model.save(folder / "overflowing.pt")


@pytest.mark.parametrize("command", [
    ["translate"], ["translate", "--scores"], ["translate", "--n-best", "2", "--beam", "2"],
    ["translate", "--sampling", "all"], ["score", "--data", "PAIRS"], ["evaluate", "--data", "PAIRS"],
    ["explain", "1/2/07", "--out", "OUT"], ["explain", "1/2/07", "--target", "2007-01-02", "--method", "saliency",
                                           "--out", "OUT"]])
def test_outputs_that_are_not_numbers_are_one_clear_error(overflowing, tmp_path, capsys, monkeypatch, command):
    """Not an empty score, ``nan``, an empty n-best list or an IndexError: one line, exit 1."""
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("1/2/07\t2007-01-02\n", encoding="utf-8")
    name, *options = command
    options = [str(pairs) if o == "PAIRS" else str(tmp_path / "out") if o == "OUT" else o for o in options]
    code, out, err = run_cli([name, str(overflowing), *options], "1/2/07\n", capsys, monkeypatch)
    assert code == 1 and err.count("\n") == 1 and out == "", (out, err)
    assert err.startswith("cronos: error: NonFiniteOutput: the model computed log-probabilities that are not numbers")
    with pytest.raises(NonFiniteOutput):
        cronos.Cronos.load(overflowing, "cpu").translate(["1/2/07"], beam_size=3)


def test_resuming_with_another_architecture_or_vocabulary_says_which(tmp_path):
    cronos.fit(cronos.load_config(tiny_config(tmp_path, training={"epochs": 1})))
    wider = tiny_config(tmp_path, training={"epochs": 2, "resume": "auto"})
    wider["model"]["decoder"]["hidden_size"] = 48
    with pytest.raises(CheckpointError, match=r"architecture differs from this config at "
                                              r"model\.decoder\.hidden_size \(checkpoint 64, config 48\)"):
        cronos.fit(cronos.load_config(wider))

    other_data = tiny_config(tmp_path, training={"epochs": 2, "resume": str(tmp_path / "run" / "last.pt")})
    (tmp_path / "other.tsv").write_text("abc\tdef\nxyz\tuvw\n", encoding="utf-8")
    other_data["data"]["train"] = str(tmp_path / "other.tsv")
    with pytest.raises(CheckpointError, match="the source vocabulary differs"):
        cronos.fit(cronos.load_config(other_data))


def test_resuming_from_weights_only_checkpoint_is_explained(tmp_path):
    cronos.fit(cronos.load_config(tiny_config(tmp_path, training={"epochs": 1})))
    config = tiny_config(tmp_path, training={"epochs": 2, "resume": str(tmp_path / "run" / "best.pt")})
    with pytest.raises(CheckpointError, match="holds weights only"):
        cronos.fit(cronos.load_config(config))
