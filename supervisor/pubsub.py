"""Supervised pub/sub: a handle that is either consuming or closed, never a zombie.

redis-py's ``PubSub`` re-subscribes behind the application's back: the
server then counts a subscriber that nobody reads, or the application learns
nothing of the messages it missed. This handle owns its connection instead.
The application's iteration drives it: reading, a PING with a reply deadline
when the channel is quiet, and after any loss one reconnect (once the
supervisor's prober says the target is READY) that re-subscribes everything
and waits for the server's confirmations. Then it yields a ``Resubscribed``
marker, with the cause and the outage window, before the next message.
"""

from __future__ import annotations

import time
from collections import deque
from contextlib import suppress
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError, ResponseError

from supervisor import replies
from supervisor.backoff import Backoff
from supervisor.causes import Evidence, attribute
from supervisor.events import Resubscribed
from supervisor.losses import Loss, describe
from supervisor.probe import drop
from supervisor.state import ConnectionState

if TYPE_CHECKING:
    from supervisor.supervisor import Supervisor

__all__ = ("Message", "SupervisedPubSub")

_NAMED = 10
"""Names a ``Resubscribed`` detail (a log line) spells out; its fields hold them all."""
_KINDS = {"subscribe": "channels", "psubscribe": "patterns", "ssubscribe": "shard_channels"}


@dataclass(frozen=True, slots=True)
class Message:
    """One published message. ``kind`` is ``message``, ``pmessage`` or ``smessage``;
    ``pattern`` is set for ``pmessage``. Types follow ``decode_responses``."""

    kind: str
    channel: Any
    data: Any
    pattern: Any = None


class _Sent:
    """One subscribe command and its confirmations: the server answers each name of
    it in order, or refuses the command as a whole (NOPERM) with one error reply. A
    count, not a record per name, so 50,000 channels cost one object."""

    __slots__ = ("done", "error", "kind", "names", "remaining")

    def __init__(self, kind: str, names: list[str]) -> None:
        self.kind = kind
        self.names = names
        self.remaining = len(names)
        self.done = anyio.Event()
        self.error: ResponseError | None = None


