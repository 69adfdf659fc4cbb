"""A minimal HTTP/1.1 responder for ``/health`` and ``/metrics``.

Two GET routes do not justify a server library in the core: one would bring its
own logging setup and lifecycle into the app's event loop. This one reads one
request head, answers and closes, and is bounded by construction:

- at most ``max_connections`` exchanges at once; a connection beyond that takes
  the slot of the oldest one that has not sent its request head yet (a silent or
  trickling client), and is closed only when every slot is answering;
- one deadline covers each whole exchange, so a slow or idle client holds its
  slot for ``deadline`` seconds at most; a probe that sends its request at once is
  answered whatever number of idle connections is held against the port;
- a failed ``accept()`` (EMFILE: the process is out of file descriptors) pauses
  accepting and is logged once; it never ends the process;
- a handler that raises answers 500; the listener goes on.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass

import anyio
from anyio.abc import SocketAttribute, SocketListener, SocketStream, TaskStatus

from supervisor.connection.losses import describe
from supervisor.log import Log

__all__ = ("Response", "head_complete", "serve")

_MAX_HEAD = 8192
MAX_CONNECTIONS = 32
DEADLINE = 2.0
_ACCEPT_PAUSE = 0.1
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"


Handler = Callable[[str], Response]


async def serve(
    host: str,
    port: int,
    handler: Handler,
    *,
    max_connections: int = MAX_CONNECTIONS,
    deadline: float = DEADLINE,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; ``task_status.started(port)`` reports the bound port."""
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    responder = _Responder(handler, max_connections, deadline, Log(f"http:{host}"))
    async with listener, anyio.create_task_group() as tg:
        task_status.started(listener.extra(SocketAttribute.local_port))
        for each in listener.listeners:
            assert isinstance(each, SocketListener)
            tg.start_soon(responder.accept_from, each)


class _Responder:
    def __init__(self, handler: Handler, max_connections: int, deadline: float, log: Log) -> None:
        self._handler = handler
        self._max = max_connections
        self._deadline = deadline
        self._log = log
        self._active = 0
        self._silent: dict[object, anyio.CancelScope] = {}
        """Exchanges still waiting for their request head, oldest first."""
        self._accept_failing = False

    async def accept_from(self, listener: SocketListener) -> None:
        async with anyio.create_task_group() as tg:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:
                    if not self._accept_failing:
                        self._accept_failing = True
                        hint = " (out of file descriptors)" if exc.errno in _NO_FDS else ""
                        self._log.log(
                            logging.WARNING, "http_accept_failed", error=describe(exc) + hint
                        )
                    await anyio.sleep(_ACCEPT_PAUSE)
                    continue
                self._accept_failing = False
                if self._active >= self._max:
                    if not self._silent:
                        await stream.aclose()
                        continue
                    oldest = next(iter(self._silent))
                    self._silent.pop(oldest).cancel()  # its slot is this one's
                self._active += 1
                tg.start_soon(self._exchange, stream)

    async def _exchange(self, stream: SocketStream) -> None:
        key = object()
        try:
            async with stream:
                with anyio.move_on_after(self._deadline), anyio.CancelScope() as silent:
                    self._silent[key] = silent
                    head = await self._read_head(stream)
                    self._silent.pop(key, None)
                    await self._answer(stream, head)
        except Exception as exc:  # one exchange never ends the listener
            self._log.log(logging.WARNING, "http_exchange_failed", error=describe(exc))
        finally:
            self._silent.pop(key, None)
            self._active -= 1

    async def _read_head(self, stream: SocketStream) -> bytes:
        head = b""
        while not head_complete(head) and len(head) < _MAX_HEAD:
            try:
                head += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                break
        return head

    async def _answer(self, stream: SocketStream, head: bytes) -> None:
        parts = head.split(b"\n", 1)[0].decode("latin-1").split()
        if len(parts) != 3:
            response = Response(400, b'{"error": "bad request"}')
        elif parts[0] != "GET":
            response = Response(405, b'{"error": "only GET"}')
        else:
            try:
                response = self._handler(parts[1].split("?", 1)[0])
            except Exception as exc:
                self._log.log(logging.ERROR, "http_handler_failed", error=describe(exc))
                response = Response(500, b'{"error": "internal error"}')
        reason = _REASONS.get(response.status, "")
        out = (
            f"HTTP/1.1 {response.status} {reason}\r\n"
            f"Content-Type: {response.content_type}\r\n"
            f"Content-Length: {len(response.body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode("latin-1") + response.body
        with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await stream.send(out)


_NO_FDS = (errno.EMFILE, errno.ENFILE)


def head_complete(head: bytes) -> bool:
    """The blank line that ends a request head, with CRLF or (tolerated) bare LF endings."""
    return b"\r\n\r\n" in head or b"\n\n" in head
