"""One pub/sub connection to one cluster node, carrying the names routed to that node.

A link sends the subscribe commands the handle gives it and reads what comes back:
messages, the server's confirmations, its refusals (``MOVED`` for a shard channel
whose slot is elsewhere) and the unsubscribes nobody asked for (the server's way of
saying a shard channel's slot changed owner). It tells its ``Listener`` each of those;
where the names go next is the handle's business, never the link's.

The link PINGs every ``interval`` even while messages flow: the PONG comes after
everything the node held for it, so ``caught_up_at`` stays recent, and a gap that
opens later starts there.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Protocol

import anyio
from redis.asyncio.connection import AbstractConnection
from redis.crc import key_slot
from redis.exceptions import ResponseError

from supervisor.connection import replies
from supervisor.connection.probe import drop

__all__ = ("Call", "Link", "Listener", "Stalled")

SUBSCRIBE_KINDS = ("subscribe", "psubscribe", "ssubscribe")
_UNSUBSCRIBE = {
    "subscribe": "unsubscribe",
    "psubscribe": "punsubscribe",
    "ssubscribe": "sunsubscribe",
}
_SUBSCRIBE = {v: k for k, v in _UNSUBSCRIBE.items()}


class Stalled(Exception):
    """The node did not answer a PING in time."""


class Call:
    """One application call (``ssubscribe(...)``): done once each confirmation it
    expects came, from whichever node each name ended up on, or when the server
    refused it. ``seal()`` says every name was routed (or parked)."""

    __slots__ = ("done", "error", "remaining", "sealed")

    def __init__(self) -> None:
        self.remaining = 0
        self.sealed = False
        self.done = anyio.Event()
        self.error: ResponseError | None = None

    def expect(self, count: int) -> None:
        self.remaining += count

    def seal(self) -> None:
        self.sealed = True
        self.confirmed(0)

    def confirmed(self, count: int = 1) -> None:
        self.remaining -= count
        if self.sealed and self.remaining <= 0:
            self.done.set()

    def refused(self, exc: ResponseError) -> None:
        self.error = exc
        self.done.set()


class _Command:
    __slots__ = ("call", "kind", "names", "remaining")

    def __init__(self, kind: str, names: list[str], call: Call | None) -> None:
        self.kind = kind
        self.names = names
        self.remaining = set(names)
        self.call = call


class Listener(Protocol):
    """What a link tells its handle."""

    def message(self, item: Any) -> None: ...

    async def room(self) -> None:
        """Return once the handle has room for another message (it holds a bounded number)."""
        ...

    def confirmed(self, link: Link, kind: str, name: str) -> None: ...

    def refused(
        self, link: Link, kind: str, names: list[str], call: Call | None, exc: ResponseError
    ) -> None: ...

    def dropped(self, link: Link, kind: str, name: str) -> None:
        """The node unsubscribed ``name`` on its own (its slot moved away)."""
        ...


class Link:
    """``run()`` connects, subscribes what was routed here, and reads until the
    connection is lost (it raises then); ``send()`` adds names at any time."""

    def __init__(
        self,
        address: str,
        connection: AbstractConnection,
        listener: Listener,
        *,
        interval: float,
        timeout: float,
        connect_timeout: float,
    ) -> None:
        self.address = address
        self._conn = connection
        self._listener = listener
        self._interval = interval
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self.wanted: dict[str, set[str]] = {kind: set() for kind in SUBSCRIBE_KINDS}
        self.confirmed: dict[str, set[str]] = {kind: set() for kind in SUBSCRIBE_KINDS}
        self._inflight: deque[_Command] = deque()
        self._leaving: dict[str, set[str]] = {kind: set() for kind in SUBSCRIBE_KINDS}
        """Names this link unsubscribed itself: their unsubscribe reply is expected."""
        self._waiting: list[tuple[str, list[str], Call | None]] = []
        """Sent once the connection is up."""
        self.up = False
        self.closed = False
        self.caught_up_at = time.time()
        """The last moment the node is known to have held nothing unsent for this link."""
        self._ping_sent_at: float | None = None
        """When the PING not yet answered was sent (wall clock, for ``caught_up_at``)."""
        self._pong_due = 0.0
        self._last_ping = 0.0

    def __repr__(self) -> str:
        return f"<Link {self.address} up={self.up}>"

    @property
    def empty(self) -> bool:
        return not any(self.wanted.values())

    def snapshot(self) -> dict[str, dict[str, frozenset[str]]]:
        return {
            "wanted": {k: frozenset(v) for k, v in self.wanted.items() if v},
            "confirmed": {k: frozenset(v) for k, v in self.confirmed.items() if v},
        }

    # -- what the handle asks -------------------------------------------------------------

    async def send(self, kind: str, names: list[str], call: Call | None) -> None:
        """Subscribe ``names`` here (sent at once when connected, else on connect)."""
        self.wanted[kind].update(names)
        for name in names:
            self._leaving[kind].discard(name)
        if not self.up:
            self._waiting.append((kind, names, call))
            return
        await self._send(kind, names, call)

    async def remove(self, kind: str, names: list[str]) -> None:
        """Unsubscribe ``names`` here; their replies are expected, not a move."""
        names = [n for n in names if n in self.wanted[kind]]
        self.wanted[kind].difference_update(names)
        if not names:
            return
        self._leaving[kind].update(names)
        self.confirmed[kind].difference_update(names)
        if not self.up:
            return
        command = _UNSUBSCRIBE[kind]
        groups: dict[int, list[str]] = {}
        for name in names:
            # shard channels of one command must share a slot (else CROSSSLOT)
            groups.setdefault(key_slot(name.encode()) if kind == "ssubscribe" else 0, []).append(
                name
            )
        for group in groups.values():
            self._inflight.append(_Command(command, group, None))
            await self._conn.send_command(command.upper(), *group, check_health=False)

    async def _send(self, kind: str, names: list[str], call: Call | None) -> None:
        self._inflight.append(_Command(kind, names, call))
        await self._conn.send_command(kind.upper(), *names, check_health=False)

    async def close(self) -> None:
        self.closed = True
        self.up = False
        await drop(self._conn)

    def release(self) -> list[tuple[str, list[str], Call | None]]:
        """What was routed here and is not confirmed: the handle routes it again."""
        out = [
            (c.kind, sorted(c.remaining), c.call)
            for c in self._inflight
            if c.remaining and c.kind in SUBSCRIBE_KINDS
        ]
        out += self._waiting
        self._inflight.clear()
        self._waiting = []
        return out

    # -- the connection's life --------------------------------------------------------------

    async def run(self) -> None:
        """Connect, subscribe, then read until the connection is lost (raises)."""
        conn = self._conn
        with anyio.fail_after(self._connect_timeout + self._timeout):
            await conn.connect()
            waiting, self._waiting = self._waiting, []
            self.up = True
            for kind, names, call in waiting:
                await self._send(kind, names, call)
        self.caught_up_at = time.time()
        self._last_ping = time.monotonic()
        while not self.closed:
            await self._read_some()

    async def _read_some(self) -> None:
        now = time.monotonic()
        if self._ping_sent_at is None and now - self._last_ping >= self._interval:
            self._ping_sent_at, self._last_ping = time.time(), now
            self._pong_due = now + self._timeout
            await self._conn.send_command("PING", check_health=False)
        if self._ping_sent_at is not None:
            wait = self._pong_due - now
            if wait <= 0:
                raise Stalled(f"no reply to PING within {self._timeout:g} s while subscribed")
        else:
            wait = self._interval - (now - self._last_ping)
        try:
            reply = await self._conn.read_response(
                timeout=max(wait, 0.001), disconnect_on_error=False
            )
        except ResponseError as exc:
            self._answered_by_error(exc)
            return
        if reply is not None:
            self._handle(reply)
            blocked = time.monotonic()
            await self._listener.room()
            # the application did not read: the node was not the one late
            self._pong_due += time.monotonic() - blocked

    def _handle(self, reply: Any) -> None:
        if not isinstance(reply, list) or not reply:
            # with nothing subscribed the connection is a plain one: PING gets +PONG
            kind = replies.text(reply).lower() if reply is not None else ""
        else:
            kind = replies.text(reply[0]).lower()
        if kind in ("message", "smessage", "pmessage"):
            self._listener.message(reply)
        elif kind == "pong":
            if self._ping_sent_at is not None and self._ping_sent_at > self.caught_up_at:
                self.caught_up_at = self._ping_sent_at
            self._ping_sent_at = None
        elif kind in SUBSCRIBE_KINDS:
            self._subscribed(kind, replies.text(reply[1]))
        elif kind in _SUBSCRIBE:
            self._unsubscribed(_SUBSCRIBE[kind], replies.text(reply[1]))

    def _answered(self, kind: str, name: str) -> None:
        """One name of the oldest command of ``kind`` that holds it was answered."""
        for command in self._inflight:
            if command.kind == kind and name in command.remaining:
                command.remaining.discard(name)
                if not command.remaining:
                    self._inflight.remove(command)
                if command.call is not None:
                    command.call.confirmed()
                return

    def _subscribed(self, kind: str, name: str) -> None:
        self._answered(kind, name)
        if name in self.wanted[kind]:
            self.confirmed[kind].add(name)
            self._listener.confirmed(self, kind, name)

    def _unsubscribed(self, kind: str, name: str) -> None:
        if name in self._leaving[kind]:
            self._leaving[kind].discard(name)
            self._answered(_UNSUBSCRIBE[kind], name)
            return
        self.confirmed[kind].discard(name)
        if name in self.wanted[kind]:
            self.wanted[kind].discard(name)
            self._listener.dropped(self, kind, name)

    def _answered_by_error(self, exc: ResponseError) -> None:
        """An error reply answers the oldest command as a whole."""
        if not self._inflight:
            return
        command = self._inflight.popleft()
        if command.kind in _SUBSCRIBE:
            # an unsubscribe refused (its slot moved): nothing of it is held here
            self._leaving[_SUBSCRIBE[command.kind]].difference_update(command.names)
            return
        names = sorted(command.remaining)
        self.wanted[command.kind].difference_update(names)
        self._listener.refused(self, command.kind, names, command.call, exc)
