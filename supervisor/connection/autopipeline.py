"""Auto-pipelining: the plain commands of concurrent callers share one connection.

The shared connection is a ``Lane`` (``supervisor.connection.lane``): every command
queued when it is ready to write goes out in one write, and each reply goes back to
its caller as soon as it is complete, parsed as redis-py parses it.

Only commands that leave the connection as they found it and answer at once go
this way (``may_pipeline``); the rest take the pool, as do pipelines, pub/sub and
``client()``. What a failure proves is as on the pool: a lost connection fails the
commands written on it and not answered (their replies are lost) and those not
written yet (``NotSent``); ``SupervisedRedis`` applies the one re-send rule to
each. A cancelled caller's command is dropped if it was not written yet; if it
was, its reply is read and discarded, never handed to anyone else.

Under pressure it behaves as the pool does: at most ``max_waiters`` commands are
queued or in flight on the lane (more fail at once with ``Unavailable``); while the
pool may not dial (the server turns new connections away) or the lane cannot be
opened because the server turned it away, commands run on the pool's connections
instead of dialing.

The lane is an asyncio protocol driven by the event loop's callbacks: there is no
background task, and ``aclose()`` closes every socket, one being opened included,
and settles every caller at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from typing import Any

import anyio
from redis.asyncio import Redis
from redis.client import EMPTY_RESPONSE, NEVER_DECODE
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from supervisor.connection.lane import Lane, unsent
from supervisor.connection.losses import Loss, Reported, describe
from supervisor.connection.pool import NotSent, SupervisedConnectionPool, _not_sent
from supervisor.connection.probe import drop
from supervisor.connection.resend import BLOCKING
from supervisor.connection.schedule import Showed

__all__ = ("Multiplexer", "may_pipeline")

_SERIAL = frozenset(
    {
        *BLOCKING,
        "MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH",
        "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE",
        "MONITOR", "SELECT", "AUTH", "HELLO", "CLIENT", "RESET", "QUIT",
        "READONLY", "READWRITE", "ASKING", "SYNC", "PSYNC", "REPLCONF", "SHUTDOWN",
    }
)  # fmt: skip
"""Commands that block, or change the state of the connection they are sent on."""


def may_pipeline(name: Any, options: dict[str, Any]) -> bool:
    """Whether a command may share a connection with others' commands."""
    return (
        type(name) is str
        and name.isupper()
        and name.split(" ", 1)[0] not in _SERIAL
        and NEVER_DECODE not in options
    )


class Multiplexer:
    """The connection ``sup.client`` shares among concurrent callers when
    ``auto_pipeline`` is on. Opened on first use, after every outage in a new
    generation (as pooled connections), and never while the gate is closed."""

    def __init__(self, pool: SupervisedConnectionPool) -> None:
        self._pool = pool
        self._watcher = pool._watcher
        self._gate = pool._watcher.gate
        self._lane: Lane | None = None
        self._opening: asyncio.Future[Lane] | None = None
        self._opener: anyio.CancelScope | None = None
        self._waiting_open = 0
        self._closed = False

    async def execute(self, client: Any, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
        gate = self._gate
        if not gate.is_open:
            await gate.wait_open(anyio.current_time() + self._watcher.command_deadline)
        lane = self._lane
        if lane is None or not lane.open or lane.generation != gate.generation:
            if not self._pool.dialing:
                return await Redis.execute_command(client, *args, **options)
            try:
                lane = await self._reopen()
            except NotSent as exc:
                if exc.showed is not Showed.TURNED_AWAY or isinstance(exc, Reported):
                    raise
                # the server turned the lane away (maxclients): say so, and let the
                # pool's connections serve meanwhile
                self._watcher.connection_lost(
                    Loss(describe(exc), None, command_failed=True, turned_away=True)
                )
                return await Redis.execute_command(client, *args, **options)
        if lane.load >= gate.max_waiters:
            raise self._watcher.unavailable(
                f"{lane.load} commands already queued or in flight on the shared "
                "connection (max_waiters)"
            )
        response = await lane.submit(lane.connection.pack_command(*args))
        if isinstance(response, Exception):  # an error reply, typed as redis-py types it
            if EMPTY_RESPONSE in options and isinstance(response, ResponseError):
                return options[EMPTY_RESPONSE]
            raise response
        callback = client.response_callbacks.get(args[0])
        if callback is None:
            return response
        if options:
            options = {k: v for k, v in options.items() if k not in (EMPTY_RESPONSE, "keys")}
        value = callback(response, **options)
        return await value if inspect.isawaitable(value) else value

    async def _reopen(self) -> Lane:
        """An open lane of the current generation: one caller opens it, the others
        wait for it."""
        opening = self._opening
        if opening is not None:
            if self._waiting_open >= self._gate.max_waiters:
                raise self._watcher.unavailable(
                    f"{self._waiting_open} commands already wait for the shared connection "
                    "(max_waiters)"
                )
            self._waiting_open += 1
            try:
                return await asyncio.shield(opening)
            finally:
                self._waiting_open -= 1
        if self._closed:
            raise unsent("the supervisor is closed")
        if self._lane is not None:
            self._lane.close()
            self._lane = None
        opening = self._opening = asyncio.get_running_loop().create_future()
        try:
            lane = None
            with anyio.CancelScope() as self._opener:
                lane = await self._open()
            if lane is None:
                raise unsent("the supervisor is closed")
        except BaseException as exc:
            failed = exc if isinstance(exc, Exception) else unsent("its opener was cancelled")
            if not opening.done():
                opening.set_exception(failed)
                opening.exception()  # retrieved: waiters get it, nobody else needs to
            raise
        finally:
            self._opening = self._opener = None
        if self._closed:
            lane.close()
            raise unsent("the supervisor is closed")
        self._lane = lane
        opening.set_result(lane)
        return lane

    async def _open(self) -> Lane:
        generation = self._gate.generation
        connection: Any = self._pool.make_connection()  # type: ignore[no-untyped-call]
        try:
            await connection.connect()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            await connection.disconnect()
            raise _not_sent(exc) from exc
        except BaseException:
            await drop(connection)  # shielded: the opener may be cancelled at exit
            raise
        return Lane(connection, generation, connection.socket_timeout, self._watcher)

    async def refresh_idle(self, idle_for: float) -> None:
        """PING the lane when idle for ``idle_for`` seconds, so the server's idle
        ``timeout`` never closes it (as the pool's connections); if that fails the
        lane is closed, and the next command opens another."""
        lane = self._lane
        if lane is None or not lane.open or lane.load:
            return
        if asyncio.get_running_loop().time() - lane.last_used >= idle_for:
            with contextlib.suppress(RedisConnectionError, RedisTimeoutError):
                await lane.submit(lane.connection.pack_command("PING"))

    def aclose(self) -> None:
        """Close the lane: its callers get the errors a lost connection gives; a lane
        being opened is given up, and whoever waits for it is told at once."""
        self._closed = True
        if self._opener is not None:
            self._opener.cancel()
        opening = self._opening
        if opening is not None and not opening.done():
            opening.set_exception(unsent("the supervisor is closed"))
            opening.exception()
        if self._lane is not None:
            self._lane.close()
