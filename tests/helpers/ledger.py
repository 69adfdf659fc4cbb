"""What publishers sent and a pub/sub handle delivered, and the one check every pub/sub
fault test makes: each message published outside a reported window was delivered once,
and none was delivered twice."""

from __future__ import annotations

import fnmatch
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

from supervisor import Resubscribed
from tests.helpers.loops import bounded

__all__ = ("Ledger",)


@dataclass(frozen=True, slots=True)
class Sent:
    channel: str
    payload: str
    started: float
    acked: float


class Ledger:
    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.got: Counter[tuple[str, str]] = Counter()
        self.markers: list[Resubscribed] = []
        self._changed = anyio.Event()

    def _text(self, value: object) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    async def consume(self, handle: object) -> None:
        """Read the handle until it ends: a task of the test's task group."""
        async for item in handle:  # type: ignore[attr-defined]
            if isinstance(item, Resubscribed):
                self.markers.append(item)
            else:
                self.got[(self._text(item.channel), self._text(item.data))] += 1
            self._changed.set()
            self._changed = anyio.Event()

    async def publish(
        self, send: Callable[[str, str], Awaitable[object]], channel: str, payload: str
    ) -> None:
        """Publish once through ``send(channel, payload)``, recording when it was sent
        and acknowledged; an error means it was not published (a fault)."""
        started = time.time()
        try:
            await send(channel, payload)
        except Exception:
            return
        self.sent.append(Sent(channel, payload, started, time.time()))

    async def delivered(self, channel: str, payload: str, what: str, bound: float = 20) -> None:
        with anyio.move_on_after(bound):
            for _ in bounded(what, seconds=bound + 1):
                if self.got[(channel, payload)]:
                    return
                await self._changed.wait()
        raise AssertionError(f"waited {bound:g} s for {what}; markers: {self.markers}")

    async def marker(
        self, match: Callable[[Resubscribed], bool], what: str, bound: float = 20
    ) -> Resubscribed:
        with anyio.move_on_after(bound):
            for _ in bounded(what, seconds=bound + 1):
                for m in self.markers:
                    if match(m):
                        return m
                await self._changed.wait()
        raise AssertionError(f"waited {bound:g} s for {what}; markers: {self.markers}")

    def _excused(self, sent: Sent) -> bool:
        for m in self.markers:
            covers = (
                sent.channel in m.channels
                or sent.channel in m.shard_channels
                or any(fnmatch.fnmatchcase(sent.channel, p) for p in m.patterns)
            )
            if covers and sent.started <= m.up_at and sent.acked >= m.down_at:
                return True
        return False

    def _settled(self) -> bool:
        return all(self.got[(s.channel, s.payload)] or self._excused(s) for s in self.sent)

    async def drained(self, bound: float = 10) -> None:
        """Wait until every message sent is delivered or inside a window (a message
        published on one node reaches the others over the cluster bus, later)."""
        with anyio.move_on_after(bound):
            for _ in bounded("draining the ledger", seconds=bound + 1):
                if self._settled():
                    return
                await self._changed.wait()

    def check(self) -> dict[str, int]:
        """Fail on a duplicate or on a message missed outside every window; return the
        counts (published, delivered, missed inside a window)."""
        twice = {k: n for k, n in self.got.items() if n > 1}
        assert not twice, (
            f"{len(twice)} delivered more than once: {sorted(twice)[:10]}; markers: {self.markers}"
        )
        missed = [s for s in self.sent if not self.got[(s.channel, s.payload)]]
        unexcused = [s for s in missed if not self._excused(s)]
        assert not unexcused, (
            f"{len(unexcused)} of {len(self.sent)} messages missed outside every window, "
            f"e.g. {unexcused[:5]}; markers: {self.markers}"
        )
        return {
            "published": len(self.sent),
            "delivered": len(self.sent) - len(missed),
            "missed_in_window": len(missed),
        }
