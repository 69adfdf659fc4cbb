"""The events a supervisor publishes to its subscribers.

Immutable records. ``seq`` numbers every event of one supervisor from 1
upwards, so a subscriber that fell behind sees the gap; ``at`` is wall-clock
time (``time.time()``); ``target`` is the redacted ``host:port/db``.
"""

from __future__ import annotations

from dataclasses import dataclass

from supervisor.causes import Cause, FlushCause
from supervisor.state import ConnectionState

__all__ = (
    "Alert",
    "CacheFlushed",
    "ConnectionLost",
    "Event",
    "HealthCheckFailed",
    "MasterChanged",
    "NodeStateChanged",
    "ReconnectScheduled",
    "Resubscribed",
    "ServerSampled",
    "Snapshot",
    "StateChanged",
    "TopologyChanged",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """The current state, sent first to each new subscriber."""

    seq: int
    at: float
    target: str
    state: ConnectionState
    cause: Cause | None
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StateChanged:
    """The target moved from ``previous`` to ``current``.

    ``cause`` is why the connection was lost (on the way down), or what the
    outage turned out to be (on the way back to READY); None on a clean start.
    """

    seq: int
    at: float
    target: str
    previous: ConnectionState
    current: ConnectionState
    cause: Cause | None
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReconnectScheduled:
    """A connection attempt failed; the next one comes after ``delay`` seconds."""

    seq: int
    at: float
    target: str
    attempt: int
    delay: float
    cause: Cause
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionLost:
    """One connection dropped while the target stayed usable.

    Published when the server closed a pooled connection (CLIENT KILL, idle
    timeout...) and the supervisor replaced it without a state change.
    """

    seq: int
    at: float
    target: str
    cause: Cause
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthCheckFailed:
    """A health check did not get its reply in time, or failed. A stall fails every
    round the same way: the same cause and detail are told once, until the target is
    READY again (``statistics().health_checks`` counts every round)."""

    seq: int
    at: float
    target: str
    cause: Cause
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Resubscribed:
    """A pub/sub handle lost its connection and subscribed again to everything it had.

    Messages published between ``down_at`` (the last moment the handle is known
    to have been subscribed) and ``up_at`` (when the server confirmed every
    subscription again) were not delivered and cannot be recovered from
    pub/sub: resync from the source of truth. ``cause`` says why it was lost.
    The same object is also yielded in-band by the handle's iterator, right
    before the first message received after the gap.
    """

    seq: int
    at: float
    target: str
    cause: Cause
    detail: str
    channels: tuple[str, ...]
    patterns: tuple[str, ...]
    shard_channels: tuple[str, ...]
    down_at: float
    up_at: float
    node: str | None = None
    """On a cluster: the node (``host:port``) the names are confirmed on again."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MasterChanged:
    """A Sentinel target now points at another server (``host:port``).

    ``cause`` is what showed it first: FAILOVER (Sentinel announced it),
    READONLY (a write was refused by the old master), NETWORK (the old master
    went away and the sentinels named a new one).
    """

    seq: int
    at: float
    target: str
    old: str
    new: str
    cause: Cause
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeStateChanged:
    """One node of a Redis Cluster became reachable (``up``) or not (``down``)."""

    seq: int
    at: float
    target: str
    node: str
    role: str
    previous: str
    current: str
    cause: Cause | None
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TopologyChanged:
    """The cluster's primaries or slot ownership changed (a failover, a reshard)."""

    seq: int
    at: float
    target: str
    primaries: tuple[str, ...]
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSampled:
    """What the server monitor read (``INFO clients``, ``INFO stats``, ``CONFIG GET``).

    A value is None when the server did not report it (CONFIG refused, older version).
    """

    seq: int
    at: float
    target: str
    connected_clients: int
    blocked_clients: int
    maxclients: int | None
    rejected_connections: int
    evicted_clients: int | None
    total_connections_received: int
    timeout: int | None
    tcp_keepalive: int | None
    client_output_buffer_limit: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """A monitored threshold was crossed (``firing``) or is back to normal."""

    seq: int
    at: float
    target: str
    name: str
    firing: bool
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheFlushed:
    """The client-side cache (``client_cache``) dropped every entry. After a fault
    (``FlushCause.STREAM_LOST``, ``READER_LOST``, ``STALLED``, ``RENEWED``) reads go to
    the server until new connections prove the invalidation stream complete again."""

    seq: int
    at: float
    target: str
    cause: FlushCause
    entries: int
    """How many entries were dropped."""
    detail: str


Event = (
    Snapshot
    | StateChanged
    | ReconnectScheduled
    | ConnectionLost
    | HealthCheckFailed
    | Resubscribed
    | MasterChanged
    | NodeStateChanged
    | TopologyChanged
    | ServerSampled
    | Alert
    | CacheFlushed
)
