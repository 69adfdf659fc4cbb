"""A minimal HTTP/1.1 responder for ``/health`` and ``/metrics`` on loopback.

Two GET routes do not justify a web framework in the core; this reads one
request head (bounded in size and time), answers, and closes.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass

import anyio
from anyio.abc import SocketAttribute, SocketStream, TaskStatus

__all__ = ("Response", "serve")

_MAX_HEAD = 8192
_READ_TIMEOUT = 5.0
_REASONS = {
    200: "OK",
    404: "Not Found",
    405: "Method Not Allowed",
    400: "Bad Request",
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
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; ``task_status.started(port)`` reports the bound port."""
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    async with listener:
        bound = listener.extra(SocketAttribute.local_port)
        task_status.started(bound)
        await listener.serve(lambda stream: _answer(stream, handler))


async def _answer(stream: SocketStream, handler: Handler) -> None:
    async with stream:
        head = b""
        with anyio.move_on_after(_READ_TIMEOUT):
            while b"\r\n\r\n" not in head and len(head) < _MAX_HEAD:
                try:
                    head += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split()
        if len(parts) != 3:
            response = Response(400, b'{"error": "bad request"}')
        elif parts[0] != "GET":
            response = Response(405, b'{"error": "only GET"}')
        else:
            response = handler(parts[1].split("?", 1)[0])
        reason = _REASONS.get(response.status, "")
        out = (
            f"HTTP/1.1 {response.status} {reason}\r\n"
            f"Content-Type: {response.content_type}\r\n"
            f"Content-Length: {len(response.body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode("latin-1") + response.body
        with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await stream.send(out)
