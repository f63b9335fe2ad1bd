"""Training on several processes with torchrun: P7 across processes, stops agreed by every
process, kill -9, and checkpoints that move between process counts.  Two real processes of one
thread each, on the CPU (gloo), on a tiny model."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

import cronos
from cronos.data import plan_updates
from cronos.training.distributed import Processes
from cronos.decoding.evaluation import METRICS
from helpers import free_port, tiny_config, write_config

NO_DROPOUT = {"encoder": {"type": "rnn", "hidden_size": 32, "dropout": 0.0},
              "decoder": {"type": "rnn", "hidden_size": 64, "dropout": 0.0}}


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "cronos", *args]


def train(command: list[str], config: Path, *overrides: str) -> subprocess.CompletedProcess:
    sets = [item for override in overrides for item in ("--set", override)]
    result = subprocess.run([*command, "train", str(config), *sets], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "last.pt", weights_only=True)["model"]


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()  # no "module." prefix from DistributedDataParallel
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


ONE_PROCESS = [sys.executable, "-m", "cronos"]


def test_p7_two_processes_take_the_updates_of_one_process_accumulating_two(tmp_path):
    """The command-line form of P7: `torchrun --nproc_per_node 2 ... train` and `train --set
    training.accumulate=2` plan the same updates and end with the same weights (dropout 0)."""
    both = {"model": NO_DROPOUT, "training": {"epochs": 1}}
    two = write_config(tmp_path / "two.yaml", tiny_config(tmp_path / "two", **both))
    one = write_config(tmp_path / "one.yaml", tiny_config(tmp_path / "one", **both))
    result = train(torchrun(), two)
    train(ONE_PROCESS, one, "training.accumulate=2")
    assert max_difference(weights(tmp_path / "two" / "run"), weights(tmp_path / "one" / "run")) <= 1e-5
    two_record, one_record = records(tmp_path / "two" / "run")[-1], records(tmp_path / "one" / "run")[-1]
    assert two_record["step"] == one_record["step"] == 13  # 25 batches: 12 updates of 2, and the last one
    assert two_record["train_loss"] == pytest.approx(one_record["train_loss"], rel=1e-6)
    assert result.stdout.count("trained 1 epoch, 13 steps") == 1  # rank 0 alone reports
    assert len(records(tmp_path / "two" / "run")) == 1  # and writes metrics.jsonl once
    last = torch.load(tmp_path / "two" / "run" / "last.pt", weights_only=True)["training"]
    assert last["world_size"] == 2 and len(last["process_rng"]) == 2


def test_a_run_of_two_processes_continues_in_one_with_the_same_updates_or_is_refused(tmp_path):
    both = {"model": NO_DROPOUT, "training": {"epochs": 1}}
    straight = write_config(tmp_path / "straight.yaml", tiny_config(tmp_path / "straight", **both))
    train(torchrun(), straight)
    config = write_config(tmp_path / "moved.yaml", tiny_config(tmp_path / "moved", **both))
    train(torchrun(), config, "training.max_steps=5")  # stops inside the epoch, after 5 updates
    refused = subprocess.run([*ONE_PROCESS, "train", str(config), "--set", "training.resume=auto"],
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1
    assert ("stopped inside epoch 1 after 5 updates of 2 batches (training.accumulate=1 x 2 process(es)); "
            "continue with training.accumulate x processes = 2") in refused.stderr
    train(ONE_PROCESS, config, "training.resume=auto", "training.accumulate=2")
    assert max_difference(weights(tmp_path / "moved" / "run"), weights(tmp_path / "straight" / "run")) <= 1e-5
    import cronos

    assert cronos.Cronos.load(tmp_path / "moved" / "run" / "best.pt").translate(["1/2/07"])  # loads in one process


def start(config: Path) -> tuple[subprocess.Popen, list[str]]:
    """torchrun training ``config``, read until its progress passes step 30."""
    process = subprocess.Popen(torchrun("train", str(config)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = []
    for line in process.stdout:
        lines.append(line)
        if "step 30/" in line:
            return process, lines
    raise AssertionError("".join(lines[-30:]))


def test_sigterm_to_torchrun_stops_every_process_after_one_step_and_rank_0_writes_last(tmp_path):
    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, training={"epochs": 50, "log_every": 5}))
    process, _ = start(config)
    process.send_signal(signal.SIGTERM)  # to the launcher, which passes it to its workers
    signalled = time.monotonic()
    output = process.communicate(timeout=120)[0]
    # every worker ended by itself: torchrun kills those still running 30 s after passing the signal on
    assert time.monotonic() - signalled < 25 and "forcefully exiting" not in output, output[-3000:]
    summaries = re.findall(r"stopped by SIGTERM at step (\d+) \(", output)
    assert len(summaries) == 1, output[-3000:]  # rank 0's summary, once
    step = int(summaries[0])
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["training"]["progress"]
    assert last["step"] == step and "Connection closed" not in output  # no process left the other waiting


def test_kill_9_of_one_process_ends_the_job_and_the_run_resumes(tmp_path):
    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, training={"epochs": 50, "log_every": 5}))
    process, _ = start(config)
    workers = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
    assert len(workers) == 2
    os.kill(int(workers[-1]), signal.SIGKILL)
    started = time.monotonic()
    process.communicate(timeout=120)
    assert process.returncode != 0 and time.monotonic() - started < 60  # the other process does not hang
    resumed = train(torchrun(), config, "training.resume=auto", "training.epochs=4")
    assert "trained 4 epochs, 52 steps" in resumed.stdout


@pytest.mark.parametrize("world_size, accumulate", [(1, 1), (1, 3), (2, 1), (2, 2), (3, 2)])
def test_the_plan_deals_every_example_once_and_gives_every_process_a_batch(world_size, accumulate):
    batches = [[i for i in range(start, min(start + 7, 95))] for start in range(0, 95, 7)]  # 14 batches
    tokens = [1 + i % 5 for i in range(95)]
    plan = plan_updates(batches, tokens, accumulate, world_size)
    dealt = [i for update in plan for share in update for batch in share for i in batch]
    assert sorted(dealt) == list(range(95))  # every example once
    assert all(len(update) == world_size and all(share for share in update) for update in plan)
    single = plan_updates(batches, tokens, accumulate * world_size, 1)
    union = lambda update: sorted(i for share in update for batch in share for i in batch)  # noqa: E731
    assert [union(u) for u in plan] == [union(u) for u in single]  # the same updates as one process


def test_the_plan_refuses_fewer_examples_than_processes():
    with pytest.raises(ValueError, match="1 training examples cannot give each of 2 processes a batch"):
        plan_updates([[0]], [3], 1, 2)


def test_p7_in_float64_under_ddp_and_the_per_process_mean_would_fail_it(tmp_path):
    """Through DistributedDataParallel itself: the trainer's update over two processes equals one
    process's update on the union of their batches to 1e-10 in float64, after several steps; the
    peers' normalisation (each process's mean, averaged) does not.  The weights' moving average
    (training.ema_decay) is the same in both processes, to the bit, and that of the union."""
    import cronos
    from cronos.training.trainer import Trainer
    from test_updates import reversing

    sections = {"model": NO_DROPOUT, "data": reversing(tmp_path), "training": {"ema_decay": 0.9}}
    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, **sections))
    out = tmp_path / "ddp.pt"
    worker = Path(__file__).resolve().parent / "ddp_worker.py"
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             str(worker), str(config), str(out), "4"], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(worker.parent.parent)})
    assert result.returncode == 0, result.stderr[-3000:]
    saved = torch.load(out, weights_only=True)
    loaded = cronos.load_config(config)
    model = cronos.Cronos.from_config(loaded)
    union = Trainer(model.network.double(), model.codec, loaded, cronos.data.load_training_data(loaded.data), None)
    for update in saved["plan"]:
        sizes = [sum(union.plan.lengths[1][i] for batch in share for i in batch) for share in update]
        assert len(update) == 2 and sizes[0] != sizes[1]  # processes with different token counts
        union._train_step([[[i for share in update for batch in share for i in batch]]])
    assert max_difference(saved["ours"], union.network.state_dict()) <= 1e-10
    assert max_difference(saved["peers"], union.network.state_dict()) > 1e-6
    rank_0, rank_1 = saved["averages"]
    assert all(torch.equal(a, b) for a, b in zip(rank_0, rank_1, strict=True))
    assert max(float((a - b).abs().max()) for a, b in zip(rank_0, union.average.shadow, strict=True)) <= 1e-10
    weights = [p.detach() for p in union.network.parameters()]
    assert max(float((a - b).abs().max()) for a, b in zip(rank_0, weights, strict=True)) > 1e-6  # not the weights


def test_a_folder_that_holds_a_run_is_refused_by_every_process_at_once(tmp_path):
    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, training={"epochs": 1}))
    train(ONE_PROCESS, config)
    started = time.monotonic()
    result = subprocess.run(torchrun("train", str(config)), capture_output=True, text=True, timeout=120,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode != 0 and time.monotonic() - started < 60
    assert f"cronos: error: {tmp_path / 'run'}: holds a run" in result.stderr  # rank 0: the folder and the ways on
    assert "rank 0 could not start the run" in result.stderr  # rank 1: no wait for a run that never starts


@dataclass(frozen=True)
class SecondProcess(Processes):
    """Rank 1 of two, in this one process: it trains its share of each update, and what would come
    from rank 0 comes from this stand-in: first that the folder is claimed, then validation scores."""

    from_rank_0: list = field(default_factory=lambda: [True])

    @property
    def distributed(self) -> bool:  # no process group to join: the exchanges stand in for it
        return False

    def from_main(self, value):
        return self.from_rank_0.pop(0) if self.from_rank_0 else {name: 1.0 for name in METRICS}


def test_a_process_other_than_rank_0_writes_nothing_into_the_run_folder(tmp_path, monkeypatch):
    """The run folder is rank 0's: another process trains, validates (with rank 0's scores) and
    stops, and the folder's files, byte for byte, are as rank 0 left them."""
    config = tiny_config(tmp_path, training={"epochs": 1, "keep_checkpoints": 2, "checkpoint_every": 5})
    cronos.fit(cronos.load_config(config))  # rank 0's run: best.pt for the other process to end on
    run = tmp_path / "run"
    before = {path: path.read_bytes() for path in run.rglob("*") if path.is_file()}
    monkeypatch.setattr(Processes, "from_environment", classmethod(lambda cls: SecondProcess(1, 2, 1)))
    history = cronos.Cronos.from_config(cronos.load_config({**config, "training": {
        **config["training"], "epochs": 2}})).fit()
    assert history.step == 13 * 2  # it did train: its half of each epoch's 25 batches, 13 updates an epoch
    after = {path: path.read_bytes() for path in run.rglob("*") if path.is_file()}
    assert after.keys() == before.keys() and all(after[path] == before[path] for path in before)


