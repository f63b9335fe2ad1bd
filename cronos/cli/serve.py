"""``cronos serve``: a model behind an HTTP server (``server/``), and what it says of where it listens."""
from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from importlib.util import find_spec
from pathlib import Path

from ..config import ConfigError
from ..files import UnreadableFile, read_bytes
from .options import beam_size_option, load_models, positive_int

__all__ = ["add_serve"]

logger = logging.getLogger("cronos")


def add_serve(commands) -> argparse.ArgumentParser:
    serve = commands.add_parser("serve", help="a translation server (HTTP, JSON) that batches concurrent requests "
                                "(needs cronos[serve])")
    serve.add_argument("checkpoint", nargs="+", metavar="CHECKPOINT", help="a model, or several: an ensemble")
    serve.add_argument("--host", default="127.0.0.1",
                       help="the address to listen on; '' or 0.0.0.0 is every interface (put a reverse proxy and "
                            "--api-key-file in front: docs/deployment.md) [127.0.0.1]")
    serve.add_argument("--port", type=_port, default=8000, help="the port to listen on; 0 takes a free one [8000]")
    serve.add_argument("--max-batch-tokens", type=positive_int, default=4096, metavar="N",
                       help="source tokens decoded together at most [4096]")
    serve.add_argument("--max-wait-ms", type=float, default=100.0, metavar="MS",
                       help="how long a batch waits at most for the clients just answered to send again [100]")
    serve.add_argument("--max-queue", type=positive_int, default=1024, metavar="N",
                       help="sentences waiting at most; past that, requests get 503 [1024]")
    serve.add_argument("--timeout", type=float, default=60.0, metavar="S",
                       help="seconds a request waits for its answer; past that it gets 504 and its decoding stops [60]")
    serve.add_argument("--max-beam", type=beam_size_option, default=16, metavar="N",
                       help="the largest beam_size (and n_best) a request may ask for [16]")
    serve.add_argument("--max-body-bytes", type=positive_int, default=4 << 20, metavar="N",
                       help="the largest request body read; larger ones get 413 [4194304]")
    serve.add_argument("--client-timeout", type=float, default=30.0, metavar="S",
                       help="seconds a connection has to send a whole request; idle and slow ones are closed [30]")
    serve.add_argument("--max-connections", type=positive_int, default=512, metavar="N",
                       help="connections open at once; past that, new ones get 503 [512]")
    serve.add_argument("--api-key-file", type=Path, default=None, metavar="FILE",
                       help="require the key in FILE (or in the environment variable CRONOS_API_KEY) as "
                            "Authorization: Bearer KEY on every request but /health and /docs")
    serve.set_defaults(run=_serve)
    return serve


def _serve(args: argparse.Namespace) -> int:
    if any(find_spec(name) is None for name in ("fastapi", "uvicorn", "prometheus_client")):
        raise ConfigError("serve", "", "needs the serve extra: pip install 'cronos[serve]'")
    from ..server import LimitError, Limits, listen, serve
    from ..server.connections import raise_file_limit

    try:
        limits = Limits(max_batch_tokens=args.max_batch_tokens, max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
                        timeout=args.timeout, max_beam=args.max_beam, max_body_bytes=args.max_body_bytes,
                        client_timeout=args.client_timeout, max_connections=args.max_connections)
        raise_file_limit(limits.max_connections)
    except LimitError as error:
        raise ConfigError(error.option, "", str(error)) from None
    except ValueError as error:
        raise ConfigError("--max-connections", "", str(error)) from None
    api_key = _api_key(args.api_key_file)
    try:
        sock = listen(args.host, args.port)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise ConfigError("--port", "", f"{args.host}:{args.port} is in use (another server?); choose "
                              "another port") from None
        raise ConfigError("--host", "", f"cannot listen on {args.host}:{args.port}: {error.strerror or error}") from None
    with sock:
        model = load_models(args)
        if model.config.decoding.beam_size > limits.max_beam:
            raise ConfigError("--max-beam", "", f"{limits.max_beam} is below the model's beam size "
                              f"({model.config.decoding.beam_size}, decoding.beam_size); raise --max-beam")
        _say_where(args.checkpoint, sock.getsockname(), api_key is not None)
        serve(model, sock, limits, api_key)
    return 0


def _say_where(checkpoints: list[str], address: tuple, keyed: bool) -> None:
    """Where the server listens (the port it got, for --port 0), and who can reach it."""
    from ..server import is_loopback

    host, port = address[:2]
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    print(f"serving {', '.join(checkpoints)} on {url} (POST /translate, POST /score, GET /health, GET /metrics; "
          f"what each takes: {url}/docs)", file=sys.stderr, flush=True)
    if not is_loopback(host):
        reach = "every interface of this machine" if host in ("0.0.0.0", "::") else host
        logger.warning("listening on %s: anyone who can reach it can use this server%s; see docs/deployment.md, "
                       "Exposing a server", reach, "" if keyed else ", and it asks for no API key (--api-key-file)")


def _api_key(path: Path | None) -> str | None:
    """The key clients must send: ``--api-key-file``'s content, else ``CRONOS_API_KEY``, else none."""
    if path is None:
        key = os.environ.get("CRONOS_API_KEY")
        source = "CRONOS_API_KEY"
    else:
        try:
            key = read_bytes(path, "API key", limit=4096).decode("utf-8")
        except (UnreadableFile, UnicodeDecodeError) as error:
            raise ConfigError("--api-key-file", "", str(error)) from None
        source = f"--api-key-file {path}"
    if key is not None and not key.strip():
        raise ConfigError(source.split()[0], "", f"{source} holds no key")
    return None if key is None else key.strip()


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, 0 to 65535, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number, 0 to 65535, got {port}")
    return port
