"""``Lane``: one multiplexed connection, shared by concurrent callers.

Every command queued when the connection is ready to write goes out in one write (at
most ``MAX_BATCH_COMMANDS`` commands and about ``MAX_BATCH_BYTES`` bytes), and the
replies, which Redis sends in order, go back to their callers in that order, each as
soon as it is complete. A RESP3 push message is nobody's reply. A cancelled caller's
command is dropped if it was not written yet; if it was, its reply is read and
discarded. The lane is an asyncio protocol driven by the event loop's callbacks: no
task of its own. ``auto_pipeline``'s ``Multiplexer`` and the client-side cache's
reader are lanes.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import hiredis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse
from redis.exceptions import TimeoutError as RedisTimeoutError

from supervisor.connection.losses import Loss, Reported, describe
from supervisor.connection.pool import NotSent
from supervisor.connection.schedule import Showed

__all__ = (
    "MAX_BATCH_BYTES",
    "MAX_BATCH_COMMANDS",
    "NOT_ENOUGH_DATA",
    "Lane",
    "Reporter",
    "unsent",
)

MAX_BATCH_COMMANDS = 512
MAX_BATCH_BYTES = 256 * 1024

_PUSH: Any = getattr(hiredis, "PushNotification", ())
"""hiredis's type for a RESP3 push message (a list)."""

NOT_ENOUGH_DATA: Any = object()
"""What a reader returns for "no complete reply yet": hiredis's default is ``False``,
which is also RESP3's boolean false (``#f``), a reply like any other."""


class Reporter(Protocol):
    """Who hears of a lane's loss (a supervisor)."""

    def connection_lost(self, loss: Loss) -> None: ...


class Lane(asyncio.Protocol):
    """One multiplexed connection: writes batches, hands each reply to its caller."""

    def __init__(
        self,
        connection: AbstractConnection,
        generation: int,
        timeout: float | None,
        watcher: Reporter,
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
        kwargs: dict[str, Any] = {
            "protocolError": InvalidResponse,
            "notEnoughData": NOT_ENOUGH_DATA,
        }
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
        reply: Any = None
        while reply is not NOT_ENOUGH_DATA:
            try:
                while (reply := reader.gets()) is not NOT_ENOUGH_DATA:
                    if type(reply) is _PUSH:  # RESP3: nobody's reply, never one's place in line
                        if self._on_push is not None:
                            self._on_push(reply)
                        continue
                    future = inflight.popleft()
                    if not future.done():
                        future.set_result(reply)
            except UnicodeDecodeError as exc:
                # a reply read whole that decode_responses cannot decode: its caller's
                # error, as redis-py raises it; the reader goes on with the next one
                if inflight and not (future := inflight.popleft()).done():
                    future.set_result(exc)
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
        not_written = unsent(f"not written before the connection closed ({error})")
        for _, _, future in queue:
            if not future.done():
                future.set_exception(not_written)
        if self._on_close is not None:
            self._on_close(error)

    def close(self) -> None:
        """Close a lane that is done with: at shutdown, or from before an outage the
        supervisor already accounted for (nothing to report)."""
        self.fail(_Lost("the supervisor closed the connection"), report=False)


class _Lost(Reported, RedisConnectionError):
    pass


class _Stalled(Reported, RedisTimeoutError):
    pass


class _Unsent(Reported, NotSent):
    pass


def unsent(why: str) -> NotSent:
    return _Unsent(why, showed=Showed.REFUSED)
