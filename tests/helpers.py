"""Tiny configs over a slice of the dates data, shared by the end-to-end tests."""
from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DATES = ROOT / "data" / "dates"


def write_slices(folder: Path, train: int = 800, valid: int = 100, test: int = 100) -> dict[str, str]:
    """The first lines of each dates split, written into ``folder``; returns the data section."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, count in (("train", train), ("valid", valid), ("test", test)):
        lines = (DATES / f"{split}.tsv").read_text(encoding="utf-8").splitlines(keepends=True)[:count]
        path = folder / f"{split}.tsv"
        path.write_text("".join(lines), encoding="utf-8")
        paths[split] = str(path)
    return paths


def tiny_config(folder: Path, **sections) -> dict:
    """A small, fast dates config (a plain dict) writing into ``folder / 'run'``."""
    config = {
        "name": "tiny", "seed": 7, "output_dir": str(folder / "run"),
        "data": {**write_slices(folder / "data"), "tokenizer": "char"},
        "model": {"embedding_size": 16,
                  "encoder": {"type": "rnn", "cell": "gru", "hidden_size": 32, "dropout": 0.1},
                  "decoder": {"type": "rnn", "cell": "gru", "hidden_size": 64, "attention": "additive",
                              "dropout": 0.1}},
        "training": {"epochs": 2, "batch_size": 32, "lr": 0.005, "progress": False, "device": "cpu"},
        "decoding": {"batch_size": 64},
    }
    for section, values in sections.items():
        config[section] = {**config.get(section, {}), **values} if isinstance(values, dict) else values
    return config


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def cronos_command(*args: str) -> list[str]:
    """The argv that runs the cronos CLI with this interpreter."""
    import sys

    return [sys.executable, "-m", "cronos", *args]


def run_cli(argv: list[str], stdin: str | bytes, capsys, monkeypatch) -> tuple[int, str, str]:
    """``cronos ARGV`` in this process with ``stdin`` (text, or the bytes themselves) as its
    input: exit code, stdout, stderr.
    For commands whose behaviour does not depend on being a process of their own (signals, exit
    at a closed pipe, a terminal are tested with real subprocesses)."""
    import io
    import sys

    from cronos.cli import main

    capsys.readouterr()  # what came before is not this command's
    raw = stdin if isinstance(stdin, bytes) else stdin.encode("utf-8")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8"))
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on at ``host`` now (a server or rendezvous started next takes it)."""
    import socket

    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def stopping_at(step: int):
    """A ``Trainer._train_step`` that asks the run to stop once it has taken ``step`` steps (as
    SIGINT would), for ``monkeypatch.setattr(Trainer, "_train_step", stopping_at(11))``."""
    from cronos.training.trainer import Trainer

    original = Trainer._train_step

    def stop_after(self, update, loaded=None):
        result = original(self, update, loaded)
        if self.progress.step == step:
            self.request_stop("test")
        return result

    return stop_after
