"""The pool's connection classes: redis-py's, each carrying its generation and last use.

A connection from before an outage (an older generation) is never handed out as it is;
``last_used`` tells the idle refresh which to PING; ``dial`` marks one holding a dial slot.
A write that cannot wait is handed to the socket without a timer (``send_packed_command``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)

__all__ = ("SupervisedConnection", "connection_class_for")


class _Tracked:
    generation: int = -1
    last_used: float = 0.0
    dial: bool = False
    """Handed out to be connected: it holds one of the pool's dial slots."""

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        """redis-py puts every write under ``asyncio.wait_for(socket_timeout)``: a task and
        a timer per command on Python 3.11 (15 µs), a timer on 3.12+. A write only waits
        while the transport holds more than its high-water mark, which a command no bigger
        than that mark, written to an empty buffer, never makes it do: such a write is
        handed over at once and its drain has nothing to wait for, so it needs no timer.
        Everything else (a bigger or queued write, a closed transport, a health check due)
        goes through redis-py's own method, deadline and all. When that fails, the
        transport is aborted: redis-py only closes it, and a closing transport keeps what
        the server would not take (and its socket) until the server reads it all."""
        writer = self._writer  # type: ignore[attr-defined]
        transport = None if writer is None else writer.transport
        if (
            transport is not None
            and isinstance(command, list)
            and not (check_health and self.health_check_interval)  # type: ignore[attr-defined]
            and not transport.is_closing()
            and not transport.get_write_buffer_size()
            and sum(map(len, command)) <= transport.get_write_buffer_limits()[1]
        ):
            writer.writelines(command)
            return
        try:
            await super().send_packed_command(command, check_health)  # type: ignore[misc]
        except BaseException:
            if transport is not None and transport.is_closing():
                transport.abort()
            raise


class SupervisedConnection(_Tracked, Connection):
    pass


class SupervisedSSLConnection(_Tracked, SSLConnection):
    pass


class SupervisedUnixConnection(_Tracked, UnixDomainSocketConnection):
    pass


_TRACKED: dict[type[AbstractConnection], type[AbstractConnection]] = {
    Connection: SupervisedConnection,
    SSLConnection: SupervisedSSLConnection,
    UnixDomainSocketConnection: SupervisedUnixConnection,
}


def connection_class_for(kwargs: dict[str, Any]) -> type[AbstractConnection]:
    base: type[AbstractConnection] = kwargs.pop("connection_class", Connection)
    return _TRACKED.get(base, base)
