"""Following a Redis Sentinel service: where the master is, and when it moves.

Sentinel does the failover; we only listen and ask. ``discover()`` asks the
sentinels in turn for the master (or a healthy replica). ``watch()`` keeps
one subscription on *every* sentinel, because only the sentinel that leads
a failover announces its start (``+try-failover``), and the others learn of
the new master only through hello messages, up to seconds later.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import anyio
from redis.asyncio.connection import Connection, SSLConnection
from redis.exceptions import RedisError, ResponseError

from supervisor.causes import Cause
from supervisor.connection import replies
from supervisor.connection.backoff import Backoff
from supervisor.connection.losses import describe
from supervisor.connection.probe import ProbeFailed

__all__ = ("Address", "SentinelNotice", "SentinelWatcher", "parse_address")

Address = tuple[str, int]


def parse_address(text: str) -> Address:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"{text!r} is not host:port")
    return host, int(port)


@dataclass(frozen=True, slots=True)
class SentinelNotice:
    """One message from a sentinel about our service.

    ``kind`` is ``failover-started``, ``failover-aborted``, ``switch-master``,
    ``sentinels-lost`` (no sentinel answers) or ``sentinels-back``.
    """

    kind: str
    detail: str
    new_master: Address | None = None


_STARTS = ("+try-failover",)
_ABORTS = (
    "-failover-abort-not-elected",
    "-failover-abort-no-good-slave",
    "-failover-abort-slave-timeout",
    "-failover-abort-master-timeout",
)


class SentinelWatcher:
    def __init__(
        self,
        addresses: list[Address],
        service: str,
        *,
        role: str,
        timeout: float,
        connect_timeout: float,
        backoff_base: float,
        backoff_cap: float,
        username: str | None = None,
        password: str | None = None,
        tls: dict[str, Any] | None = None,
    ) -> None:
        """``tls``: the ``ssl_*`` options of TLS connections to the sentinels; None for
        plain TCP."""
        self.addresses = addresses
        self._username = username
        self._password = password
        self._tls = tls
        self.service = service
        self.role = role
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._backoff = (backoff_base, backoff_cap)
        self._reachable: set[Address] = set(addresses)
        self.watching = 0
        """Sentinels whose announcements this watcher currently receives."""

    async def discover(self) -> Address:
        """The current master (or a healthy replica), as told by the sentinel with the
        newest configuration: during a failover, sentinels that have not heard of it
        yet still name the old master, with an older ``config-epoch``."""
        answers: list[tuple[int, Address]] = []
        errors: list[str] = []

        async def ask(address: Address) -> None:
            try:
                answers.append(await self._ask(address))
            except (RedisError, OSError, TimeoutError, LookupError) as exc:
                errors.append(f"{address[0]}:{address[1]}: {describe(exc)}")

        async with anyio.create_task_group() as tg:
            for address in self.addresses:
                tg.start_soon(ask, address)
        if not answers:
            raise ProbeFailed(Cause.NETWORK, "no sentinel answered: " + "; ".join(sorted(errors)))
        return max(answers)[1]

    async def _ask(self, address: Address) -> tuple[int, Address]:
        conn = self._connection(address)
        try:
            with anyio.fail_after(self._connect_timeout + self._timeout):
                await conn.connect()
                await conn.send_command("SENTINEL", "MASTER", self.service)
                try:
                    master = replies.pairs(await conn.read_response())
                except ResponseError as exc:
                    if "no such master" not in str(exc).lower():
                        raise  # NOAUTH, NOPERM...: say what the sentinel said
                    raise LookupError(f"sentinel does not know service {self.service!r}") from exc
                epoch = int(master.get("config-epoch", "0"))
                if self.role == "master":
                    return epoch, (master["ip"], int(master["port"]))
                await conn.send_command("SENTINEL", "REPLICAS", self.service)
                replicas = [replies.pairs(r) for r in await conn.read_response()]
                healthy = [
                    (r["ip"], int(r["port"]))
                    for r in replicas
                    if not {"s_down", "o_down", "disconnected"} & set(r.get("flags", "").split(","))
                    and r.get("master-link-status") == "ok"
                ]
                if not healthy:
                    raise LookupError(f"no healthy replica of {self.service!r}")
                return epoch, random.choice(healthy)
        finally:
            with anyio.CancelScope(shield=True), suppress(RedisError, OSError):
                await conn.disconnect(nowait=True)

    async def watch(self, notify: Callable[[SentinelNotice], Awaitable[None]]) -> None:
        """Listen to every sentinel until cancelled; call ``notify`` for what matters."""
        async with anyio.create_task_group() as tg:
            for address in self.addresses:
                tg.start_soon(self._listen, address, notify)

    async def _listen(
        self, address: Address, notify: Callable[[SentinelNotice], Awaitable[None]]
    ) -> None:
        backoff = Backoff(*self._backoff)
        while True:
            conn = self._connection(address)
            counted = False
            try:
                with anyio.fail_after(self._connect_timeout + self._timeout):
                    await conn.connect()
                    await conn.send_command("PSUBSCRIBE", "*")
                    await conn.read_response()
                backoff.reset()
                self.watching += 1
                counted = True
                await self._reachable_again(address, notify)
                while True:
                    reply = await conn.read_response(timeout=1.0, disconnect_on_error=False)
                    if reply is None:
                        await conn.send_command("PING")
                        with anyio.fail_after(self._timeout):
                            # announcements that arrive before the PONG count as well
                            while replies.text((reply := await conn.read_response())[0]) != "pong":
                                notice = self._notice(reply)
                                if notice is not None:
                                    await notify(notice)
                        continue
                    notice = self._notice(reply)
                    if notice is not None:
                        await notify(notice)
            except (RedisError, OSError, TimeoutError) as exc:
                await self._unreachable(address, describe(exc), notify)
            finally:
                if counted:
                    self.watching -= 1
                with anyio.CancelScope(shield=True), suppress(RedisError, OSError):
                    await conn.disconnect(nowait=True)
            await anyio.sleep(backoff.next_delay())

    def _connection(self, address: Address) -> Connection:
        kwargs: dict[str, Any] = dict(
            host=address[0],
            port=address[1],
            protocol=2,
            socket_connect_timeout=self._connect_timeout,
            socket_timeout=self._timeout,
            username=self._username,
            password=self._password,
        )
        if self._tls is not None:
            return SSLConnection(**kwargs, **self._tls)
        return Connection(**kwargs)

    async def _unreachable(
        self, address: Address, error: str, notify: Callable[[SentinelNotice], Awaitable[None]]
    ) -> None:
        if address in self._reachable:
            self._reachable.discard(address)
            if not self._reachable:
                await notify(
                    SentinelNotice(
                        "sentinels-lost",
                        f"no sentinel answers (last: {address[0]}:{address[1]}: {error})",
                    )
                )

    async def _reachable_again(
        self, address: Address, notify: Callable[[SentinelNotice], Awaitable[None]]
    ) -> None:
        if address not in self._reachable:
            was_empty = not self._reachable
            self._reachable.add(address)
            if was_empty:
                await notify(
                    SentinelNotice(
                        "sentinels-back", f"sentinel {address[0]}:{address[1]} answers again"
                    )
                )

    def _notice(self, reply: Any) -> SentinelNotice | None:
        if not isinstance(reply, list) or len(reply) != 4 or replies.text(reply[0]) != "pmessage":
            return None
        channel, data = replies.text(reply[2]), replies.text(reply[3])
        words = data.split()
        if channel == "+switch-master" and len(words) == 5 and words[0] == self.service:
            return SentinelNotice(
                "switch-master", f"+switch-master {data}", (words[3], int(words[4]))
            )
        if len(words) >= 2 and words[0] == "master" and words[1] == self.service:
            if channel in _STARTS:
                return SentinelNotice("failover-started", f"{channel} {data}")
            if channel in _ABORTS:
                return SentinelNotice("failover-aborted", f"{channel} {data}")
        return None
