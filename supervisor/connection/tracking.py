"""``Tracker``: the client-side cache's two connections, and the proof that what it
holds is fresh.

The cache reads through a connection of its own (the *reader*, multiplexed like
``auto_pipeline``'s lane) with ``CLIENT TRACKING ON REDIRECT`` to a second one (the
*stream*), subscribed to ``__redis__:invalidate``. No command of the application
ever runs on either, so nothing it sends (``CLIENT TRACKING off``, ``RESET``) can
change what the server tracks for the cache.

The proof: every ``max_staleness / 4`` the tracker sends a PING on the stream and
``INFO replication commandstats`` on the reader at one moment ``T``. The server answers each
after it read it, so after ``T``; and it queued the invalidation of every write it
had applied by then before that answer, on the same ordered connection. When both
answers are in, every write acknowledged before ``T`` has been applied to the
store: ``proven_at = T``. That holds on a master only: a replica applies writes
its master acknowledged later, so while ``INFO`` says ``role:slave`` nothing is
proven (and what was stored goes). ``INFO commandstats`` also tells a ``SWAPDB``, the one
change to the data the server sends no invalidation for. The reader's answer also
proves the reader was alive: the server forgets what a connection tracked when it
closes, so an entry read on a connection is valid only while it lives.

Whatever breaks (either connection lost, a new generation after an outage or a
failover, a round unanswered for ``command_deadline``) empties the store at once, in
the callback that saw it, and the proof starts again from nothing on new
connections. A stall shorter than that only stops the proof: the invalidations
queue in order behind it, so the entries stay and are served again once a round
after the stall proves them. A null invalidation
(``FLUSHALL``, ``FLUSHDB``) or a ``SWAPDB`` empties it too, and the proof stands.
While the supervisor finds its target not answering (``target_ready``), nothing is
proven: a failover may be under way.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from typing import Any

import anyio
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from supervisor.causes import FlushCause
from supervisor.connection.backoff import Backoff
from supervisor.connection.cachestore import CacheStore
from supervisor.connection.gate import Gate
from supervisor.connection.invalidations import CHANNEL, Stream
from supervisor.connection.lane import Lane
from supervisor.connection.losses import Loss, Watcher, describe
from supervisor.connection.probe import drop
from supervisor.connection.quiet import quiet_task

__all__ = ("CHANNEL", "Tracker")

Flushed = Callable[[FlushCause, int, str], None]


class _Broken(Exception):
    def __init__(self, cause: FlushCause, detail: str) -> None:
        super().__init__(detail)
        self.cause = cause


class _Refused(Exception):
    """The server refused what the cache needs (an ACL without the invalidation
    channel, ``CLIENT TRACKING`` not allowed): waiting does not fix it."""


REFUSED_RETRY = 300.0
"""Seconds before asking again after a refusal: an operator may grant it meanwhile."""


async def _asked(connection: Any, *command: Any) -> Any:
    await connection.send_command(*command)
    try:
        return await connection.read_response()
    except ResponseError as exc:
        raise _Refused(
            f"the server refused the cache's {' '.join(map(str, command))} ({exc}): reads go "
            "to the server uncached; allow it for this user (for SUBSCRIBE: ACL SETUSER "
            "<user> &__redis__:invalidate) or turn client_cache off. Asked again every "
            f"{REFUSED_RETRY:g} s"
        ) from None


def _calls(text: bytes, name: bytes) -> int:
    at = text.find(b"cmdstat_" + name + b":calls=")
    if at < 0:
        return 0
    start = at + len(name) + 15
    end = text.find(b",", start)
    return int(text[start:end])


def _swapdb_calls(reply: Any) -> tuple[int, int] | None:
    """How many ``SWAPDB`` and ``INFO`` calls the server counted, or None when it
    refused ``INFO``. ``CONFIG RESETSTAT`` sets both back to 0, which would hide a
    ``SWAPDB`` in the same round: the tracker's own ``INFO`` of the round before makes
    the ``INFO`` count grow by at least one, so a count that did not is a reset."""
    if reply is None or isinstance(reply, Exception):
        return None
    text = _as_bytes(reply)
    return _calls(text, b"swapdb"), _calls(text, b"info")


def _swapped(before: tuple[int, int] | None, now: tuple[int, int] | None) -> bool:
    """Whether a ``SWAPDB`` may have run between two rounds' counts."""
    if before is None or now is None:
        return before != now
    return now[0] != before[0] or now[1] <= before[1]


_ROLE_SLAVE = b"role:slave"

