"""``Stream``: the client-side cache's subscribed connection, ``CLIENT TRACKING``'s
redirect target.

Each invalidation is applied to the store as it arrives, in order with the answers
to the tracker's PINGs on the same connection: a PONG proves every invalidation the
server queued before it has been applied (``supervisor.connection.tracking``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, ResponseError

from supervisor.causes import FlushCause
from supervisor.connection.cachestore import CacheStore
from supervisor.connection.lane import NOT_ENOUGH_DATA

__all__ = ("CHANNEL", "Stream")

CHANNEL = b"__redis__:invalidate"


class Stream(asyncio.Protocol):
    """The subscribed connection: applies each invalidation to the store as it
    arrives, and answers the tracker's PINGs in order with them."""

    def __init__(
        self,
        connection: Any,
        store: CacheStore,
        broken: Callable[[FlushCause, str], None],
    ) -> None:
        self.connection = connection
        self.open = True
        self._store = store
        self._broken = broken
        self._loop = asyncio.get_running_loop()
        self._pongs: deque[asyncio.Future[None]] = deque()
        self._reader = hiredis.Reader(
            protocolError=InvalidResponse, replyError=ResponseError, notEnoughData=NOT_ENOUGH_DATA
        )
        self._transport: asyncio.Transport = connection._writer.transport
        self._transport.set_protocol(self)

    def ping(self) -> asyncio.Future[None]:
        future: asyncio.Future[None] = self._loop.create_future()
        if not self.open:
            future.set_exception(RedisConnectionError("the invalidation connection is closed"))
            return future
        self._pongs.append(future)
        self._transport.write(b"*1\r\n$4\r\nPING\r\n")
        return future

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        try:
            while (message := reader.gets()) is not NOT_ENOUGH_DATA:
                self._handle(message)
        except (InvalidResponse, IndexError, TypeError) as exc:
            self.fail(FlushCause.STREAM_LOST, f"protocol error on the invalidation stream: {exc}")

    def _handle(self, message: Any) -> None:
        kind = message[0]
        if kind == b"message" and message[1] == CHANNEL:
            keys = message[2]
            if keys is None:  # FLUSHALL / FLUSHDB
                self._broken(FlushCause.SERVER_FLUSH, "the server flushed its data")
            else:
                self._store.invalidate(keys)
        elif kind == b"pong":
            pong = self._pongs.popleft()
            if not pong.done():
                pong.set_result(None)
        elif kind != b"subscribe":
            raise InvalidResponse(f"unexpected {kind!r}")

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(FlushCause.STREAM_LOST, "the invalidation connection was closed")

    def fail(self, cause: FlushCause, detail: str, *, report: bool = True) -> None:
        if not self.open:
            return
        self.open = False
        self._transport.abort()
        self.connection._close()
        if report:
            self._broken(cause, detail)
        error = RedisConnectionError(detail)
        while self._pongs:
            pong = self._pongs.popleft()
            if not pong.done():
                pong.set_exception(error)
                pong.exception()
