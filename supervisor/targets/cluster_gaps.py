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

from supervisor.causes import Cause, Evidence, attribute
from supervisor.targets.cluster_topology import ClusterNodeState

__all__ = ("Closed", "Gap", "Gaps", "Name", "cause_of")

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
    replica of their new owner) or ``lost`` (the connection)."""
    error: str
    inflight: dict[str, int] = field(default_factory=dict)
    confirmed: dict[str, list[Name]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Closed:
    """A gap's names confirmed on ``address``: one marker."""

    gap: Gap
    address: str
    names: list[Name]


class Gaps:
    __slots__ = ("_of",)

    def __init__(self) -> None:
        self._of: dict[Name, Gap] = {}

    def __len__(self) -> int:
        return len(self._of)

    def open(self, names: list[Name], gap: Gap) -> None:
        """``names`` lost delivery; one already in a gap keeps its earlier window."""
        for name in names:
            before = self._of.get(name)
            if before is not None and before.down_at <= gap.down_at:
                continue
            self._of[name] = gap

    def of(self, name: Name) -> Gap | None:
        return self._of.get(name)

    def routed(self, names: list[Name], address: str) -> None:
        for name in names:
            gap = self._of.get(name)
            if gap is not None:
                gap.inflight[address] = gap.inflight.get(address, 0) + 1

    def confirmed(self, name: Name, address: str) -> Closed | None:
        gap = self._of.pop(name, None)
        if gap is None:
            return None
        gap.confirmed.setdefault(address, []).append(name)
        return self._settle(gap, address, 1)

    def unrouted(self, names: list[Name], address: str) -> list[Closed]:
        """``names`` will not be confirmed on ``address`` (refused, moved, link lost)."""
        closed = []
        for name in names:
            gap = self._of.get(name)
            if gap is not None:
                done = self._settle(gap, address, 1)
                if done is not None:
                    closed.append(done)
        return closed

    def forget(self, names: list[Name]) -> None:
        """The application unsubscribed: no marker for these."""
        for name in names:
            self._of.pop(name, None)

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
    if gap.reason == "failover" or (
        gap.reason == "lost" and (before.role == "replica" or not before.slots)
    ):
        return Cause.FAILOVER, f"{gap.address} failed over; now on {now_on}"
    if gap.reason == "dropped":
        return Cause.SLOT_MIGRATED, f"slot(s) moved from {gap.address} to {now_on}"
    cause, detail = attribute(Evidence(error=gap.error, reachable=before.up, client_class="pubsub"))
    return cause, f"{gap.address}: {detail}"
