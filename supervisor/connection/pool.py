"""The supervised connection pool: redis-py's pool with admission and checkout checks.

On the command path it adds one attribute test (is the gate open?), one
(may it dial?) and one integer compare (is the connection from the current
generation?). Everything else (health checks, attribution, reconnecting)
happens beside it.

A command that finds no idle connection and may not open one (the pool is at
``max_connections``, ``_MAX_DIALS`` connections are being opened, or the server
turns new connections away) waits in line for a released one instead of failing:
bounded by ``command_deadline`` and counted against ``max_waiters``. The line is
first come, first served: each hand-off (a release, a dial slot freed, a connection
adopted) wakes the oldest waiter alone, and while anyone waits or has been woken, a
new command queues behind them instead of taking the connection meant for them.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from contextlib import suppress
from typing import Any

import anyio
from redis.asyncio.connection import (
    AbstractConnection,
    ConnectionPool,
)
from redis.asyncio.observability.recorder import (
    record_connection_count,
    record_connection_create_time,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.observability.attributes import ConnectionState as ObservedState
from redis.observability.attributes import get_pool_name

from supervisor.causes import Evidence, attribute
from supervisor.connection.connections import connection_class_for
from supervisor.connection.losses import Loss, Watcher, describe
from supervisor.connection.probe import drop
from supervisor.connection.quiet import install as install_quiet
from supervisor.connection.schedule import Showed, showed_by

__all__ = ("NotSent", "SupervisedConnectionPool", "connection_class_for")


_MAX_DIALS = 2
"""New connections opened at once: after an outage twenty waiting commands do not
make twenty handshakes compete, and the first of them is served sooner; the rest
take the connections that are released meanwhile."""


class NotSent(RedisConnectionError):
    """No connection could be made, so the command never left the client."""

    def __init__(self, message: str, *, showed: Showed) -> None:
        super().__init__(message)
        self.showed = showed


def _expire(turn: asyncio.Future[bool]) -> None:
    if not turn.done():
        turn.set_result(False)


class _NoConnection(Exception):
    """No idle connection, and no new one may be opened now: wait for a release."""


def _not_sent(exc: BaseException) -> NotSent:
    error = describe(exc)
    cause, _ = attribute(Evidence(error=error, reachable=False))
    return NotSent(error, showed=showed_by(exc, cause))


class SupervisedConnectionPool(ConnectionPool):
    """A ``redis.asyncio.ConnectionPool`` that waits at the gate while Redis is down,
    never hands out a connection from before an outage, and reports what broke.
    """

    def __init__(
        self, *, watcher: Watcher, idempotent: frozenset[str] = frozenset(), **kwargs: Any
    ) -> None:
        self._watcher = watcher
        self.idempotent = idempotent
        """Commands besides the read-only ones that may be re-sent (``idempotent_commands``)."""
        self._gate = watcher.gate
        self.dialing = True
        """False while the server turns new connections away: only idle ones are used."""
        self.waiters = 0
        """Commands waiting in line for a connection (those waiting at the gate meanwhile
        are counted by the gate)."""
        self._line: deque[asyncio.Future[bool]] = deque()
        self._woken = 0
        """Waiters woken for a hand-off that have not taken it yet: new commands queue."""
        self._dials = 0
        self.cache: Any = None
        """The ``ClientCache`` of every ``SupervisedRedis`` built on this pool, if any."""
        install_quiet()
        super().__init__(**kwargs)

    async def get_connection(
        self, command_name: Any = None, *keys: Any, **options: Any
    ) -> AbstractConnection:
        deadline = None
        if not self._gate.is_open:
            deadline = anyio.current_time() + self._watcher.command_deadline
            await self._gate.wait_open(deadline)
        if not self._line and not self._woken:
            connection = await self._checkout()
            if connection is not None:
                return connection
        if deadline is None:
            deadline = anyio.current_time() + self._watcher.command_deadline
        return await self._wait_in_line(deadline)

    async def _checkout(self) -> AbstractConnection | None:
        """redis-py 8.1's ``get_connection`` (its connection counts for OpenTelemetry
        included) without the deprecated-arguments wrapper it pays on every command;
        None when no connection may be had now."""
        async with self._lock:
            before = len(self._available_connections) + len(self._in_use_connections)
            started = time.monotonic()
            try:
                connection = self.get_available_connection()
            except _NoConnection:
                return None
            created = len(self._available_connections) + len(self._in_use_connections) > before
        name = get_pool_name(self)
        if created:
            await record_connection_count(name, ObservedState.USED, 1)
        else:
            await record_connection_count(name, ObservedState.IDLE, -1)
            await record_connection_count(name, ObservedState.USED, 1)
        try:
            await self.ensure_connection(connection)
            if created:
                await record_connection_create_time(self, time.monotonic() - started)
            return connection
        except BaseException as exc:
            await self.release(connection)
            if isinstance(exc, (RedisConnectionError, RedisTimeoutError, OSError)):
                raise _not_sent(exc) from exc
            raise

    def get_available_connection(self) -> AbstractConnection:
        available = self._available_connections
        generation = self._gate.generation
        if available:
            conn: Any = available[-1]
            if conn.generation == generation and conn.is_connected:
                available.pop()
                self._in_use_connections.add(conn)
                return conn  # type: ignore[no-any-return]
        for i in range(len(available) - 2, -1, -1):
            conn = available[i]
            if conn.generation == generation and conn.is_connected:
                del available[i]
                self._in_use_connections.add(conn)
                return conn  # type: ignore[no-any-return]
        if not self.dialing or self._dials >= _MAX_DIALS:
            raise _NoConnection
        if available:
            conn = available.pop()
        elif len(self._in_use_connections) < self.max_connections:
            conn = self.make_connection()  # type: ignore[no-untyped-call]
        else:
            raise _NoConnection
        self._dials += 1
        conn.dial = True
        self._in_use_connections.add(conn)
        return conn  # type: ignore[no-any-return]

    async def _wait_in_line(self, deadline: float) -> AbstractConnection:
        """Wait for a hand-off, in order. A bare future and one timer per waiter: a
        crowd of waiters is where a cancel scope per wait would cost the most."""
        gate = self._gate
        if self.waiters + gate.waiters >= gate.max_waiters:
            raise self._watcher.unavailable(
                f"{self.waiters + gate.waiters} commands already wait (max_waiters)"
            )
        loop = asyncio.get_running_loop()
        first: asyncio.Future[bool] = loop.create_future()
        self._line.append(first)
        turn: asyncio.Future[bool] | None = first
        timer = loop.call_at(deadline, _expire, first)
        generation = gate.generation
        self.waiters += 1
        try:
            while True:
                assert turn is not None
                if not await turn:
                    outage = not gate.is_open or gate.generation != generation
                    raise self._watcher.unavailable(self._why_waiting(outage))
                self._woken -= 1
                turn = None
                if not gate.is_open:
                    self.waiters -= 1
                    try:
                        await gate.wait_open(deadline)
                    finally:
                        self.waiters += 1
                connection = await self._checkout()
                if connection is not None:
                    return connection
                turn = loop.create_future()  # nothing to take after all: first in line again
                self._line.appendleft(turn)
                timer.cancel()
                timer = loop.call_at(deadline, _expire, turn)
        finally:
            timer.cancel()
            self.waiters -= 1
            if turn is None:
                if self._line and len(self._available_connections) > self._woken:
                    self._hand_off()  # more is free than the woken waiters will take
            elif turn.done() and not turn.cancelled() and turn.result():
                self._woken -= 1  # woken, then cancelled: pass the hand-off on
                self._hand_off()
            else:
                with suppress(ValueError):
                    self._line.remove(turn)

    def _why_waiting(self, outage: bool) -> str:
        if outage:
            return (
                "command_deadline passed waiting for a connection while the target was not "
                "available: the connections in use were caught in it"
            )
        if not self.dialing:
            return (
                "command_deadline passed waiting for a connection: the server turns new "
                "ones away and none was released"
            )
        return (
            f"command_deadline passed waiting for a connection: all max_connections="
            f"{self.max_connections} stayed in use; raise max_connections or hold "
            "connections for less time"
        )

    def _hand_off(self) -> None:
        """Wake the oldest waiter, and only it: one connection (or dial slot) came free."""
        line = self._line
        while line:
            turn = line.popleft()
            if not turn.done():  # out of time, not yet out of the line
                self._woken += 1
                turn.set_result(True)
                return

    def allow_dialing(self, allowed: bool) -> None:
        self.dialing = allowed
        if allowed:
            for _ in range(_MAX_DIALS):
                self._hand_off()

    async def adopt(self, connection: AbstractConnection) -> None:
        """Add a connection the prober opened, and hand it to a waiting command."""
        conn: Any = connection
        conn.generation = self._gate.generation
        conn.last_used = time.monotonic()
        conn.socket_timeout = self.connection_kwargs.get("socket_timeout")
        async with self._lock:
            full = (
                len(self._available_connections) + len(self._in_use_connections)
                >= self.max_connections
            )
            if not full:
                self._available_connections.append(connection)
        if full:
            await drop(connection)
        else:
            await record_connection_count(get_pool_name(self), ObservedState.IDLE, 1)
            self._hand_off()

    async def close(self) -> None:
        """Close every connection at once, without waiting for a stalled peer to take
        the goodbye (``drop``: bounded, shielded); no socket outlives the pool."""
        connections = [*self._available_connections, *self._in_use_connections]
        async with anyio.create_task_group() as tg:
            for conn in connections:
                tg.start_soon(drop, conn)
        with anyio.move_on_after(1):
            await self.aclose()

    async def ensure_connection(self, connection: AbstractConnection) -> None:
        conn: Any = connection
        if conn.dial:
            try:
                await self._dial(conn)
            finally:
                conn.dial = False
                self._dials -= 1
                self._hand_off()
            return
        try:
            if not await connection.can_read():
                return
            error = "the server closed the connection"
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            error = describe(exc)
        self._watcher.connection_lost(
            Loss(error, time.monotonic() - conn.last_used, command_failed=False)
        )
        await connection.disconnect()
        await connection.connect()

    async def _dial(self, conn: Any) -> None:
        """Connect a connection that is new, closed, or from before an outage."""
        generation = self._gate.generation
        if conn.generation != generation:
            if conn.is_connected:
                await conn.disconnect()
            self._retarget(conn)
        await conn.connect()
        conn.generation = generation

    def _retarget(self, conn: Any) -> None:
        """Point a connection from an older generation at the pool's current address
        (a Sentinel target moves when its master does)."""
        kwargs = self.connection_kwargs
        if "host" in kwargs and hasattr(conn, "host"):
            conn.host, conn.port = kwargs["host"], kwargs["port"]

    async def release(self, connection: AbstractConnection) -> None:
        conn: Any = connection
        conn.last_used = time.monotonic()
        await super().release(connection)
        if self._line:
            self._hand_off()

    async def refresh_idle(self, idle_for: float, timeout: float) -> None:
        """PING every pooled connection idle for ``idle_for`` seconds, so the server's
        idle ``timeout`` never closes it; drop the ones that fail.

        The PINGs run side by side under one ``timeout``, so a stalled server holds the
        health task for one timeout, not one per connection; a command that finds every
        connection being pinged waits for the first one released (one round trip).
        """
        now = time.monotonic()
        generation = self._gate.generation
        async with self._lock:
            taken = [
                c
                for c in self._available_connections
                if c.is_connected and (now - c.last_used >= idle_for or c.generation != generation)  # type: ignore[attr-defined]
            ]
            for conn in taken:
                self._available_connections.remove(conn)
                self._in_use_connections.add(conn)
        if taken:  # as redis-py counts a checkout: release() counts them back
            name = get_pool_name(self)
            await record_connection_count(name, ObservedState.IDLE, -len(taken))
            await record_connection_count(name, ObservedState.USED, len(taken))

        async def ping(conn: Any) -> None:
            try:
                if conn.generation != generation:
                    await drop(conn)
                    return
                with anyio.fail_after(timeout):
                    await conn.send_command("PING", check_health=False)
                    await conn.read_response()
            except (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError) as exc:
                stalled = isinstance(exc, TimeoutError)
                error = f"no reply to PING within {timeout:g} s" if stalled else describe(exc)
                self._watcher.connection_lost(
                    Loss(error, now - conn.last_used, command_failed=False, stalled=stalled)
                )
                await drop(conn)
            finally:
                with anyio.CancelScope(shield=True):
                    await self.release(conn)

        async with anyio.create_task_group() as tg:
            for conn in taken:
                tg.start_soon(ping, conn)