_CHECKS: tuple[tuple[str, ...], ...] = (
    ("INFO", "replication", "commandstats"),
    ("INFO", "commandstats"),  # a server before Redis 7 takes one section
)


def _as_bytes(reply: Any) -> bytes:
    return reply if isinstance(reply, bytes) else str(reply).encode()


async def _first_answered(connection: Any) -> tuple[tuple[str, ...], Any]:
    """The round's check this server and user answer, and its first answer; ``PING``
    (and None) when ``INFO`` is refused."""
    for check in _CHECKS:
        await connection.send_command(*check)
        try:
            return check, await connection.read_response()
        except ResponseError:
            continue
    return ("PING",), None


class Tracker:
    """Owns the stream and the reader; ``run()`` is a task of the supervisor's group."""

    def __init__(
        self,
        pool: Any,
        store: CacheStore,
        *,
        gate: Gate,
        watcher: Watcher,
        max_staleness: float,
        stall_limit: float,
        open_timeout: float,
        backoff_base: float,
        backoff_cap: float,
        flushed: Flushed,
        alert: Callable[[str], None],
    ) -> None:
        self._pool = pool
        self._store = store
        self._gate = gate
        self._watcher = watcher
        self.interval = max_staleness / 4
        self._stall_limit = stall_limit
        self._round: anyio.CancelScope | None = None
        self._open_timeout = open_timeout
        self._backoff = Backoff(backoff_base, backoff_cap)
        self._flushed = flushed
        self._alert = alert
        self.refused = False
        """The server refused what the cache needs; said once (``alert``)."""
        self.proven_at = -math.inf
        """``time.monotonic()`` of the last round that proved the store complete."""
        self.generation = -1
        """The gate's generation the connections belong to; -1 while there are none."""
        self.lane: Lane | None = None
        self._stream: Stream | None = None
        self._swaps: tuple[int, int] | None = None
        self._check: tuple[str, ...] = ("PING",)
        self.ready = False
        """The supervisor finds its target answering (READY or OVERLOADED): while it does
        not (a failover under way, a stall), the proof says nothing of the writes a new
        primary may be acknowledging."""
        self.swapdb_seen = True
        """False when the server refuses ``INFO`` to this user: a ``SWAPDB`` goes unseen."""
        self.replica = False
        """The server said ``role:slave`` in the last round: nothing is proven."""

    async def run(self) -> None:
        quiet_task()
        gate, pool = self._gate, self._pool
        while True:
            # polled: the gate's waiters are commands, each one counted against max_waiters;
            # and while the server turns new connections away, the cache does not dial
            while not gate.is_open or not pool.dialing:  # noqa: ASYNC110
                await anyio.sleep(self.interval)
            pause = None
            try:
                await self._session()
            except _Broken as exc:
                self.broken(exc.cause, str(exc))
            except _Refused as exc:
                if not self.refused:
                    self._alert(str(exc))
                self.refused = True
                pause = REFUSED_RETRY
            except Exception as exc:  # whatever it was, the supervisor goes on; the cache waits
                self.broken(FlushCause.STREAM_LOST, describe(exc))
            finally:
                self._close_connections()
            await anyio.sleep(pause or self._backoff.next_delay())

    def target_ready(self, ready: bool) -> None:
        """The supervisor's state changed: nothing is served while it is not ready,
        until a round sent once it is again."""
        self.ready = ready
        if not ready:
            self.proven_at = -math.inf
        elif self._round is not None and self._gate.generation != self.generation:
            self._round.cancel()  # a round on connections from before an outage: over

    def broken(self, cause: FlushCause, detail: str) -> None:
        """Nothing stored may be served from now on: called from the callbacks that
        see a fault, before any other task runs."""
        if cause is FlushCause.SERVER_FLUSH:  # the stream itself stays complete
            self.flush(cause, detail)
            return
        if self.generation < 0:
            return  # already broken, or never complete
        self.proven_at = -math.inf
        self.generation = -1
        dropped = self._store.flush(cause.value)
        self._flushed(cause, dropped, detail)

    def flush(self, cause: FlushCause, detail: str) -> None:
        """The data was emptied (or swapped), the stream stays complete: only the
        entries go."""
        dropped = self._store.flush(cause.value)
        self._flushed(cause, dropped, detail)

    async def _session(self) -> None:
        gate = self._gate
        generation = gate.generation
        with anyio.fail_after(self._open_timeout):
            stream, client_id = await self._open_stream()
            self._stream = stream
            self.lane = await self._open_reader(client_id, generation)
        self.generation = generation
        self.refused = False
        lane = self.lane
        while True:
            await anyio.sleep(self.interval)
            if gate.generation != generation:
                raise _Broken(FlushCause.RENEWED, "the supervisor reconnected to its target")
            sent = time.monotonic()
            ready = self.ready
            pong = stream.ping()
            info = lane.submit(lane.connection.pack_command(*self._check))
            reply: Any = None
            try:
                with anyio.move_on_after(self._stall_limit) as self._round:
                    await pong
                    reply = await info
            except (RedisConnectionError, RedisTimeoutError) as exc:
                raise _Broken(FlushCause.READER_LOST, describe(exc)) from exc
            finally:
                self._round = None
                if not info.cancel() and not info.cancelled():
                    info.exception()  # retrieved: the round is over either way
            if gate.generation != generation:
                # a round answered by the old master after a switch proves nothing of the new
                raise _Broken(FlushCause.RENEWED, "the supervisor reconnected to its target")
            if not info.done() or info.cancelled():
                raise _Broken(
                    FlushCause.STALLED,
                    f"no answer within command_deadline ({self._stall_limit:g} s)",
                )
            if self.swapdb_seen:
                swaps = _swapdb_calls(reply)
                if _swapped(self._swaps, swaps):
                    self.flush(FlushCause.SWAPDB, "SWAPDB ran, or the statistics were reset")
                self._swaps = swaps
                self._role(reply)
            if self.generation == generation and ready and self.ready and not self.replica:
                self.proven_at = sent
                self._backoff.reset()

    async def _open_stream(self) -> tuple[Stream, int]:
        pool = self._pool  # RESP2: invalidations come as pub/sub messages, in order with PONGs
        connection = pool.connection_class(**{**pool.connection_kwargs, "protocol": 2})
        try:
            await connection.connect()
            client_id = int(await _asked(connection, "CLIENT", "ID"))
            await _asked(connection, "SUBSCRIBE", CHANNEL.decode())
        except BaseException:
            await drop(connection)
            raise
        return Stream(connection, self._store, self._stream_broken), client_id

    async def _open_reader(self, client_id: int, generation: int) -> Lane:
        connection = self._pool.make_connection()
        try:
            await connection.connect()
            await _asked(connection, "CLIENT", "TRACKING", "ON", "REDIRECT", client_id)
            self._check, reply = await _first_answered(connection)
            self._swaps = _swapdb_calls(reply)
            self.swapdb_seen = self._swaps is not None
            self._role(reply)
        except BaseException:
            await drop(connection)
            raise
        return Lane(
            connection,
            generation,
            None,  # a slow read is its caller's timeout (ClientCache), not a lost reader
            self._watcher,
            on_close=self._reader_closed,
            on_push=self._reader_pushed,
        )

    def _role(self, reply: Any) -> None:
        """Follow the server's role (``INFO replication``): entries read on a replica
        may predate writes its master acknowledged, so they go when it becomes one."""
        replica = isinstance(reply, (bytes, str)) and _ROLE_SLAVE in _as_bytes(reply)
        if replica and not self.replica:
            self.proven_at = -math.inf
            self.flush(
                FlushCause.REPLICA,
                "the server is a replica (role:slave): reads go to it uncached until it is "
                "a master; point the url at the master to use the cache",
            )
        self.replica = replica

    def _stream_broken(self, cause: FlushCause, detail: str) -> None:
        if cause is FlushCause.STREAM_LOST:
            self._watcher.connection_lost(Loss(detail, None, command_failed=False))
        self.broken(cause, detail)

    def _reader_pushed(self, push: list[Any]) -> None:
        """A RESP3 reader hears of its stream's loss (``tracking-redir-broken``) from the
        server, maybe before the stream's own socket says so."""
        if push and push[0] in (b"tracking-redir-broken", "tracking-redir-broken"):
            self.broken(FlushCause.STREAM_LOST, "the server says the invalidation stream is gone")

    def _reader_closed(self, error: BaseException) -> None:
        self.broken(FlushCause.READER_LOST, describe(error))

    def _close_connections(self) -> None:
        lane, stream, self.lane, self._stream = self.lane, self._stream, None, None
        if lane is not None:
            lane.close()
        if stream is not None:
            stream.fail(FlushCause.STREAM_LOST, "closed by the supervisor", report=False)

    def close(self) -> None:
        """At shutdown: nothing is served any more; the sockets close at once."""
        self.proven_at = -math.inf
        self.generation = -1
        with contextlib.suppress(Exception):
            self._close_connections()
