"""``SupervisorStatistics``: the counters ``statistics()`` returns, for every kind of target."""

from __future__ import annotations

from typing import NamedTuple

from supervisor.connection.cache import ClientCache
from supervisor.state import ConnectionState

__all__ = ("CacheStatistics", "SupervisorStatistics")


class CacheStatistics(NamedTuple):
    """The client-side cache's counters (``client_cache``)."""

    hits: int
    misses: int
    bypassed: int
    """Cacheable reads sent to the server because freshness could not be proven."""
    invalidations: int
    """Keys invalidated: by the server, or by a write through ``sup.client``."""
    evictions: int
    """Entries dropped for the bounds (``cache_max_entries``, ``cache_max_bytes``)."""
    flushes_by_cause: dict[str, int]
    """Times every entry was dropped, by ``FlushCause.value``."""
    entries: int
    bytes: int
    """Estimated memory the entries hold."""
    staleness: float | None
    """Seconds since the moment up to which the cache is proven complete; None while
    it is not (nothing is served then)."""

    @classmethod
    def of(cls, cache: ClientCache) -> CacheStatistics:
        store = cache.store
        return cls(
            hits=store.hits,
            misses=store.misses,
            bypassed=cache.bypassed,
            invalidations=store.invalidations,
            evictions=store.evictions,
            flushes_by_cause=dict(store.flushes),
            entries=len(store),
            bytes=store.bytes,
            staleness=cache.staleness(),
        )


class SupervisorStatistics(NamedTuple):
    """A read-only snapshot of counters, for metrics and tests."""

    state: ConnectionState
    generation: int
    """How many times the pool was renewed after an outage (1 after the first connect)."""
    connect_attempts: int
    """Failed connection attempts: the prober's, a health check's reopening, and every new
    connection the server turned away (what it counts as ``rejected_connections``)."""
    connect_attempts_by_cause: dict[str, int]
    """The same, by cause (``Cause.value``)."""
    connections_lost: int
    connections_lost_by_cause: dict[str, int]
    """The same, by the cause they were attributed to (``Cause.value``)."""
    outages_by_cause: dict[str, int]
    """Outages ended (RECONNECTING, then READY), by the cause the supervisor concluded
    once the target was back (``server_restart`` when its ``run_id`` changed)."""
    health_checks: int
    health_latency: float | None
    """Seconds the health check's last round trip (PING, or INFO on a fresh connection) took,
    or None before the first."""
    waiters: int
    """Commands waiting: at the gate, or for a connection to be released."""
    subscribers: int
    dropped_events: int
    """Events subscribers lost to a full buffer (current subscribers only)."""
    sentinels_watched: int
    """Sentinels whose announcements arrive (0 unless the target is a Sentinel service)."""
    cache: CacheStatistics | None = None
    """The client-side cache's counters; None without ``client_cache``."""
    pubsub_out_of_sync: int = 0
    """Cluster pub/sub handles with a name not (yet) confirmed on the node that must
    carry it: moving after a slot move or a failover, or waiting for one."""
