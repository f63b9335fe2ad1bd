"""The server's connections: uvicorn's HTTP/1.1 protocol (h11) with the guards a server that anyone
on a network can reach needs, and the socket it listens on.

    sock = listen("127.0.0.1", 0)                      # bound before the model loads; port 0: any free one
    uvicorn.Config(app, http=guarded(Guards(...)))     # every connection guarded

uvicorn times out a connection only after a response (keep-alive), so a client that connects and
sends nothing, or sends its request a byte at a time, would hold its connection, and a file
descriptor, for ever; at the process's file limit every new client then hangs.  A guarded
connection must bring a whole request (headers and body) within ``Guards.client_timeout`` seconds
of being ready for one: otherwise it is closed (a request already started gets a 408 first).  Past
``Guards.max_connections`` open connections, a new one is answered 503 and closed at once, so the
connections stay below the file limit.  A malformed request gets the documented JSON error, not
uvicorn's plain text.  At shutdown, a request whose body is still arriving was never accepted: its
connection is closed rather than waited for.

Built on uvicorn's ``H11Protocol`` (its connection, cycle and keep-alive attributes), tested against
the uvicorn the ``serve`` extra installs.
"""
from __future__ import annotations

import asyncio
import functools
import http
import json
import logging
import resource
import socket
import time
from dataclasses import dataclass
from typing import Callable

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["Guards", "guarded", "listen", "raise_file_limit", "quiet_loop_errors", "is_loopback", "json_response"]

logger = logging.getLogger("cronos")

FILES_BESIDES_CONNECTIONS = 64  # the model, its libraries, logs, the loop's own pipes


@dataclass(frozen=True)
class Guards:
    client_timeout: float   # seconds a connection has to bring a whole request
    max_connections: int    # open connections at most; past that, 503 and closed


def guarded(guards: Guards) -> Callable[..., asyncio.Protocol]:
    """What uvicorn's ``http=`` takes: a guarded connection per client."""
    return functools.partial(GuardedH11Protocol, guards=guards)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 connection with a deadline for each request, a cap on connections and JSON
    errors (module docstring)."""

    def __init__(self, *args, guards: Guards, **kwargs):  # noqa: ANN002, ANN003 - uvicorn's own arguments
        super().__init__(*args, **kwargs)
        self.guards = guards
        self.deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.guards.max_connections:
            self.transport = transport  # read by connection_lost
            transport.write(json_response(503, f"the server holds {self.guards.max_connections} connections, its "
                                               "most; retry later", {"retry-after": "1"}))
            transport.close()
            return
        super().connection_made(transport)
        self._await_request()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._request_whole():  # its answer may take long
            self._cancel_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._await_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        """At shutdown: a request still arriving is closed; one whole is answered first (uvicorn's)."""
        if not self._awaiting_headers() and self.cycle.more_body:
            self._close_request(408, "the server is shutting down and the request had not arrived whole")
            return
        super().shutdown()

    def send_400_response(self, msg: str) -> None:
        """A request that is not HTTP: the documented JSON error, and the connection closed."""
        self.transport.write(json_response(400, "the request is not valid HTTP/1.1"))
        self.transport.close()

    def _awaiting_headers(self) -> bool:
        """No request in progress: the next one's headers, if any came, are not whole yet (uvicorn
        keeps the last request's cycle, answered, until the next request's headers are)."""
        return self.cycle is None or self.cycle.response_complete

    def _request_whole(self) -> bool:
        """A request in progress whose headers and body have all arrived."""
        return not self._awaiting_headers() and not self.cycle.more_body

    def _await_request(self) -> None:
        self._cancel_deadline()
        self.deadline = self.loop.call_later(self.guards.client_timeout, self._too_slow)

    def _cancel_deadline(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _too_slow(self) -> None:
        self.deadline = None
        if self.transport.is_closing():
            return
        message = f"the request did not arrive whole within {self.guards.client_timeout:g} s"
        if self._awaiting_headers():
            if self.conn.trailing_data[0]:  # part of them came
                self.transport.write(json_response(408, message))
            self.transport.close()
            return
        self._close_request(408, message)

    def _close_request(self, status: int, message: str) -> None:
        """End the request in progress: the application sees its client go, the client gets
        ``status`` (when nothing was answered yet), and the connection closes."""
        cycle = self.cycle
        cycle.disconnected = True
        cycle.message_event.set()
        if not cycle.response_started and self.conn.our_state is h11.SEND_RESPONSE:
            cycle.response_started = True
            self.transport.write(json_response(status, message))
        self.transport.close()


def json_response(status: int, message: str, headers: dict[str, str] | None = None) -> bytes:
    """A whole HTTP/1.1 response with the JSON error ``{"error": message}``, closing the connection
    (written as bytes: the connection may be in any state)."""
    body = json.dumps({"error": message}).encode("utf-8")
    fields = {"content-type": "application/json", "content-length": str(len(body)), "connection": "close",
              **(headers or {})}
    head = f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in fields.items()) + "\r\n"
    return head.encode("ascii") + body


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (port 0: a free one), for uvicorn to listen on; ``OSError``
    when it cannot be (``EADDRINUSE``: the port is taken; otherwise not this machine's address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named: asyncio turns Nagle's algorithm off only on sockets that say they are TCP,
    # and with it on, each answer waited 40 ms for the client's delayed acknowledgement
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restarted server takes its port back
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only."""
    return host in ("localhost", "::1") or host.startswith("127.")


def raise_file_limit(max_connections: int) -> None:
    """Raise this process's limit on open files to what ``max_connections`` need (up to the hard
    limit); ``ValueError`` when the hard limit is lower than they need."""
    needed = max_connections + FILES_BESIDES_CONNECTIONS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise ValueError(f"{max_connections} connections need {needed} open files, and this process may open "
                             f"{hard} at most (ulimit -n); lower it or raise the limit")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def quiet_loop_errors(loop: asyncio.AbstractEventLoop, every: float = 10.0) -> None:
    """Let the event loop log each kind of error it meets (such as ``accept`` failing at the file
    limit, which it meets once per waiting client) in one line, at most once per ``every`` seconds,
    instead of a traceback each time."""
    last: dict[str, float] = {}

    def handle(loop: asyncio.AbstractEventLoop, context: dict) -> None:
        error = context.get("exception")
        kind = context.get("message", "") + (f": {type(error).__name__}: {error}" if error is not None else "")
        now = time.monotonic()
        if now - last.get(kind, -every) >= every:
            if len(last) > 100:  # kinds that name addresses: forget the old ones
                last.clear()
            last[kind] = now
            logger.warning("server: %s", kind)
    loop.set_exception_handler(handle)
