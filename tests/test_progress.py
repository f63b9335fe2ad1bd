"""Progress in every log: a bar in a terminal, log lines elsewhere, and the Python API not silent."""
from __future__ import annotations

import fcntl
import os
import re
import signal
import struct
import subprocess
import sys
import termios

from cronos.training.progress import format_duration
from helpers import ROOT, cronos_command, tiny_config, write_config

STEP_LINE = re.compile(r"^step (\d+)/(\d+) \(epoch (\d+)/(\d+)\): loss \d+\.\d{4}, [\d,]+ tok/s, lr \d\.\d\de-\d\d, "
                       r"\d+:\d\d:\d\d left$")


def test_format_duration():
    assert format_duration(3725.2) == "1:02:05" and format_duration(59.6) == "0:01:00"
    assert format_duration(-3) == "0:00:00"


def test_without_a_terminal_a_line_every_log_every_steps_counting_to_max_steps(tmp_path):
    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, training={
        "epochs": 50, "max_steps": 30, "log_every": 10, "progress": True}))
    result = subprocess.run(cronos_command("train", str(config)), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    steps = [STEP_LINE.match(line).groups() for line in result.stderr.splitlines() if STEP_LINE.match(line)]
    assert steps == [("10", "30", "1", "50"), ("20", "30", "1", "50"), ("30", "30", "2", "50")]
    assert "\r" not in result.stderr  # no bar written into a log


def test_the_python_api_reports_through_the_cronos_logger_when_nothing_else_is_configured(tmp_path):
    config = tiny_config(tmp_path, training={"epochs": 1, "log_every": 10})
    program = f"import cronos; cronos.fit(cronos.load_config({config!r}))"
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert [STEP_LINE.match(line).group(1) for line in lines if STEP_LINE.match(line)] == ["10", "20"]
    assert any(line.startswith("epoch 1 step 25: train_loss ") for line in lines)
    # a program that configured logging decides for itself: here, warnings only
    quiet = subprocess.run([sys.executable, "-c", "import logging; logging.basicConfig(level=logging.WARNING); "
                            + program.replace(str(tmp_path / "run"), str(tmp_path / "run2"))],
                           capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert quiet.returncode == 0 and "step 10/" not in quiet.stderr and "epoch 1 step" not in quiet.stderr


def run_in_terminal(command: list[str], interrupt_after: str | None = None) -> tuple[int, str]:
    """Run ``command`` with stderr on a pseudo-terminal (40 x 150); return its exit code and what the
    terminal showed.  ``interrupt_after``: send SIGINT once the terminal has shown this text."""
    primary, secondary = os.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 150, 0, 0))  # 40 rows, 150 columns
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=secondary)
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the terminal closes when the process ends
            break
        if not chunk:
            break
        chunks.append(chunk)
        if interrupt_after and interrupt_after in b"".join(chunks).decode("utf-8", "replace"):
            process.send_signal(signal.SIGINT)
            interrupt_after = None
    os.close(primary)
    process.wait(timeout=300)
    return process.returncode, b"".join(chunks).decode("utf-8", "replace")


def test_in_a_terminal_a_bar_to_max_steps_and_validation_lines_above_it_once_each(tmp_path):
    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, training={
        "epochs": 50, "max_steps": 30, "validate_every": 10, "log_every": 10, "progress": True}))
    returncode, terminal = run_in_terminal(cronos_command("train", str(config)))
    assert returncode == 0, terminal
    assert re.search(r"epoch 1/50.*\|\s*\d+/30 \[", terminal)  # a bar counting steps to max_steps
    assert not STEP_LINE.search(terminal.replace("\r", "\n"))  # no log lines where the bar shows the same
    for step in (10, 20, 30):
        line = f"epoch {1 if step < 30 else 2} step {step}: train_loss"
        start = terminal.index(line)
        assert terminal[start - 1] in "\r\n", repr(terminal[start - 80: start + 20])  # not inside the bar's line
        assert terminal.count(line) == 1, terminal  # printed once, not once per logger


def test_in_a_terminal_ctrl_c_is_announced_once(tmp_path):
    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, training={
        "epochs": 400, "validate_every": 3, "progress": True}))
    returncode, terminal = run_in_terminal(cronos_command("train", str(config)), interrupt_after="step 3: train_loss")
    assert returncode == 0, terminal
    assert terminal.count("SIGINT: finishing the current step, then writing a checkpoint") == 1, terminal
