"""Where a cluster pub/sub handle's names go, and the links that carry them there.

A shard channel goes to the primary that owns its slot, a classic name to one primary,
a keyspace or keyevent name to every primary; one ``Link`` per node. An unsubscribe
nobody asked for means the slot moved (the node that gave it up says who has it now);
a lost link's names go where the topology says; each round's topology is reconciled
with where every name is.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from typing import Any

import anyio
from anyio.abc import TaskGroup
from redis.crc import key_slot
from redis.exceptions import AskError, ClusterDownError, ResponseError, TryAgainError

from supervisor.connection.backoff import Backoff
from supervisor.connection.losses import describe
from supervisor.targets.cluster_gaps import Closed, Gap, Gaps, node_local
from supervisor.targets.cluster_inbox import Inbox
from supervisor.targets.cluster_link import SUBSCRIBE_KINDS, Call, Link
from supervisor.targets.cluster_routes import ClusterRoutes

__all__ = ("Router",)

_HOPS = 3
"""Redirections of one slot followed at once between two rounds; more wait a backoff."""


class Router:
    """One handle's links; ``run()`` (its task) routes whatever waits for a node."""

    def __init__(
        self,
        sup: ClusterRoutes,
        names: Callable[[str], set[str]],
        gaps: Gaps,
        inbox: Inbox,
        emit: Callable[[list[Closed]], None],
    ) -> None:
        self._sup = sup
        config = sup.config
        self._interval = config.health_check_interval
        self._timeout = config.health_check_timeout
        self._connect_timeout = config.socket_connect_timeout
        self._backoff = Backoff(
            config.backoff_base, config.backoff_cap, jitter=config.backoff_jitter
        )
        self._names = names
        self._gaps = gaps
        self._inbox = inbox
        self._emit = emit
        self._links: dict[str, Link] = {}
        self._broadcast: str | None = None
        self._parked: list[tuple[str, list[str], Call | None]] = []
        self._retry_at: dict[str, float] = {}
        self._moved: dict[int, str] = {}
        self._hops: dict[int, int] = {}
        self._asking: dict[str, tuple[Gap, set[int]]] = {}
        self._primaries: frozenset[str] = frozenset()
        self._wake = anyio.Event()
        self.tg: TaskGroup | None = None

    def subscriptions(self) -> dict[str, dict[str, dict[str, frozenset[str]]]]:
        """Per node: the names routed there and those it confirmed, by kind."""
        return {address: link.snapshot() for address, link in self._links.items()}

    @property
    def in_sync(self) -> bool:
        """Every wanted name is confirmed on the node that must carry it."""
        if self._parked:
            return False
        return all(link.up and link.wanted == link.confirmed for link in self._links.values())

    async def close(self) -> None:
        """Close every link; the calls still waiting are answered (the handle closed)."""
        links, self._links = list(self._links.values()), {}
        waiting, self._parked = list(self._parked), []
        for link in links:
            waiting += link.release()
            with anyio.move_on_after(1), suppress(Exception):
                await link.close()
        for _, _, call in waiting:
            if call is not None:
                call.done.set()

    async def remove(self, kind: str, gone: list[str]) -> None:
        """The application unsubscribed ``gone``."""
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
        return state is not None and state.up and self._retry_at.get(address, 0) <= time.monotonic()

    async def route(
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
            assert self.tg is not None
            self.tg.start_soon(self._read, link)
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
        """The link is gone: its confirmed names open a gap, and all go elsewhere."""
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

    async def run(self) -> None:
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
                    await self.route(kind, names, call, counted=True)

    # -- what the supervisor tells ------------------------------------------------------

    def after_round(self, topology_changed: bool) -> None:
        """A health round ended; a new topology (or a primary that appeared, empty)
        may move names."""
        self._hops.clear()
        primaries = frozenset(self._sup.primaries())
        if primaries != self._primaries:
            if self._primaries:
                self._promoted(primaries - self._primaries, set(primaries))
            self._primaries = primaries
            self._wake.set()
        if topology_changed:
            self._moved.clear()
            self._retry_at.clear()
            self._wake.set()
        elif self._parked:
            self._wake.set()

    def _promoted(self, new: frozenset[str], primaries: set[str]) -> None:
        local = [
            (k, n) for k in ("subscribe", "psubscribe") for n in self._names(k) if node_local(n)
        ]
        for address in new:
            state = self._sup.node(address)
            if local and state is not None and state.slots:
                self._gaps.promoted(local, address, self._sup.since, primaries)

    async def _reconcile(self) -> None:
        """Move every name whose node no longer must carry it (the node lost its slot,
        stopped being a primary, or left) and give new primaries the node-local names."""
        primaries = set(self._sup.primaries())
        for address, link in list(self._links.items()):
            moves: list[tuple[str, list[str], bool]] = []
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
                moves.append(("ssubscribe", shard, True))
            state = self._sup.node(address)
            for kind in ("subscribe", "psubscribe"):
                local = [n for n in link.wanted[kind] if node_local(n)]
                if local and (state is None or state.role == "replica"):
                    # the node's own notifications: its successor has its own window
                    moves.append((kind, local, False))
                classic = [n for n in link.wanted[kind] if not node_local(n)]
                if classic and state is None:
                    moves.append((kind, classic, True))
            if state is None and address == self._broadcast:
                self._broadcast = None
            for kind, names, elsewhere in moves:
                confirmed = [(kind, n) for n in names if n in link.confirmed[kind]]
                self._emit(
                    self._gaps.unrouted(
                        [(kind, n) for n in names if n not in link.confirmed[kind]], address
                    )
                )
                with suppress(Exception):
                    await link.remove(kind, names)
                if elsewhere:
                    if confirmed:
                        reason = "dropped" if state is not None else "lost"
                        self._gaps.open(confirmed, Gap(link.caught_up_at, address, reason, ""))
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
        self._inbox.message(reply)

    async def room(self) -> None:
        await self._inbox.room()

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
            target = link.address
            if type(exc).__name__ == "MovedError":
                target = self._moved[exc.slot_id] = f"{exc.host}:{exc.port}"
                self._sup.wake_round()
            self._hops[exc.slot_id] = hops = self._hops.get(exc.slot_id, 0) + 1
            if hops > _HOPS:
                # two nodes that disagree send each other's name: wait, not ping-pong
                self._retry_at[target] = time.monotonic() + self._backoff.next_delay()
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
        """The node unsubscribed ``name`` itself: its slot has a new owner (``_ask``)."""
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
        try:
            owners, following = await self._sup.seen_by(
                address, slots, self._connect_timeout + self._timeout
            )
        except Exception:
            self._sup.wake_round()  # unreachable now: the rounds will tell
            return
        for slot, owner in owners.items():
            if owner != address:
                self._moved[slot] = owner
                gap.reason = "failover" if owner == following else gap.reason
        link = self._links.get(address)
        if following and link is not None:
            # a replica publishes its primary's notifications too: not twice, not here
            for kind in ("subscribe", "psubscribe"):
                with suppress(Exception):
                    await link.remove(kind, [n for n in link.wanted[kind] if node_local(n)])
