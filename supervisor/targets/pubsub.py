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
from types import TracebackType
from typing import Any, Protocol, Self

import anyio
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError, ResponseError

from supervisor.config import SupervisorConfig
from supervisor.connection import replies
from supervisor.connection.backoff import Backoff
from supervisor.connection.losses import Loss, describe
from supervisor.connection.probe import drop
from supervisor.connection.quiet import EVERYTHING as quiet_everything
from supervisor.events import Resubscribed
from supervisor.state import ConnectionState
from supervisor.targets.gap import gap_detail, pubsub_limit
from supervisor.targets.subscriptions import KINDS, Message, Sent, Subscriptions

__all__ = ("Message", "Owner", "SupervisedPubSub")


class _Stalled(Exception):
    """The server did not answer a PING in time."""


class Owner(Protocol):
    """What a handle needs from the supervisor that made it: ``pubsub_connection()`` is a
    new RESP2 connection to the target as it is now; ``track()`` says whether the handle
    is subscribed on a live connection (its ``omem`` is then sampled)."""

    @property
    def config(self) -> SupervisorConfig: ...

    def connection_lost(self, loss: Loss) -> None: ...

    async def wait_for(self, state: ConnectionState, timeout: float | None = None) -> None: ...

    def pubsub_connection(self) -> AbstractConnection: ...

    def track(self, handle: SupervisedPubSub, subscribed: bool) -> None: ...

    def publish_resubscribed(self, **fields: Any) -> Resubscribed: ...


class SupervisedPubSub:
    """``async with sup.pubsub() as ps``: subscribe, then ``async for item in ps``.

    Items are ``Message`` objects and, after a loss, one ``Resubscribed``. The
    handle is *consuming* while the application iterates and *closed* after
    ``aclose()`` (or leaving the block, or the supervisor closing): the
    ``closed`` property tells which. While nobody iterates, nothing reads or
    re-subscribes, so the server never counts a subscriber that nobody reads.
    """

    def __init__(self, sup: Owner) -> None:
        self._sup = sup
        config = sup.config
        self._interval = config.health_check_interval
        self._timeout = config.health_check_timeout
        self._connect_timeout = config.socket_connect_timeout
        self._backoff = Backoff(
            config.backoff_base, config.backoff_cap, jitter=config.backoff_jitter
        )
        self._subs = subs = Subscriptions()
        self.channels, self.patterns = subs.channels, subs.patterns
        self.shard_channels = subs.shard_channels
        self._conn: AbstractConnection | None = None
        self._queue: deque[Message | Resubscribed] = deque()
        self._read_lock = anyio.Lock(fast_acquire=True)
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
        self._sup.track(self, False)
        if self._conn is not None and not self._read_lock.locked():
            with anyio.CancelScope(shield=True), anyio.move_on_after(self._timeout):
                with suppress(RedisError, OSError):
                    await self._unsubscribe_all(self._conn)
        await self._drop()
        self._subs.release()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self.client_id = None
        self._subs.connection_gone()
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
        await self._add("subscribe", channels)

    async def psubscribe(self, *patterns: str) -> None:
        await self._add("psubscribe", patterns)

    async def ssubscribe(self, *channels: str) -> None:
        """Sharded channels (Redis 7+)."""
        await self._add("ssubscribe", channels)

    async def unsubscribe(self, *channels: str) -> None:
        await self._remove("UNSUBSCRIBE", self.channels, channels)

    async def punsubscribe(self, *patterns: str) -> None:
        await self._remove("PUNSUBSCRIBE", self.patterns, patterns)

    async def sunsubscribe(self, *channels: str) -> None:
        await self._remove("SUNSUBSCRIBE", self.shard_channels, channels)

    async def _add(self, kind: str, new: tuple[str, ...]) -> None:
        if self._closed:
            raise RuntimeError("this pub/sub handle is closed")
        if not new:
            raise ValueError(f"{kind} needs at least one name")
        sent = self._subs.request(kind, new)
        if self._conn is None:
            self._subs.wait_for_connection(sent)
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

    async def _send(self, conn: AbstractConnection, sent: Sent) -> None:
        self._subs.sending(sent)
        await conn.send_command(sent.kind.upper(), *sent.names, check_health=False)

    async def _remove(self, command: str, names: set[str], gone: tuple[str, ...]) -> None:
        names.difference_update(gone)
        if self._conn is not None and gone:
            try:
                await self._conn.send_command(command, *gone, check_health=False)
            except (RedisError, OSError):
                await self._drop()

    async def _unsubscribe_all(self, conn: AbstractConnection) -> None:
        expected = 0
        for command, names in self._subs.unsubscribe_commands():
            expected += len(names)
            await conn.send_command(command, *names, check_health=False)
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
            self._subs.refuse(exc)
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
        elif kind in KINDS:
            self._subs.confirmed()
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
            quiet = quiet_everything.set(True)  # its attempts are not the app's errors
            try:
                await self._connect_and_subscribe()
                break
            except (RedisError, OSError, TimeoutError) as exc:
                await self._drop()
                if self._closed:
                    return  # aclose() while connecting: not a loss
                self._sup.connection_lost(Loss(describe(exc), None, command_failed=True))
                await anyio.sleep(self._backoff.next_delay())
            finally:
                quiet_everything.reset(quiet)
        else:
            return
        self._backoff.reset()
        if marker and hasattr(self, "_loss"):
            self._queue.appendleft(self._resubscribed(run_id_before))

    async def _connect_and_subscribe(self) -> None:
        conn = self._sup.pubsub_connection()
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
                self._output_buffer_limit = pubsub_limit(replies.config_value(limits))
            except ResponseError:
                self._output_buffer_limit = None
            batch = self._subs.resubscription()
            for sent in batch:
                await self._send(conn, sent)
            for sent in batch:
                while not sent.done.is_set():
                    try:
                        self._handle(await conn.read_response(disconnect_on_error=False))
                    except ResponseError as exc:
                        self._subs.refuse(exc)
        self._subs.resubscribed(batch)
        self._behind = 0
        self._reported = False
        self.caught_up_at = time.time()
        if not self._closed:
            self._sup.track(self, True)

    def _resubscribed(self, run_id_before: str | None) -> Resubscribed:
        subs, up_at = self._subs, time.time()
        cause, detail = gap_detail(
            self._loss, run_id_before, self._run_id, subs, self._down_at, up_at
        )
        return self._sup.publish_resubscribed(
            cause=cause,
            detail=detail,
            channels=tuple(sorted(subs.channels)),
            patterns=tuple(sorted(subs.patterns)),
            shard_channels=tuple(sorted(subs.shard_channels)),
            down_at=self._down_at,
            up_at=up_at,
        )


async def _call(conn: AbstractConnection, *args: Any) -> Any:
    await conn.send_command(*args, check_health=False)
    return await conn.read_response(disable_decoding=True, disconnect_on_error=False)
