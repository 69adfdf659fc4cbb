"""The supervised connection pool: redis-py's pool with admission and checkout checks.

On the command path it adds one attribute test (is the gate open?) and one
integer compare (is the connection from the current generation?). Everything
else (health checks, attribution, reconnecting) happens beside it.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    ConnectionPool,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError
from redis.exceptions import TimeoutError as RedisTimeoutError

from supervisor.losses import Loss, Watcher, describe

__all__ = ("NotSent", "SupervisedConnectionPool", "connection_class_for")


class NotSent(RedisConnectionError):
    """No connection could be made, so the command never left the client."""


class _Tracked:
    generation: int = -1
    last_used: float = 0.0


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


class SupervisedConnectionPool(ConnectionPool):
    """A ``redis.asyncio.ConnectionPool`` that waits at the gate while Redis is down,
    never hands out a connection from before an outage, and reports what broke.
    """

    def __init__(self, *, watcher: Watcher, **kwargs: Any) -> None:
        self._watcher = watcher
        self._gate = watcher.gate
        super().__init__(**kwargs)

    async def get_connection(
        self, command_name: Any = None, *keys: Any, **options: Any
    ) -> AbstractConnection:
        if not self._gate.is_open:
            await self._gate.wait_open(anyio.current_time() + self._watcher.command_deadline)
        try:
            return await super().get_connection()  # type: ignore[no-untyped-call,no-any-return]
        except MaxConnectionsError:
            raise
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise NotSent(describe(exc)) from exc

    async def ensure_connection(self, connection: AbstractConnection) -> None:
        conn: Any = connection
        generation = self._gate.generation
        if conn.generation != generation:
            if connection.is_connected:
                await connection.disconnect()
            self._retarget(conn)
        if connection.is_connected:
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

    async def refresh_idle(self, idle_for: float, timeout: float) -> None:
        """PING every pooled connection idle for ``idle_for`` seconds, so the
        server's idle ``timeout`` never closes it; drop the ones that fail.
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
        for conn in taken:
            try:
                if conn.generation != generation:  # type: ignore[attr-defined]
                    await conn.disconnect()
                    continue
                with anyio.fail_after(timeout):
                    await conn.send_command("PING", check_health=False)
                    await conn.read_response()
            except (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError) as exc:
                self._watcher.connection_lost(
                    Loss(describe(exc), now - conn.last_used, command_failed=False)  # type: ignore[attr-defined]
                )
                await conn.disconnect()
            finally:
                with anyio.CancelScope(shield=True):
                    await self.release(conn)
