"""The pool's connection classes: redis-py's, each carrying its generation and last use.

A connection from before an outage (an older generation) is never handed out as it is;
``last_used`` tells the idle refresh which to PING; ``dial`` marks one holding a dial slot.
A write that cannot wait is handed to the socket without a timer (``send_packed_command``),
and a read's ``socket_timeout`` is kept by the supervisor's ``ReadDeadlines`` task instead
of a timer of its own (``read_response``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any

from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.exceptions import AuthenticationError, BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from supervisor.connection.deadlines import ReadDeadlines

__all__ = ("SupervisedConnection", "connection_class_for")

_ANSWERS = (AuthenticationError, BusyLoadingError)
"""Error replies redis-py raises as ``ConnectionError``s: the server answered."""


class _Tracked:
    generation: int = -1
    last_used: float = 0.0
    dial: bool = False
    """Handed out to be connected: it holds one of the pool's dial slots."""
    deadlines: ReadDeadlines | None = None
    """The supervisor's, on the class it binds (``ReadDeadlines.bind``)."""
    read_due: float | None = None
    _read_expired = False
    _watched = False

    async def read_response(
        self,
        disable_decoding: bool = False,
        timeout: float | None = None,
        *,
        disconnect_on_error: bool = True,
        push_request: bool | None = False,
    ) -> Any:
        """redis-py's read, its ``socket_timeout`` kept by ``ReadDeadlines``: the read only
        stamps its deadline. A read with a timeout of its own, one that keeps its
        connection on an error, or one while the task is not running is redis-py's,
        timer and all."""
        deadlines = self.deadlines
        limit: float | None = self.socket_timeout  # type: ignore[attr-defined]
        if (
            timeout is not None
            or limit is None
            or not disconnect_on_error
            or deadlines is None
            or not deadlines.running
        ):
            return await super().read_response(  # type: ignore[misc]
                disable_decoding,
                timeout,
                disconnect_on_error=disconnect_on_error,
                push_request=push_request,
            )
        if not self._watched:
            deadlines.watch(self)
            self._watched = True
        self._read_expired = False
        self.read_due = time.monotonic() + limit
        try:
            return await super().read_response(  # type: ignore[misc]
                disable_decoding, math.inf, push_request=push_request
            )
        except (RedisConnectionError, OSError, EOFError) as exc:
            if self._read_expired and not isinstance(exc, _ANSWERS):
                host = self._host_error()  # type: ignore[attr-defined]
                raise RedisTimeoutError(f"Timeout reading from {host}") from None
            raise
        finally:
            self.read_due = None
            if self._read_expired:  # a reply that came as the deadline passed stands
                await self.disconnect(nowait=True)  # type: ignore[attr-defined]

    def expire_read(self) -> None:
        """The read under way is past its deadline: as redis-py, the connection is given
        up (its reply may still come, to nobody)."""
        self._read_expired = True
        self.read_due = None
        writer = self._writer  # type: ignore[attr-defined]
        if writer is not None:
            writer.transport.abort()

    def _reschedule_active_read_timeout(self, timeout: float | None) -> None:
        """redis-py's maintenance notifications relax or restore the deadline of the read
        under way: here it is the stamped one."""
        if self.read_due is not None:
            self.read_due = None if timeout is None else time.monotonic() + timeout
            return
        super()._reschedule_active_read_timeout(timeout)  # type: ignore[misc]

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


def connection_class_for(
    kwargs: dict[str, Any], deadlines: ReadDeadlines | None = None
) -> type[AbstractConnection]:
    """The tracked class for ``kwargs``' ``connection_class`` (popped), its reads watched
    by ``deadlines`` when given; a class of the application's own is left as it is."""
    base: type[AbstractConnection] = kwargs.pop("connection_class", Connection)
    tracked = _TRACKED.get(base, base)
    if deadlines is not None and issubclass(tracked, _Tracked):
        return deadlines.bind(tracked)
    return tracked
