"""``ClientCache``: ``sup.client``'s reads served from memory, never staler than
``max_staleness``.

A cacheable read (``supervisor.connection.cacheable``) that begins at ``t`` is
answered from the store only while the tracker has proved its invalidation stream
complete up to ``t - max_staleness`` (``supervisor.connection.tracking``), and, after
a write through ``sup.client`` whose keys cannot be told, up to that write's
acknowledgment. Otherwise it goes to the server as if there were no cache.

A miss is read on the tracker's own connection, behind a ``PTTL`` of each key in
the same write, so the entry never outlives the key. Writes through ``sup.client``
drop the entries of their keys once acknowledged (or failed: a lost write may have
been applied), so a caller reads its own writes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from redis.client import EMPTY_RESPONSE
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from supervisor.causes import FlushCause
from supervisor.connection.cacheable import FLUSHES, keys_written
from supervisor.connection.cachestore import MISSING, CacheStore
from supervisor.connection.commands import command_name
from supervisor.connection.tracking import Tracker

__all__ = ("ClientCache", "ReadTimedOut")

Send = Callable[..., Awaitable[Any]]

_LOST = (RedisConnectionError, RedisTimeoutError)


def _copy(reply: Any) -> Any:
    """A copy of every container in a reply: a caller that edits what it got never
    edits the entry (nor another caller's answer)."""
    kind = type(reply)
    if kind is list:
        return [_copy(v) for v in reply]
    if kind is dict:
        return {_copy(k): _copy(v) for k, v in reply.items()}
    if kind is set:
        return set(reply)
    return reply


def _wire(encode: Callable[[Any], Any], args: tuple[Any, ...]) -> tuple[bytes, ...]:
    """The arguments as they go on the wire: ``1``, ``1.0`` and ``"1.0"`` are different
    keys to redis-py's encoder (``b"1"``, ``b"1.0"``, ``b"1.0"``), and so they are here.
    Raises redis-py's ``DataError`` for what redis-py would refuse to send."""
    out = []
    for arg in args:
        value = encode(arg)
        out.append(value if type(value) is bytes else bytes(value))
    return tuple(out)


class ReadTimedOut(RedisTimeoutError):
    """A cache miss read on the tracker's connection got no reply within
    ``socket_timeout``: as on the pool, it is not sent again on its own."""


class ClientCache:
    def __init__(
        self,
        store: CacheStore,
        tracker: Tracker,
        encode: Callable[[Any], bytes],
        *,
        ttl: float,
        max_staleness: float,
        max_waiters: int,
        read_timeout: float | None,
    ) -> None:
        self.store = store
        self._read_timeout = read_timeout
        self.tracker = tracker
        self._encode = encode
        self.ttl = ttl
        self.max_staleness = max_staleness
        self._max_waiters = max_waiters
        self.bypassed = 0
        """Cacheable reads sent to the server because the store was not proven fresh."""
        self.barrier = -math.inf
        """No hit until the stream is proven complete past this moment."""

    def serving(self, now: float) -> bool:
        proven = self.tracker.proven_at
        return proven >= now - self.max_staleness and proven >= self.barrier

    def staleness(self) -> float | None:
        """Seconds since the moment up to which the store is proven complete."""
        proven = self.tracker.proven_at
        return None if proven == -math.inf else max(0.0, time.monotonic() - proven)

    async def read(
        self, client: Any, name: str, args: tuple[Any, ...], options: dict[str, Any], send: Send
    ) -> Any:
        """Answer a cacheable read; ``name`` is its command, upper-cased."""
        now = time.monotonic()
        if not self.serving(now):
            self.bypassed += 1
            return await send(*args, **options)
        try:
            wire = _wire(self._encode, args[1:])
        except DataError:  # redis-py refuses to send it: let it say so
            return await send(*args, **options)
        if not wire:  # no key: the server's error reply says so
            return await send(*args, **options)
        if name == "MGET":
            return await self._mget(client, args, wire, options, send, now)
        store = self.store
        ident = (name, *wire)
        reply = store.get(ident, now)
        if reply is not MISSING:
            store.hits += 1
            return self._answer(client, args, options, reply)
        store.misses += 1
        keys = list(wire) if name == "EXISTS" else [wire[0]]
        fetched = await self._fetch(keys, (name, *wire))
        if fetched is None:
            return await send(*args, **options)
        fetch, expires, reply = fetched
        try:
            if not isinstance(reply, Exception):
                store.put(fetch, ident, keys, reply, min(expires))
        finally:
            store.end(fetch)
        return self._answer(client, args, options, reply)

    async def _mget(
        self,
        client: Any,
        args: tuple[Any, ...],
        wire: tuple[bytes, ...],
        options: dict[str, Any],
        send: Send,
        now: float,
    ) -> Any:
        """Only the keys not in the store are read, in one ``MGET``. A value is stored
        as that key's ``GET``; a nil only as an ``MGET``'s, since ``GET`` of a key that
        holds a list raises WRONGTYPE where ``MGET`` answers nil."""
        store = self.store
        values: dict[bytes, Any] = {}
        missing: list[bytes] = []
        for key in wire:
            if key not in values:
                reply = store.get(("GET", key), now)
                if reply is MISSING:
                    reply = store.get(("MGET", key), now)
                values[key] = reply
                if reply is MISSING:
                    missing.append(key)
        store.hits += len(values) - len(missing)
        if missing:
            store.misses += len(missing)
            fetched = await self._fetch(missing, ("MGET", *missing))
            if fetched is None:
                return await send(*args, **options)
            fetch, expires_each, reply = fetched
            try:
                if isinstance(reply, Exception):
                    raise reply
                for key, expires, value in zip(missing, expires_each, reply, strict=True):
                    values[key] = value
                    ident = ("MGET" if value is None else "GET", key)
                    store.put(fetch, ident, [key], value, expires)
            finally:
                store.end(fetch)
        return self._answer(client, ("MGET",), options, [values[k] for k in wire])

    async def _fetch(self, keys: list[bytes], command: tuple[Any, ...]) -> Any:
        """Send ``PTTL`` of each key, then ``command``, on the tracker's connection in
        one write. Return the fetch (to store the reply under), when each key expires,
        and the reply; or None when that connection cannot take it (the caller goes
        to the pool). The caller ends the fetch."""
        lane = self.tracker.lane
        if lane is None or not lane.open or lane.load >= self._max_waiters:
            return None
        store = self.store
        fetch = store.begin(keys)
        pack = lane.connection.pack_command
        sent = time.monotonic()
        futures = lane.submit_all([*(pack("PTTL", k) for k in keys), pack(*command)])
        try:
            with anyio.fail_after(self._read_timeout):
                replies = [await f for f in futures]
        except BaseException as exc:
            for future in futures:  # the rest: dropped if not written, discarded if they were
                if not future.cancel() and not future.cancelled():
                    future.exception()
            store.end(fetch)
            if isinstance(exc, TimeoutError):  # the server may still run it: never twice
                raise ReadTimedOut("Timeout reading from socket") from None
            if isinstance(exc, _LOST):
                return None
            raise
        cap = sent + self.ttl
        expires = [
            min(cap, sent + pttl / 1000) if type(pttl) is int and pttl >= 0 else cap
            for pttl in replies[:-1]
        ]
        return fetch, expires, replies[-1]

    def _answer(
        self, client: Any, args: tuple[Any, ...], options: dict[str, Any], reply: Any
    ) -> Any:
        """The reply as redis-py returns it: its response callback applied to a copy, so
        a caller that changes what it got never changes the entry."""
        if isinstance(reply, Exception):
            if EMPTY_RESPONSE in options and isinstance(reply, ResponseError):
                return options[EMPTY_RESPONSE]
            raise reply
        reply = _copy(reply)
        callback = client.response_callbacks.get(args[0])
        if callback is None:
            return reply
        if options:
            options = {k: v for k, v in options.items() if k not in (EMPTY_RESPONSE, "keys")}
        return callback(reply, **options)

    def wrote(self, args: tuple[Any, ...]) -> None:
        """A command that may write was acknowledged (or failed) through
        ``sup.client``: what it may have changed is not served from the store."""
        name = command_name(args)
        if name in FLUSHES:
            self.tracker.flush(FlushCause.LOCAL_FLUSH, f"{name} through sup.client")
            return
        keys = keys_written(name, args)
        if keys is None:
            self.barrier = time.monotonic()
        elif keys:
            try:
                wire = _wire(self._encode, tuple(keys))
            except DataError:  # redis-py refused to send it: nothing changed
                return
            self.store.invalidate(wire)
