"""The server process of ``cronos serve``: uvicorn on a thread of its own over guarded connections
(``connections.py``), the decoding on the main thread, and a shutdown that always ends.

    sock = listen("127.0.0.1", 8000)           # before the model loads: a taken port is said at once
    serve(translator, sock, Limits(), api_key=None)

On SIGTERM or Ctrl-C the server stops taking connections, closes those whose request had not
arrived whole, answers every accepted request (each is answered or timed out within
``Limits.timeout``), stops the batcher and returns.  The wait is bounded by that timeout and a few
seconds more; a second signal ends it at once.
"""
from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import socket
import threading

from ..translator import Translator
from .app import application, batcher_for
from .connections import Guards, guarded, quiet_loop_errors, raise_file_limit
from .limits import Limits

__all__ = ["serve"]

SHUTDOWN_MARGIN = 5.0  # seconds past the request timeout that a graceful shutdown may take


def serve(translator: Translator, sock: socket.socket, limits: Limits, api_key: str | None = None) -> None:
    """Serve ``translator`` on the bound ``sock`` until SIGTERM or Ctrl-C: uvicorn on a thread of its
    own, the decoding on this one (``Batcher.run`` says why).  Returns once every accepted request
    is answered and the batcher stopped."""
    import uvicorn

    raise_file_limit(limits.max_connections)
    batcher, metrics = batcher_for(translator, limits)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        quiet_loop_errors(asyncio.get_running_loop())
        try:
            yield
        finally:
            batcher.stop()

    app = application(translator, limits, batcher, metrics, lifespan, api_key)
    server = uvicorn.Server(uvicorn.Config(
        app, http=guarded(Guards(limits.client_timeout, limits.max_connections)), log_level="warning",
        timeout_keep_alive=5, timeout_graceful_shutdown=math.ceil(limits.timeout + SHUTDOWN_MARGIN)))

    def web() -> None:
        try:
            server.run(sockets=[sock])
        finally:  # also when uvicorn could not start: run() below returns
            if server.force_exit:
                batcher.abandon()
            else:
                batcher.stop()

    def on_signal(sig: int, frame) -> None:  # noqa: ANN001 - a signal handler's frame
        if server.should_exit:  # a second signal: stop waiting for anyone
            server.force_exit = True
        server.handle_exit(sig, frame)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    thread = threading.Thread(target=web, name="cronos-http")
    try:
        thread.start()
        batcher.run()
        thread.join()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not server.started:
        raise OSError(f"could not serve on {sock.getsockname()}")
