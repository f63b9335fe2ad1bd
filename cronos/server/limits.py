"""What one server takes on at most: each is an option of ``cronos serve`` (``--max-beam`` for
``max_beam``), checked together when the limits are made.

    limits = Limits(max_beam=8, timeout=30.0)   # LimitError("--max-beam", ...) for a value it cannot run with
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

from ..config import MAX_BEAM_SIZE

__all__ = ["Limits", "LimitError"]


class LimitError(ValueError):
    """A limit the server cannot run with; ``option``: the command-line option that sets it."""

    def __init__(self, option: str, message: str):
        super().__init__(message)
        self.option = option


@dataclass(frozen=True)
class Limits:
    max_sentences: int = 64             # texts (or pairs) in one request
    max_characters: int = 2000          # characters in one text
    max_batch_tokens: int = 4096        # tokens decoded together
    max_wait_ms: float = 100.0          # how long a batch waits at most for mates (server/batching.py says for whom)
    max_queue: int = 1024               # sentences waiting, past which requests get 503
    timeout: float = 60.0               # seconds a request waits for its answer, past which it gets 504
    max_beam: int = 16                  # beams (and n-best hypotheses) a request may ask for
    max_body_bytes: int = 4 << 20       # a request's body; the largest request the limits above allow, in
                                        # JSON's longest spelling (\uXXXX pairs), is under 4 MiB
    client_timeout: float = 30.0        # seconds a connection has to bring a whole request
    max_connections: int = 512          # connections open at once

    def __post_init__(self) -> None:
        for field in fields(self):
            if field.type == "int" and getattr(self, field.name) < 1:
                raise LimitError(_option(field.name), f"expected a positive integer, got {getattr(self, field.name)}")
        if not 0 <= self.max_wait_ms < math.inf:
            raise LimitError("--max-wait-ms", f"expected a number of 0 or more, got {self.max_wait_ms}")
        for name in ("timeout", "client_timeout"):
            if not 0 < getattr(self, name) < math.inf:
                raise LimitError(_option(name), f"expected a number of seconds above 0, got {getattr(self, name)}")
        if self.max_wait_ms / 1000 >= self.timeout:
            raise LimitError("--max-wait-ms", f"{self.max_wait_ms:g} ms is not shorter than --timeout "
                                              f"({self.timeout:g} s): a lone request would time out waiting for "
                                              "company; lower --max-wait-ms or raise --timeout")
        if self.max_beam > MAX_BEAM_SIZE:
            raise LimitError("--max-beam", f"at most {MAX_BEAM_SIZE}, got {self.max_beam}")


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")