class _Stalled(Exception):
    """The server did not answer a PING in time."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "stalled"


class SupervisedPubSub:
    """``async with sup.pubsub() as ps``: subscribe, then ``async for item in ps``.

    Items are ``Message`` objects and, after a loss, one ``Resubscribed``. The
    handle is *consuming* while the application iterates and *closed* after
    ``aclose()`` (or leaving the block, or the supervisor closing): the
    ``closed`` property tells which. While nobody iterates, nothing reads or
    re-subscribes, so the server never counts a subscriber that nobody reads.
    """

    def __init__(self, sup: Supervisor) -> None:
        self._sup = sup
        config = sup.config
        self._interval = config.health_check_interval
        self._timeout = config.health_check_timeout
        self._connect_timeout = config.socket_connect_timeout
        self._backoff = Backoff(
            config.backoff_base, config.backoff_cap, jitter=config.backoff_jitter
        )
        self.channels: set[str] = set()
        self.patterns: set[str] = set()
        self.shard_channels: set[str] = set()
        self._conn: AbstractConnection | None = None
        self._queue: deque[Message | Resubscribed] = deque()
        self._read_lock = anyio.Lock(fast_acquire=True)
        self._sent: deque[_Sent] = deque()
        """Subscribe commands sent on this connection and not yet answered, oldest
        first: a confirmation or an error reply (NOPERM) answers the oldest."""
        self._unsent: list[_Sent] = []
        """Subscribe calls whose command was never answered (no connection, or it was
        lost): the next resubscription, which sends every name, answers them."""
        self._closed = False
        self.caught_up_at = time.time()
        """The last moment the server is known to have held nothing for this handle
        that it had not sent (a PONG came back, or ``omem`` was sampled at 0): a message
        published before it was delivered, so a loss can only have dropped later ones.
        A lost connection's window opens here."""
        self._behind = 0
        """Bytes of messages read since ``caught_up_at``: how far behind it ran."""
        self._reported = False
        """The supervisor already reported this connection's loss (it left CLIENT LIST)."""
        self._run_id: str | None = None
        self.client_id: int | None = None
        self.output_buffer_seen = 0
        self._output_buffer_limit: str | None = None

    # -- lifecycle --------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the handle: unsubscribe (confirmed, when nobody is reading), drop the
        connection, end iteration."""
        self._closed = True
        self._sup._pubsubs.discard(self)
        if self._conn is not None and not self._read_lock.locked():
            with anyio.CancelScope(shield=True), anyio.move_on_after(self._timeout):
                with suppress(RedisError, OSError):
                    await self._unsubscribe_all(self._conn)
        await self._drop()
        for sent in self._unsent:
            sent.done.set()
        self._unsent.clear()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self.client_id = None
        self._unsent += self._sent  # unanswered: the resubscription answers them
        self._sent.clear()
        if conn is not None:
            with (
                anyio.CancelScope(shield=True),
                anyio.move_on_after(1),
                suppress(RedisError, OSError),
            ):
                await conn.disconnect(nowait=True)

    # -- subscriptions ----------------------------------------------------------------

    async def subscribe(self, *channels: str) -> None:
        """Subscribe, and return once the server has confirmed every channel."""
        await self._add("subscribe", self.channels, channels)

    async def psubscribe(self, *patterns: str) -> None:
        await self._add("psubscribe", self.patterns, patterns)

    async def ssubscribe(self, *channels: str) -> None:
        """Sharded channels (Redis 7+)."""
        await self._add("ssubscribe", self.shard_channels, channels)

    async def unsubscribe(self, *channels: str) -> None:
        await self._remove("UNSUBSCRIBE", self.channels, channels)

    async def punsubscribe(self, *patterns: str) -> None:
        await self._remove("PUNSUBSCRIBE", self.patterns, patterns)

    async def sunsubscribe(self, *channels: str) -> None:
        await self._remove("SUNSUBSCRIBE", self.shard_channels, channels)

    async def _add(self, kind: str, names: set[str], new: tuple[str, ...]) -> None:
        if self._closed:
            raise RuntimeError("this pub/sub handle is closed")
        if not new:
            raise ValueError(f"{kind} needs at least one name")
        names.update(new)
        sent = _Sent(kind, list(new))
        if self._conn is None:
            self._unsent.append(sent)
        else:
            try:
                await self._send(self._conn, sent)
            except (RedisError, OSError):
                await self._drop()  # the reader reconnects and subscribes everything
        with anyio.fail_after(self._sup.config.command_deadline):
            if not self._read_lock.locked():
                async with self._read_lock:
                    if self._conn is None:
                        await self._reconnect(marker=False)
                    while not sent.done.is_set() and not self._closed:
                        await self._pump()
            await sent.done.wait()
        if sent.error is not None:
            raise sent.error

    async def _send(self, conn: AbstractConnection, sent: _Sent) -> None:
        self._sent.append(sent)
        await conn.send_command(sent.kind.upper(), *sent.names, check_health=False)

    def _confirmed(self) -> None:
        if self._sent:
            sent = self._sent[0]
            sent.remaining -= 1
            if sent.remaining <= 0:
                self._sent.popleft()
                sent.done.set()

    def _refuse(self, exc: ResponseError) -> None:
        """The server refused the oldest unanswered subscribe command (an ACL user may
        not read those channels): an error for that call, nothing more. Its names leave
        the handle, so a reconnect does not ask again."""
        if not self._sent:
            return
        sent = self._sent.popleft()
        getattr(self, _KINDS[sent.kind]).difference_update(sent.names)
        sent.error = exc
        sent.done.set()

    async def _remove(self, command: str, names: set[str], gone: tuple[str, ...]) -> None:
        names.difference_update(gone)
        if self._conn is not None and gone:
            try:
                await self._conn.send_command(command, *gone, check_health=False)
            except (RedisError, OSError):
                await self._drop()

    async def _unsubscribe_all(self, conn: AbstractConnection) -> None:
        expected = 0
        for command, names in (
            ("UNSUBSCRIBE", self.channels),
            ("PUNSUBSCRIBE", self.patterns),
            ("SUNSUBSCRIBE", self.shard_channels),
        ):
            if names:
                expected += len(names)
                await conn.send_command(command, *sorted(names), check_health=False)
        while expected:
            reply = await conn.read_response(disconnect_on_error=False)
            if isinstance(reply, list) and replies.text(reply[0]).lower().endswith("unsubscribe"):
                expected -= 1

    # -- iteration --------------------------------------------------------------------

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Message | Resubscribed:
        async with self._read_lock:
            while not self._queue:
                if self._closed:
                    raise StopAsyncIteration
                await self._pump()
            return self._queue.popleft()

    async def _pump(self) -> None:
        """Read what comes next into the queue; recover from a loss. Holds the read lock."""
        if self._conn is None:
            await self._reconnect(marker=True)
            return
        try:
            await self._read_some()
        except ResponseError as exc:
            self._refuse(exc)
        except Exception as exc:
            if self._closed:
                # aclose() from another task dropped the connection, maybe in the middle
                # of redis-py's send (which then fails on its own state): not a loss
                return
            if not isinstance(exc, (RedisError, OSError, _Stalled)):
                raise
            await self._lost(exc)

    async def _read_some(self) -> None:
        conn = self._conn
        assert conn is not None
        reply = await conn.read_response(timeout=self._interval, disconnect_on_error=False)
        if reply is not None:
            self._handle(reply)
            return
        if self._conn is not conn:
            # dropped meanwhile (aclose from another task): redis-py's send would open it
            # again, and nobody would close that socket
            return
        sent_at = time.time()
        await conn.send_command("PING", check_health=False)
        with anyio.move_on_after(self._timeout):
            while True:
                reply = await conn.read_response(disconnect_on_error=False)
                if self._handle(reply) == "pong":
                    # the server queues the PONG after all it held for this handle
                    self.mark_caught_up(sent_at)
                    return
        raise _Stalled(f"no reply to PING within {self._timeout:g} s while subscribed")

    def _handle(self, reply: Any) -> str:
        """Queue a message or record an ack; return the reply's kind."""
        if not isinstance(reply, list) or not reply:
            # with nothing subscribed the connection is a plain one: PING gets +PONG
            return "pong" if replies.text(reply).upper() == "PONG" else "other"
        kind = replies.text(reply[0]).lower()
        if kind in ("message", "smessage"):
            self._queue.append(Message(kind, reply[1], reply[2]))
            self._behind += len(reply[2]) + len(reply[1]) + 32
        elif kind == "pmessage":
            self._queue.append(Message(kind, reply[2], reply[3], pattern=reply[1]))
            self._behind += len(reply[3]) + len(reply[2]) + len(reply[1]) + 32
        elif kind in _KINDS:
            self._confirmed()
        return kind

    def gone_from_server(self) -> Loss | None:
        """The server no longer lists this handle's connection: it closed it. The loss is
        reported now, while the server's counters still show why (the handle itself finds
        out only when it next reads, maybe much later)."""
        if self._reported or self._conn is None:
            return None
        self._reported = True
        return self._loss_of("the server closed the connection (it left CLIENT LIST)", False)

    def _loss_of(self, error: str, stalled: bool) -> Loss:
        return Loss(
            error,
            None,
            command_failed=True,
            output_buffer_seen=max(self.output_buffer_seen, self._behind) or None,
            output_buffer_limit=self._output_buffer_limit,
            stalled=stalled,
            client_class="pubsub",
        )

    def mark_caught_up(self, at: float) -> None:
        """Nothing the server held for this handle at ``at`` was left unsent."""
        if at > self.caught_up_at:
            self.caught_up_at = at
            self._behind = 0

    # -- loss and recovery -------------------------------------------------------------

    async def _lost(self, exc: BaseException) -> None:
        # messages published before caught_up_at were delivered; those after it may have
        # been in the server's output buffer when the connection went (the last message
        # read says nothing: it may have waited in the socket long before)
        self._down_at = self.caught_up_at
        self._loss = self._loss_of(describe(exc), isinstance(exc, _Stalled))
        await self._drop()
        if not self._reported:
            self._sup.connection_lost(self._loss)

    async def _reconnect(self, *, marker: bool) -> None:
        run_id_before = self._run_id
        while not self._closed:
            try:
                await self._sup.wait_for(ConnectionState.READY)
            except RuntimeError:
                await self.aclose()
                return
            try:
                await self._connect_and_subscribe()
                break
            except (RedisError, OSError, TimeoutError) as exc:
                await self._drop()
                if self._closed:
                    return  # aclose() while connecting: not a loss
                self._sup.connection_lost(Loss(describe(exc), None, command_failed=True))
                await anyio.sleep(self._backoff.next_delay())
        else:
            return
        self._backoff.reset()
        if marker and hasattr(self, "_loss"):
            self._queue.appendleft(self._resubscribed(run_id_before))

    async def _connect_and_subscribe(self) -> None:
        kwargs = {**self._sup._connection_kwargs, "protocol": 2}
        conn = self._sup._connection_class(**kwargs)
        self._conn = conn
        self.output_buffer_seen = 0
        try:
            await self._subscribe_on(conn)
        finally:
            if self._conn is not conn:
                # aclose() (or a loss) dropped it while it was connecting: the connect
                # may have finished after that, so close what it opened
                await drop(conn)

    async def _subscribe_on(self, conn: AbstractConnection) -> None:
        with anyio.fail_after(self._connect_timeout + self._timeout):
            await conn.connect()
            self.client_id = int(await _call(conn, "CLIENT", "ID"))
            try:
                self._run_id = replies.info(await _call(conn, "INFO", "server")).get("run_id")
            except ResponseError:
                self._run_id = None  # an ACL user without INFO: restarts are not told
            try:
                limits = await _call(conn, "CONFIG", "GET", "client-output-buffer-limit")
                self._output_buffer_limit = _pubsub_limit(replies.config_value(limits))
            except ResponseError:
                self._output_buffer_limit = None
            batch = [
                _Sent(kind, list(names))
                for kind, names in (
                    ("subscribe", self.channels),
                    ("psubscribe", self.patterns),
                    ("ssubscribe", self.shard_channels),
                )
                if names
            ]
            for sent in batch:
                await self._send(conn, sent)
            for sent in batch:
                while not sent.done.is_set():
                    try:
                        self._handle(await conn.read_response(disconnect_on_error=False))
                    except ResponseError as exc:
                        self._refuse(exc)
        refused = {sent.kind: sent.error for sent in batch if sent.error is not None}
        for waiting in self._unsent:
            waiting.error = refused.get(waiting.kind)
            waiting.done.set()
        self._unsent.clear()
        self._behind = 0
        self._reported = False
        self.caught_up_at = time.time()
        if not self._closed:
            self._sup._pubsubs.add(self)

    def _resubscribed(self, run_id_before: str | None) -> Resubscribed:
        loss = self._loss
        cause, detail = attribute(
            Evidence(
                error=loss.error,
                run_id_before=run_id_before,
                run_id_after=self._run_id,
                reachable=True,
                output_buffer_seen=loss.output_buffer_seen,
                output_buffer_limit=loss.output_buffer_limit,
                stalled=loss.stalled,
                client_class="pubsub",
            )
        )
        up_at = time.time()
        everything = sorted(self.channels | self.patterns | self.shard_channels)
        names = ", ".join(everything[:_NAMED])
        if len(everything) > _NAMED:
            names += f" and {len(everything) - _NAMED:,} more (the event lists them all)"
        detail = (
            f"{detail}. Re-subscribed to {names}; messages published between down_at and "
            f"up_at ({up_at - self._down_at:.2f} s) were not delivered: resync them"
        )
        return self._sup._publish(
            Resubscribed,
            cause=cause,
            detail=detail,
            channels=tuple(sorted(self.channels)),
            patterns=tuple(sorted(self.patterns)),
            shard_channels=tuple(sorted(self.shard_channels)),
            down_at=self._down_at,
            up_at=up_at,
        )


async def _call(conn: AbstractConnection, *args: Any) -> Any:
    await conn.send_command(*args, check_health=False)
    return await conn.read_response(disconnect_on_error=False)


def _pubsub_limit(limits: str) -> str | None:
    """The ``pubsub`` class of a ``client-output-buffer-limit`` value, if it limits anything."""
    parts = limits.split()
    for i in range(0, len(parts) - 3, 4):
        if parts[i] == "pubsub" and any(p != "0" for p in parts[i + 1 : i + 4]):
            hard, soft, seconds = parts[i + 1 : i + 4]
            return f"pubsub hard {hard} bytes, soft {soft} bytes for {seconds} s"
    return None
