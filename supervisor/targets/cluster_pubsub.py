"""Pub/sub on a Redis Cluster that follows slot moves, failovers and nodes that leave.

The handle routes each name to the node that must carry it: a shard channel to the
primary that owns its slot, a classic channel or pattern to one node (the cluster
broadcasts ``PUBLISH``), a keyspace or keyevent name to every primary (notifications
stay on the node where the key lives). Each node gets one ``Link``. What the server
says is acted on at once: an unsubscribe nobody asked for means the slot moved, and
subscribing again on the same node answers ``MOVED`` with the new owner; a lost link's
names go where the topology now says; each health round's topology is reconciled
with where every name is. A name that lost delivery is reported by a
``Resubscribed`` marker with its window before any message that follows it.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Iterable
from contextlib import suppress
from types import TracebackType
from typing import Any, Protocol, Self

import anyio
from anyio.abc import TaskGroup
from redis.asyncio.connection import AbstractConnection
from redis.crc import key_slot
from redis.exceptions import AskError, ClusterDownError, ResponseError, TryAgainError

from supervisor.causes import Cause, Evidence, attribute
from supervisor.config import SupervisorConfig
from supervisor.connection import replies
from supervisor.connection.backoff import Backoff
from supervisor.connection.losses import describe
from supervisor.connection.probe import drop
from supervisor.events import Resubscribed
from supervisor.targets.cluster_gaps import Closed, Gap, Gaps
from supervisor.targets.cluster_link import SUBSCRIBE_KINDS, Call, Link
from supervisor.targets.cluster_topology import ClusterNodeState
from supervisor.targets.subscriptions import Message

__all__ = ("ClusterOwner", "ClusterPubSub", "node_local")

BUFFER = 10_000
"""Messages a handle holds for the application; its links stop reading beyond it, so
the nodes hold the rest (and their output buffer limits apply, with a window)."""

_NODE_LOCAL = ("__keyspace@", "__keyevent@")


def node_local(name: str) -> bool:
    """Keyspace and keyevent notifications are published only on the node of the key."""
    return name.startswith(_NODE_LOCAL)


class ClusterOwner(Protocol):
    """What a handle needs from its ``ClusterSupervisor``."""

    @property
    def config(self) -> SupervisorConfig: ...

    def owner_of(self, slot: int) -> str | None: ...

    def primaries(self) -> list[str]: ...

    def node(self, address: str) -> ClusterNodeState | None: ...

    def node_connection(self, address: str) -> AbstractConnection: ...

    def start(self, handle: ClusterPubSub) -> None: ...

    def wake_round(self) -> None: ...

    def publish_resubscribed(self, **fields: Any) -> Resubscribed: ...


class ClusterPubSub:
    """``async with sup.pubsub() as ps``: subscribe, then ``async for item in ps``.

    The same API as the single target's handle. Items are ``Message`` objects and,
    after a gap, ``Resubscribed`` markers naming the channels that had it. The links
    read in the supervisor's task group, up to ``BUFFER`` messages ahead of the
    application.
    """

    def __init__(self, sup: ClusterOwner) -> None:
        self._sup = sup
        config = sup.config
        self._interval = config.health_check_interval
        self._timeout = config.health_check_timeout
        self._connect_timeout = config.socket_connect_timeout
        self._deadline = config.command_deadline
        self._backoff = Backoff(
            config.backoff_base, config.backoff_cap, jitter=config.backoff_jitter
        )
        self.channels: set[str] = set()
        self.patterns: set[str] = set()
        self.shard_channels: set[str] = set()
        self._links: dict[str, Link] = {}
        self._broadcast: str | None = None
        self._parked: list[tuple[str, list[str], Call | None]] = []
        self._retry_at: dict[str, float] = {}
        self._moved: dict[int, str] = {}
        self._asking: dict[str, tuple[Gap, set[int]]] = {}
        self._gaps = Gaps()
        self._items: deque[Message | Resubscribed] = deque()
        self._messages = 0
        self._arrived = anyio.Event()
        self._room = anyio.Event()
        self._wake = anyio.Event()
        self._started = anyio.Event()
        self._tg: TaskGroup | None = None
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
        await self._close_links()

    async def run(self) -> None:
        """The handle's tasks, in the supervisor's task group: the router and one
        reader per link. Cancelled by ``aclose()`` or by the supervisor closing."""
        try:
            with anyio.CancelScope() as self._scope:
                if self._closed:
                    return
                async with anyio.create_task_group() as tg:
                    self._tg = tg
                    self._started.set()
                    await self._route_forever()
        finally:
            self._closed = True
            self._tg = None
            self._started.set()
            self._arrived.set()
            self._room.set()
            for _, _, call in self._parked:
                if call is not None:
                    call.done.set()
            with anyio.CancelScope(shield=True):
                await self._close_links()

    async def _close_links(self) -> None:
        links, self._links = list(self._links.values()), {}
        for link in links:
            for _, _, call in link.release():
                if call is not None:
                    call.done.set()
            with anyio.move_on_after(1), suppress(Exception):
                await link.close()

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
        return {
            address: {
                "wanted": {k: frozenset(v) for k, v in link.wanted.items() if v},
                "confirmed": {k: frozenset(v) for k, v in link.confirmed.items() if v},
            }
            for address, link in self._links.items()
        }

    @property
    def in_sync(self) -> bool:
        """Every wanted name is confirmed on the node that must carry it."""
        if self._parked:
            return False
        return all(link.up and link.wanted == link.confirmed for link in self._links.values())

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
            await self._route(kind, new, call)
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
        self._parked = [
            (k, [n for n in ns if n not in gone], c) if k == kind else (k, ns, c)
            for k, ns, c in self._parked
        ]
        for link in list(self._links.values()):
            with suppress(Exception):
                await link.remove(kind, gone)
            if link.empty and link.address != self._broadcast:
                await self._retire(link)

    # -- routing -----------------------------------------------------------------------

    def _destinations(self, kind: str, names: list[str]) -> dict[str, list[str]] | None:
        """Where ``names`` go now, by node; None while some have nowhere to go."""
        out: dict[str, list[str]] = {}
        if kind == "ssubscribe":
            for name in names:
                slot = key_slot(name.encode())
                owner = self._moved.get(slot) or self._sup.owner_of(slot)
                if owner is None:
                    return None
                out.setdefault(owner, []).append(name)
            return out
        local = [n for n in names if node_local(n)]
        broadcast = [n for n in names if not node_local(n)]
        if local:
            primaries = self._sup.primaries()
            if not primaries:
                return None
            for address in primaries:
                link = self._links.get(address)
                lacking = [n for n in local if link is None or n not in link.wanted[kind]]
                if lacking:
                    out.setdefault(address, []).extend(lacking)
        if broadcast:
            node = self._broadcast_node()
            if node is None:
                return None
            out.setdefault(node, []).extend(broadcast)
        return out

    def _broadcast_node(self) -> str | None:
        if self._broadcast is not None and self._usable(self._broadcast):
            return self._broadcast
        candidates = [a for a in self._sup.primaries() if self._usable(a)]
        self._broadcast = random.choice(candidates) if candidates else None
        return self._broadcast

    def _usable(self, address: str) -> bool:
        state = self._sup.node(address)
        return (state is None or state.up) and self._retry_at.get(address, 0) <= time.monotonic()

    async def _route(
        self, kind: str, names: list[str], call: Call | None, counted: bool = False
    ) -> None:
        destinations = self._destinations(kind, names)
        if destinations is None or any(
            self._retry_at.get(a, 0) > time.monotonic() for a in destinations
        ):
            if call is not None and not counted:
                call.expect(len(names))
            self._parked.append((kind, names, call))
            return
        for address, group in destinations.items():
            if call is not None and not counted:
                call.expect(len(group))
            link = self._link(address)
            self._gaps.routed([(kind, n) for n in group], address)
            if kind == "ssubscribe":
                by_slot: dict[int, list[str]] = {}
                for name in group:
                    by_slot.setdefault(key_slot(name.encode()), []).append(name)
                batches: Iterable[list[str]] = by_slot.values()
            else:
                batches = [group]
            try:
                for batch in batches:
                    await link.send(kind, batch, call)
            except Exception as exc:
                await self._link_lost(link, exc)

    def _link(self, address: str) -> Link:
        link = self._links.get(address)
        if link is None:
            link = self._links[address] = Link(
                address,
                self._sup.node_connection(address),
                self,
                interval=self._interval,
                timeout=self._timeout,
                connect_timeout=self._connect_timeout,
            )
            assert self._tg is not None
            self._tg.start_soon(self._read, link)
        return link

    async def _read(self, link: Link) -> None:
        try:
            await link.run()
        except Exception as exc:
            # whatever ends a link (a lost connection, a reply redis-py cannot parse)
            # moves its names; it never ends the supervisor
            if not link.closed:
                await self._link_lost(link, exc)

    async def _retire(self, link: Link) -> None:
        self._links.pop(link.address, None)
        await link.close()

    async def _link_lost(self, link: Link, exc: BaseException) -> None:
        """The link's connection is gone: its confirmed names open a gap; every name
        it carried goes where the topology says now."""
        if self._links.get(link.address) is link:
            del self._links[link.address]
        was_up = link.up
        await link.close()
        if link.address == self._broadcast:
            self._broadcast = None
        self._retry_at[link.address] = time.monotonic() + self._backoff.next_delay()
        confirmed = [(k, n) for k, names in link.confirmed.items() for n in names]
        if confirmed:
            self._gaps.open(confirmed, Gap(link.caught_up_at, link.address, "lost", describe(exc)))
        unconfirmed = link.release()
        for kind, names, call in unconfirmed:
            self._emit(self._gaps.unrouted([(kind, n) for n in names], link.address))
            self._parked.append((kind, names, call))
        for kind in SUBSCRIBE_KINDS:
            if link.confirmed[kind]:
                self._parked.append((kind, sorted(link.confirmed[kind]), None))
        if not was_up:
            self._sup.wake_round()
        self._wake.set()

    async def _route_forever(self) -> None:
        while True:
            delay = min(
                (at - time.monotonic() for at in self._retry_at.values()), default=float("inf")
            )
            with anyio.move_on_after(max(delay, 0) if self._parked else float("inf")):
                await self._wake.wait()
            self._wake = anyio.Event()
            self._retry_at = {a: t for a, t in self._retry_at.items() if t > time.monotonic()}
            asking, self._asking = self._asking, {}
            for address, (gap, slots) in asking.items():
                await self._ask(address, gap, slots)
            await self._reconcile()
            parked, self._parked = self._parked, []
            for kind, names, call in parked:
                names = [n for n in names if n in self._names(kind)]
                if names:
                    await self._route(kind, names, call, counted=True)

    # -- what the supervisor tells ------------------------------------------------------

    def after_round(self, topology_changed: bool) -> None:
        """A health round ended; a new topology may move names."""
        if topology_changed:
            self._moved.clear()
            self._retry_at.clear()
            self._wake.set()
        elif self._parked:
            self._wake.set()

    async def _reconcile(self) -> None:
        """Move every name whose node no longer must carry it (the node lost its slot,
        stopped being a primary, or left) and give new primaries the node-local names."""
        primaries = set(self._sup.primaries())
        for address, link in list(self._links.items()):
            moves: list[tuple[str, list[str]]] = []
            shard = [
                n
                for n in link.wanted["ssubscribe"]
                if (
                    self._moved.get(key_slot(n.encode()))
                    or self._sup.owner_of(key_slot(n.encode()))
                )
                not in (address, None)
            ]
            if shard:
                moves.append(("ssubscribe", shard))
            state = self._sup.node(address)
            if state is None or state.role == "replica":
                for kind in ("subscribe", "psubscribe"):
                    local = [n for n in link.wanted[kind] if node_local(n)]
                    if local:
                        moves.append((kind, local))
            for kind, names in moves:
                confirmed = [(kind, n) for n in names if n in link.confirmed[kind]]
                self._emit(
                    self._gaps.unrouted(
                        [(kind, n) for n in names if n not in link.confirmed[kind]], address
                    )
                )
                with suppress(Exception):
                    await link.remove(kind, names)
                if confirmed:
                    self._gaps.open(confirmed, Gap(link.caught_up_at, address, "dropped", ""))
                if kind == "ssubscribe":
                    self._parked.append((kind, names, None))
            if link.empty and address != self._broadcast:
                await self._retire(link)
        for kind in ("subscribe", "psubscribe"):
            local = [n for n in self._names(kind) if node_local(n)]
            if not local:
                continue
            for address in primaries:
                holder = self._links.get(address)
                missing = [n for n in local if holder is None or n not in holder.wanted[kind]]
                if missing:
                    self._parked.append((kind, missing, None))

    # -- what a link tells --------------------------------------------------------------

    def message(self, reply: Any) -> None:
        if reply[0] in (b"pmessage", "pmessage"):
            self._items.append(Message("pmessage", reply[2], reply[3], pattern=reply[1]))
        else:
            kind = reply[0].decode() if isinstance(reply[0], bytes) else reply[0]
            self._items.append(Message(kind, reply[1], reply[2]))
        self._messages += 1
        self._arrived.set()

    async def room(self) -> None:
        while self._messages >= BUFFER and not self._closed:
            if self._room.is_set():
                self._room = anyio.Event()
            await self._room.wait()

    def confirmed(self, link: Link, kind: str, name: str) -> None:
        closed = self._gaps.confirmed((kind, name), link.address)
        if closed is not None:
            self._emit([closed])
        self._backoff.reset()

    def refused(
        self, link: Link, kind: str, names: list[str], call: Call | None, exc: ResponseError
    ) -> None:
        self._emit(self._gaps.unrouted([(kind, n) for n in names], link.address))
        if isinstance(exc, AskError):
            if type(exc).__name__ == "MovedError":
                self._moved[exc.slot_id] = f"{exc.host}:{exc.port}"
                self._sup.wake_round()
            self._parked.append((kind, names, call))
            self._wake.set()
        elif isinstance(exc, (ClusterDownError, TryAgainError)):
            self._retry_at[link.address] = time.monotonic() + self._backoff.next_delay()
            self._parked.append((kind, names, call))
            self._wake.set()
        else:
            self._names(kind).difference_update(names)
            if call is not None:
                call.refused(exc)

    def dropped(self, link: Link, kind: str, name: str) -> None:
        """The node unsubscribed ``name`` itself: its slot has a new owner, which a
        subscribe on the same node names (``MOVED``)."""
        if name not in self._names(kind):
            return
        gap, slots = self._asking.get(link.address) or (
            Gap(link.caught_up_at, link.address, "dropped", ""),
            set(),
        )
        self._asking[link.address] = gap, slots
        slots.add(key_slot(name.encode()))
        self._gaps.open([(kind, name)], gap)
        self._parked.append((kind, [name], None))
        self._wake.set()

    async def _ask(self, address: str, gap: Gap, slots: set[int]) -> None:
        """Ask the node that dropped shard channels who serves their slots now (it
        knows: it just gave them up); a failover if it is that owner's replica now."""
        conn = self._sup.node_connection(address)
        try:
            with anyio.fail_after(self._connect_timeout + self._timeout):
                await conn.connect()
                await conn.send_command("CLUSTER", "SLOTS", check_health=False)
                ranges = await conn.read_response(disconnect_on_error=False)
                await conn.send_command("ROLE", check_health=False)
                role = await conn.read_response(disconnect_on_error=False)
        except Exception:
            self._sup.wake_round()  # unreachable now: the rounds will tell
            return
        finally:
            await drop(conn)
        following = ""
        if replies.text(role[0]) == "slave":
            following = f"{replies.text(role[1])}:{role[2]}"
        for start, end, primary, *_ in ranges:
            owner = f"{replies.text(primary[0])}:{primary[1]}"
            mine = [slot for slot in slots if start <= slot <= end]
            if not mine or owner == address:
                continue
            for slot in mine:
                self._moved[slot] = owner
            if owner == following:
                gap.reason = "failover"

    # -- iteration ---------------------------------------------------------------------

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Message | Resubscribed:
        while not self._items:
            if self._closed:
                raise StopAsyncIteration
            if self._arrived.is_set():
                self._arrived = anyio.Event()
            await self._arrived.wait()
        item = self._items.popleft()
        if isinstance(item, Message):
            self._messages -= 1
            if self._messages < BUFFER:
                self._room.set()
        return item

    def _emit(self, closed: list[Closed]) -> None:
        for done in closed:
            self._items.append(self._marker(done))
            self._arrived.set()

    def _marker(self, done: Closed) -> Resubscribed:
        gap, up_at = done.gap, time.time()
        cause, why = self._cause(gap, done.address)
        by_kind: dict[str, list[str]] = {kind: [] for kind in SUBSCRIBE_KINDS}
        for kind, name in done.names:
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

    def _cause(self, gap: Gap, now_on: str) -> tuple[Cause, str]:
        before = self._sup.node(gap.address)
        if before is None:
            return Cause.NODE_REMOVED, f"{gap.address} left the cluster"
        if gap.reason == "failover" or (
            gap.reason == "lost" and (before.role == "replica" or not before.slots)
        ):
            return Cause.FAILOVER, f"{gap.address} failed over; now on {now_on}"
        if gap.reason == "dropped":
            return Cause.SLOT_MIGRATED, f"slot(s) moved from {gap.address} to {now_on}"
        cause, detail = attribute(
            Evidence(error=gap.error, reachable=before.up, client_class="pubsub")
        )
        return cause, f"{gap.address}: {detail}"