def test_two_nodes_share_one_prepared_split_and_take_the_updates_of_one_process(tmp_path):
    """Two torchrun "nodes" of one process each (c10d rendezvous on this machine) find no prepared
    split: one prepares it while the other waits, both map it, and they end with the weights of one
    process accumulating two batches that read the training split into memory (P7 across nodes)."""
    both = {"model": NO_DROPOUT, "training": {"epochs": 1}}
    nodes = write_config(tmp_path / "nodes.yaml", tiny_config(tmp_path / "nodes", data={
        "prepared": str(tmp_path / "prepared")}, **both))
    one = write_config(tmp_path / "one.yaml", tiny_config(tmp_path / "one", **both))
    port = free_port("localhost")
    commands = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node",
                                  "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", f"localhost:{port}",
                                  "-m", "cronos", "train", str(nodes)],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 env={**os.environ, "OMP_NUM_THREADS": "1"}) for _ in range(2)]
    outputs = [command.communicate(timeout=300)[0] for command in commands]
    assert [command.returncode for command in commands] == [0, 0], outputs
    # rank 0 says it prepared the split, or that it waited while the other node did (which says nothing),
    # or nothing when the other node was done before it looked
    said = "".join(outputs)
    assert said.count("preparing the training split") + said.count(", which is preparing ") <= 1, said
    assert (tmp_path / "prepared" / "manifest.json").is_file()
    train(ONE_PROCESS, one, "training.accumulate=2")
    assert max_difference(weights(tmp_path / "nodes" / "run"), weights(tmp_path / "one" / "run")) <= 1e-5
    assert records(tmp_path / "nodes" / "run")[-1]["step"] == records(tmp_path / "one" / "run")[-1]["step"] == 13
