"""The windows of a cluster pub/sub handle: which names lost delivery, since when, and
which node they are being confirmed on.

A name whose connection was lost, or that its node unsubscribed on its own (its slot
moved), opens a gap at the last moment the old link was known to be caught up. Its
gap closes where it is confirmed again. One ``Resubscribed`` marker is due per gap and
destination node, once no name of that gap is still on its way there: the marker then
comes before any message that node sends for those names afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from supervisor.causes import Cause
from supervisor.targets.cluster_topology import ClusterNodeState

__all__ = ("Closed", "Gap", "Gaps", "Name", "cause_of", "node_local")

Name = tuple[str, str]
"""``(kind, name)``: ``("ssubscribe", "orders")``."""


@dataclass(slots=True, eq=False)
class Gap:
    """Names that lost delivery together."""

    down_at: float
    address: str
    """The node they were on."""
    reason: str
    """``dropped`` (the node unsubscribed them: a slot moved), ``failover`` (it did, as a
    replica of their new owner), ``lost`` (the connection) or ``promoted`` (the node
    became a primary: its notifications were not read until then)."""
    error: str
    inflight: dict[str, int] = field(default_factory=dict)
    confirmed: dict[str, list[Name]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Closed:
    """A gap's names confirmed on ``address``: one marker."""

    gap: Gap
    address: str
    names: list[Name]


_NODE_LOCAL = ("__keyspace@", "__keyevent@")


def node_local(name: str) -> bool:
    """Keyspace and keyevent notifications are published only on the node of the key:
    such a name is carried by every primary, and has a gap per node."""
    return name.startswith(_NODE_LOCAL)


class Gaps:
    __slots__ = ("_of",)

    def __init__(self) -> None:
        self._of: dict[tuple[str, str, str], Gap] = {}

    @staticmethod
    def _key(name: Name, address: str) -> tuple[str, str, str]:
        return (*name, address if node_local(name[1]) else "")

    def open(self, names: list[Name], gap: Gap) -> None:
        """``names`` lost delivery; one already in a gap keeps its earlier window."""
        for name in names:
            key = self._key(name, gap.address)
            before = self._of.get(key)
            if before is not None and before.down_at <= gap.down_at:
                continue
            self._of[key] = gap

    def promoted(self, names: list[Name], address: str, since: float, primaries: set[str]) -> None:
        """``address`` became a primary after ``since``: its node-local ``names`` missed
        what it published until they are confirmed there. Gaps of nodes that are no
        longer primaries end in this one (their keys now live here)."""
        down_at = since
        for key in [k for k in self._of if k[2] and k[2] not in primaries]:
            down_at = min(down_at, self._of.pop(key).down_at)
        self.open(names, Gap(down_at, address, "promoted", ""))

    def routed(self, names: list[Name], address: str) -> None:
        for name in names:
            gap = self._of.get(self._key(name, address))
            if gap is not None:
                gap.inflight[address] = gap.inflight.get(address, 0) + 1

    def confirmed(self, name: Name, address: str) -> Closed | None:
        gap = self._of.pop(self._key(name, address), None)
        if gap is None:
            return None
        gap.confirmed.setdefault(address, []).append(name)
        return self._settle(gap, address, 1)

    def unrouted(self, names: list[Name], address: str) -> list[Closed]:
        """``names`` will not be confirmed on ``address`` (refused, moved, link lost)."""
        closed = []
        for name in names:
            gap = self._of.get(self._key(name, address))
            if gap is not None:
                done = self._settle(gap, address, 1)
                if done is not None:
                    closed.append(done)
        return closed

    def forget(self, names: list[Name]) -> None:
        """The application unsubscribed: no marker for these."""
        gone = set(names)
        for key in [k for k in self._of if (k[0], k[1]) in gone]:
            del self._of[key]

    @staticmethod
    def _settle(gap: Gap, address: str, count: int) -> Closed | None:
        left = gap.inflight.get(address, 0) - count
        gap.inflight[address] = max(left, 0)
        if left > 0:
            return None
        names = gap.confirmed.pop(address, [])
        return Closed(gap, address, names) if names else None


def cause_of(gap: Gap, before: ClusterNodeState | None, now_on: str) -> tuple[Cause, str]:
    """Why ``gap`` opened, from what the node it was on is now."""
    if before is None:
        return Cause.NODE_REMOVED, f"{gap.address} left the cluster"
    if gap.reason == "promoted":
        return Cause.FAILOVER, f"{now_on} became a primary"
    if gap.reason == "failover" or (
        gap.reason == "lost" and (before.role == "replica" or not before.slots)
    ):
        return Cause.FAILOVER, f"{gap.address} failed over; now on {now_on}"
    if gap.reason == "dropped":
        return Cause.SLOT_MIGRATED, f"slot(s) moved from {gap.address} to {now_on}"
    now = "answers again" if before.up else "does not answer"
    return Cause.NETWORK, f"{gap.address} lost the connection ({gap.error}) and {now}"
