"""Auto-pipelining: the plain commands of concurrent callers share one connection.

Every command queued when the connection is ready to write goes out in one write
(at most ``MAX_BATCH_COMMANDS`` commands and about ``MAX_BATCH_BYTES`` bytes), and
the replies, which Redis sends in order, go back to their callers in that order,
parsed as redis-py parses them. A reply is handed over as soon as it is complete,
so a large one holds back only what the server sent after it.

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
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio
import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.client import EMPTY_RESPONSE, NEVER_DECODE
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from supervisor.connection.losses import Loss, Reported, Watcher, describe
from supervisor.connection.pool import NotSent, SupervisedConnectionPool, _not_sent
from supervisor.connection.probe import drop
from supervisor.connection.resend import BLOCKING
from supervisor.connection.schedule import Showed

__all__ = ("MAX_BATCH_BYTES", "MAX_BATCH_COMMANDS", "Lane", "Multiplexer", "may_pipeline")

MAX_BATCH_COMMANDS = 512
MAX_BATCH_BYTES = 256 * 1024

_PUSH: Any = getattr(hiredis, "PushNotification", ())
"""hiredis's type for a RESP3 push message (a list)."""

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


class Lane(asyncio.Protocol):
    """One multiplexed connection: writes batches, hands each reply to its caller."""

    def __init__(
        self,
        connection: AbstractConnection,
        generation: int,
        timeout: float | None,
        watcher: Watcher,
        on_close: Callable[[BaseException], None] | None = None,
        on_push: Callable[[list[Any]], None] | None = None,
    ) -> None:
        self.connection = connection
        self._on_close = on_close
        self._on_push = on_push
        self.watcher = watcher
        self.generation = generation
        self.timeout = timeout
        self.open = True
        self._loop = asyncio.get_running_loop()
        self._queue: deque[tuple[list[bytes], int, asyncio.Future[Any]]] = deque()
        self._inflight: deque[asyncio.Future[Any]] = deque()
        self._flush_pending = False
        self._paused = False
        self.last_used = self._loop.time()
        self._timer: asyncio.TimerHandle | None = None
        encoder = connection.encoder
        kwargs: dict[str, Any] = {"protocolError": InvalidResponse}
        kwargs["replyError"] = connection._parser.parse_error
        if encoder.decode_responses:
            kwargs["encoding"] = encoder.encoding
            kwargs["errors"] = encoder.encoding_errors
        self._reader = hiredis.Reader(**kwargs)
        writer: Any = connection._writer
        self._transport: asyncio.Transport = writer.transport
        self._transport.set_protocol(self)

    @property
    def load(self) -> int:
        return len(self._queue) + len(self._inflight)

    def submit(self, packed: list[bytes]) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self._loop.create_future()
        self._queue.append((packed, sum(map(len, packed)), future))
        if not self._flush_pending and not self._paused:
            self._flush_pending = True
            self._loop.call_soon(self._flush)
        return future

    def submit_all(self, commands: list[list[bytes]]) -> list[asyncio.Future[Any]]:
        """Queue commands to go out together, in order. On an idle lane they are
        written at once: nobody else's command could join them in the next tick."""
        loop = self._loop
        futures: list[asyncio.Future[Any]] = []
        queue = self._queue
        for packed in commands:
            future = loop.create_future()
            queue.append((packed, sum(map(len, packed)), future))
            futures.append(future)
        if self._flush_pending or self._paused:
            return futures
        if not self._inflight and len(queue) == len(commands):
            self._flush()
        else:
            self._flush_pending = True
            loop.call_soon(self._flush)
        return futures

    def _flush(self) -> None:
        self._flush_pending = False
        if not self.open or self._paused:
            return
        queue, inflight = self._queue, self._inflight
        chunks: list[bytes] = []
        size = count = 0
        while queue and count < MAX_BATCH_COMMANDS and size < MAX_BATCH_BYTES:
            packed, length, future = queue.popleft()
            if future.done():  # cancelled before it was written: never sent
                continue
            chunks.extend(packed)
            inflight.append(future)
            size += length
            count += 1
        if not chunks:
            return
        self.last_used = now = self._loop.time()
        if self._timer is None and self.timeout:
            self._timer = self._loop.call_at(now + self.timeout, self._check_stall)
        self._transport.writelines(chunks)
        if queue and not self._paused:
            self._flush_pending = True
            self._loop.call_soon(self._flush)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        inflight = self._inflight
        try:
            while (reply := reader.gets()) is not False:
                if type(reply) is _PUSH:  # RESP3: no caller's reply, never one's place in line
                    if self._on_push is not None:
                        self._on_push(reply)
                    continue
                future = inflight.popleft()
                if not future.done():
                    future.set_result(reply)
        except (InvalidResponse, IndexError) as exc:  # garbage, or a reply nobody asked for
            self.fail(_Lost(f"protocol error on a multiplexed connection: {exc}"))
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            if inflight and self.timeout:
                self._timer = self._loop.call_later(self.timeout, self._check_stall)

    def _check_stall(self) -> None:
        """No reply within ``socket_timeout``: as redis-py, the connection is given up."""
        self._timer = None
        if self._inflight:
            self.fail(_Stalled("Timeout reading from socket"))

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._queue and not self._flush_pending:
            self._flush_pending = True
            self._loop.call_soon(self._flush)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(_Lost("Connection closed by server."))

    def fail(self, error: BaseException, *, report: bool = True) -> None:
        """Close the lane: commands written and not answered get ``error`` (their
        replies are lost); commands not written yet get ``NotSent``. The loss is
        reported once, for all of them."""
        if not self.open:
            return
        self.open = False
        if report:
            self.watcher.connection_lost(
                Loss(
                    describe(error),
                    None,
                    command_failed=bool(self._inflight or self._queue),
                    stalled=isinstance(error, RedisTimeoutError),
                )
            )
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._transport.abort()
        self.connection._close()
        inflight, self._inflight = self._inflight, deque()
        for future in inflight:
            if not future.done():
                future.set_exception(error)
        queue, self._queue = self._queue, deque()
        unsent = _unsent(f"not written before the connection closed ({error})")
        for _, _, future in queue:
            if not future.done():
                future.set_exception(unsent)
        if self._on_close is not None:
            self._on_close(error)

    def close(self) -> None:
        """Close a lane that is done with: at shutdown, or from before an outage the
        supervisor already accounted for (nothing to report)."""
        self.fail(_Lost("the supervisor closed the connection"), report=False)


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
            raise _unsent("the supervisor is closed")
        if self._lane is not None:
            self._lane.close()
            self._lane = None
        opening = self._opening = asyncio.get_running_loop().create_future()
        try:
            lane = None
            with anyio.CancelScope() as self._opener:
                lane = await self._open()
            if lane is None:
                raise _unsent("the supervisor is closed")
        except BaseException as exc:
            failed = exc if isinstance(exc, Exception) else _unsent("its opener was cancelled")
            if not opening.done():
                opening.set_exception(failed)
                opening.exception()  # retrieved: waiters get it, nobody else needs to
            raise
        finally:
            self._opening = self._opener = None
        if self._closed:
            lane.close()
            raise _unsent("the supervisor is closed")
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
            opening.set_exception(_unsent("the supervisor is closed"))
            opening.exception()
        if self._lane is not None:
            self._lane.close()


class _Lost(Reported, RedisConnectionError):
    pass


class _Stalled(Reported, RedisTimeoutError):
    pass


class _Unsent(Reported, NotSent):
    pass


def _unsent(why: str) -> NotSent:
    return _Unsent(why, showed=Showed.REFUSED)
