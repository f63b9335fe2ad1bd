"""Every path cronos reads goes through ``cronos.files``: devices and folders refused before a byte
is read, pipes read as they come after saying so, and nothing read past its bound."""
from __future__ import annotations

import os
import threading
import time

import pytest

import cronos
from cronos.files import UnreadableFile, read_bytes
from helpers import tiny_config


def wait_for(text: str, caplog, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while text not in caplog.text:
        assert time.monotonic() < deadline, f"no {text!r} while waiting for a writer"
        time.sleep(0.01)


@pytest.mark.timeout(20)
def test_a_sentencepiece_model_path_naming_a_device_or_a_huge_file_is_refused_before_reading(tmp_path):
    data = {"tokenizer": "sentencepiece", "sentencepiece": {"model": "/dev/zero"}}
    config = cronos.load_config(tiny_config(tmp_path, data=data))
    with pytest.raises(cronos.ConfigError, match=r"data\.sentencepiece\.model: /dev/zero: is a device or a socket, "
                                                 r"not a SentencePiece model file"):
        cronos.Cronos.from_config(config)
    huge = tmp_path / "huge.model"
    with open(huge, "wb") as file:
        file.truncate(300 << 20)  # sparse: no disk used
    config = cronos.load_config(tiny_config(tmp_path, data={**data, "sentencepiece": {"model": str(huge)}}))
    with pytest.raises(cronos.ConfigError, match=r"huge\.model: is larger than 256 MiB, the most a SentencePiece "
                                                 r"model may be"):
        cronos.Cronos.from_config(config)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("limit, written, expected", [(100, b"a: 1\n", b"a: 1\n"), (10, b"x" * 4096, None)])
def test_a_pipe_says_it_waits_for_a_writer_and_is_read_up_to_its_bound(tmp_path, caplog, limit, written, expected):
    fifo = tmp_path / "config.fifo"
    os.mkfifo(fifo)
    result = {}

    def read():
        try:
            result["data"] = read_bytes(fifo, "config", limit)
        except UnreadableFile as error:
            result["error"] = str(error)
    reader = threading.Thread(target=read, daemon=True)
    with caplog.at_level("WARNING", logger="cronos"):
        reader.start()
        wait_for(f"{fifo} is a pipe: waiting for a program to write into it", caplog)
    try:
        with open(fifo, "wb") as pipe:
            pipe.write(written)
    except BrokenPipeError:  # the reader stopped at its bound, as it should
        pass
    reader.join(timeout=30)
    if expected is None:
        assert result["error"] == f"{fifo}: is larger than 10 bytes, the most a config may be"
    else:
        assert result["data"] == expected


def test_a_config_from_a_pipe_says_it_waits(tmp_path, caplog):
    fifo = tmp_path / "c.yaml"
    os.mkfifo(fifo)
    result = {}
    reader = threading.Thread(target=lambda: result.update(config=cronos.load_config(fifo)), daemon=True)
    with caplog.at_level("WARNING", logger="cronos"):
        reader.start()
        wait_for("is a pipe: waiting for a program to write into it", caplog)
    fifo.write_text("name: piped\n")
    reader.join(timeout=30)
    assert result["config"].name == "piped"
