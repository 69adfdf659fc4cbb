"""Pub/sub on a Redis Cluster that follows slot moves, failovers and nodes that leave.

The handle holds what the application subscribed to and what it has not read yet;
its ``Router`` decides which node carries each name and follows them as the cluster
changes. A name that lost delivery is reported by a ``Resubscribed`` marker with its
window, before any message that follows it (``cluster_gaps``).
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Self

import anyio

from supervisor.events import Resubscribed
from supervisor.targets.cluster_gaps import Closed, Gaps, cause_of
from supervisor.targets.cluster_inbox import Inbox
from supervisor.targets.cluster_link import SUBSCRIBE_KINDS, Call
from supervisor.targets.cluster_router import Router
from supervisor.targets.cluster_routes import ClusterRoutes
from supervisor.targets.subscriptions import Message

__all__ = ("ClusterPubSub",)


class ClusterPubSub:
    """``async with sup.pubsub() as ps``: subscribe, then ``async for item in ps``.

    The same API as the single target's handle. Items are ``Message`` objects and,
    after a gap, ``Resubscribed`` markers naming the channels that had it. The links
    read in the supervisor's task group, up to ``cluster_inbox.BUFFER`` messages ahead
    of the application.
    """

    def __init__(self, sup: ClusterRoutes) -> None:
        self._sup = sup
        self._deadline = sup.config.command_deadline
        self.channels: set[str] = set()
        self.patterns: set[str] = set()
        self.shard_channels: set[str] = set()
        self._gaps = Gaps()
        self._inbox = Inbox()
        self._router = Router(sup, self._names, self._gaps, self._inbox, self._emit)
        self._started = anyio.Event()
        self._scope: anyio.CancelScope | None = None
        self._closed = False
        sup.start(self)

    # -- lifecycle ---------------------------------------------------------------------

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
        """Close the handle: its links close (the server drops their subscriptions)."""
        self._closed = True
        if self._scope is not None:
            self._scope.cancel()
        await self._router.close()

    async def run(self) -> None:
        """The handle's tasks, in the supervisor's task group: the router and one
        reader per link. Cancelled by ``aclose()`` or by the supervisor closing."""
        try:
            with anyio.CancelScope() as self._scope:
                if self._closed:
                    return
                async with anyio.create_task_group() as tg:
                    self._router.tg = tg
                    self._started.set()
                    await self._router.run()
        finally:
            self._closed = True
            self._router.tg = None
            self._started.set()
            self._inbox.close()
            with anyio.CancelScope(shield=True):
                await self._router.close()

    # -- subscriptions -----------------------------------------------------------------

    async def subscribe(self, *channels: str) -> None:
        """Subscribe, and return once the server has confirmed every channel."""
        await self._add("subscribe", channels)

    async def psubscribe(self, *patterns: str) -> None:
        await self._add("psubscribe", patterns)

    async def ssubscribe(self, *channels: str) -> None:
        """Sharded channels: each on the primary that owns its slot, followed when it moves."""
        await self._add("ssubscribe", channels)

    async def unsubscribe(self, *channels: str) -> None:
        await self._remove("subscribe", channels)

    async def punsubscribe(self, *patterns: str) -> None:
        await self._remove("psubscribe", patterns)

    async def sunsubscribe(self, *channels: str) -> None:
        await self._remove("ssubscribe", channels)

    def subscriptions(self) -> dict[str, dict[str, dict[str, frozenset[str]]]]:
        """Per node: the names routed there (``wanted``) and those the node confirmed
        (``confirmed``), by kind. They differ while a subscription is on its way."""
        return self._router.subscriptions()

    @property
    def in_sync(self) -> bool:
        """Every wanted name is confirmed on the node that must carry it."""
        return self._router.in_sync

    def after_round(self, topology_changed: bool) -> None:
        self._router.after_round(topology_changed)

    def _names(self, kind: str) -> set[str]:
        return {"subscribe": self.channels, "psubscribe": self.patterns}.get(
            kind, self.shard_channels
        )

    async def _add(self, kind: str, names: tuple[str, ...]) -> None:
        if self._closed:
            raise RuntimeError("this pub/sub handle is closed")
        if not names:
            raise ValueError(f"{kind} needs at least one name")
        new = list(dict.fromkeys(names))
        self._names(kind).update(new)
        call = Call()
        with anyio.fail_after(self._deadline):
            await self._started.wait()
            await self._router.route(kind, new, call)
            call.seal()
            await call.done.wait()
        if call.error is not None:
            raise call.error
        if self._closed:
            raise RuntimeError("this pub/sub handle closed before the server confirmed")

    async def _remove(self, kind: str, names: tuple[str, ...]) -> None:
        gone = [n for n in names if n in self._names(kind)] if names else sorted(self._names(kind))
        self._names(kind).difference_update(gone)
        self._gaps.forget([(kind, n) for n in gone])
        await self._router.remove(kind, gone)

    # -- iteration ---------------------------------------------------------------------

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Message | Resubscribed:
        return await self._inbox.next()

    def _emit(self, closed: list[Closed]) -> None:
        for done in closed:
            self._inbox.marker(self._marker(done))

    def _marker(self, done: Closed) -> Resubscribed:
        gap, up_at = done.gap, time.time()
        cause, why = cause_of(gap, self._sup.node(gap.address), done.address)
        by_kind: dict[str, list[str]] = {kind: [] for kind in SUBSCRIBE_KINDS}
        for kind, name in dict.fromkeys(done.names):
            by_kind[kind].append(name)
        return self._sup.publish_resubscribed(
            cause=cause,
            detail=(
                f"{why}; {len(done.names):,} name(s) now on {done.address}; messages "
                f"published between down_at and up_at ({up_at - gap.down_at:.2f} s) may "
                "not have been delivered: resync them"
            ),
            channels=tuple(sorted(by_kind["subscribe"])),
            patterns=tuple(sorted(by_kind["psubscribe"])),
            shard_channels=tuple(sorted(by_kind["ssubscribe"])),
            down_at=gap.down_at,
            up_at=up_at,
            node=done.address,
        )
