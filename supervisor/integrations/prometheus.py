"""Prometheus metrics of supervised targets, read from the live supervisors when scraped.

Prometheus's conventions: counters end in ``_total``, units are in the names, our metrics
are in the ``supervisor_`` namespace, and every counter has a sample (0) for each cause
from the first scrape, so the first ``increase()`` is not lost. The server facts the
monitor samples carry redis_exporter's exact names and types where it exports the same
fact (``redis_connected_clients``, ``redis_rejected_connections_total``...), and ours
where it does not.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from supervisor.causes import Cause, FlushCause
from supervisor.state import ConnectionState
from supervisor.targets.cluster import ClusterSupervisor
from supervisor.targets.single import Supervisor

__all__ = ("METRICS", "Metrics", "Sampler")

_CAUSES = [c.value for c in Cause]

_CACHE = (
    # field of CacheStatistics, kind, name, help
    ("hits", "counter", "supervisor_cache_hits", "Cacheable reads answered from the cache"),
    (
        "misses",
        "counter",
        "supervisor_cache_misses",
        "Cacheable reads sent to the server, to store",
    ),
    (
        "bypassed",
        "counter",
        "supervisor_cache_bypassed",
        "Cacheable reads sent to the server while freshness was unproven",
    ),
    (
        "invalidations",
        "counter",
        "supervisor_cache_invalidations",
        "Keys invalidated, by the server or a write through sup.client",
    ),
    (
        "evictions",
        "counter",
        "supervisor_cache_evictions",
        "Entries dropped for cache_max_entries or cache_max_bytes",
    ),
    ("entries", "gauge", "supervisor_cache_entries", "Entries in the client-side cache"),
    ("bytes", "gauge", "supervisor_cache_size_bytes", "Memory the entries hold (estimated)"),
    (
        "staleness",
        "gauge",
        "supervisor_cache_staleness_seconds",
        "Seconds since the moment up to which the cache is proven complete (absent: unproven)",
    ),
)

_SERVER = (
    # field of the sample, kind, name, help; redis_exporter's names where it has the fact
    ("connected_clients", "gauge", "redis_connected_clients", "Clients connected (INFO clients)"),
    ("blocked_clients", "gauge", "redis_blocked_clients", "Clients blocked (INFO clients)"),
    ("maxclients", "gauge", "redis_config_maxclients", "CONFIG GET maxclients"),
    (
        "rejected_connections",
        "counter",
        "redis_rejected_connections",
        "Connections refused at maxclients (INFO stats)",
    ),
    (
        "evicted_clients",
        "counter",
        "redis_evicted_clients",
        "Clients evicted by maxmemory-clients (INFO stats)",
    ),
    (
        "total_connections_received",
        "counter",
        "redis_connections_received",
        "Connections accepted (INFO stats)",
    ),
    (
        "timeout",
        "gauge",
        "supervisor_server_idle_timeout_seconds",
        "The server's idle timeout (CONFIG GET timeout); 0 is none",
    ),
    (
        "tcp_keepalive",
        "gauge",
        "supervisor_server_tcp_keepalive_seconds",
        "The server's TCP keepalive period (CONFIG GET tcp-keepalive); 0 is none",
    ),
)

METRICS: dict[str, tuple[str, str, str]] = {
    "supervisor_state": ("gauge", "", "target, state"),
    "supervisor_health_check_latency_seconds": ("gauge", "s", "target"),
    "supervisor_waiting_commands": ("gauge", "", "target"),
    "supervisor_node_up": ("gauge", "", "target, node, role"),
    "supervisor_pool_generations_total": ("counter", "", "target"),
    "supervisor_outages_total": ("counter", "", "target, cause"),
    "supervisor_connection_losses_total": ("counter", "", "target, cause"),
    "supervisor_reconnect_attempts_total": ("counter", "", "target, cause"),
    **{
        name + ("_total" if kind == "counter" else ""): (
            kind,
            "s" if name.endswith("_seconds") else "bytes" if name.endswith("_bytes") else "",
            "target",
        )
        for _, kind, name, _ in _CACHE
    },
    "supervisor_cache_flushes_total": ("counter", "", "target, cause"),
    **{
        name + ("_total" if kind == "counter" else ""): (
            kind,
            "s" if name.endswith("_seconds") else "",
            "target",
        )
        for _, kind, name, _ in _SERVER
    },
}
"""Every exported name as a scrape shows it: (type, unit, labels); README's table."""


class Sampler(Protocol):
    """What the server facts are read from: the service's monitor (its last sample)."""

    @property
    def latest(self) -> Any: ...


class Metrics(Collector):
    """The metrics of ``supervisors`` (by name, the ``target`` label), for ``run``'s
    ``/metrics`` and an app's (``supervisor.asgi.MetricsApp``)."""

    def __init__(self, supervisors: Mapping[str, Supervisor | ClusterSupervisor]) -> None:
        self._supervisors = supervisors
        self.monitors: dict[str, Sampler] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "supervisor_state", "1 for the state each target is in", labels=["target", "state"]
        )
        latency = GaugeMetricFamily(
            "supervisor_health_check_latency_seconds",
            "Round trip of the last health check",
            labels=["target"],
        )
        waiting = GaugeMetricFamily(
            "supervisor_waiting_commands",
            "Commands waiting at the gate or for a connection",
            labels=["target"],
        )
        generations = CounterMetricFamily(
            "supervisor_pool_generations",
            "Pool generations: 1 after the first connect, one more after each outage",
            labels=["target"],
        )
        outages = _by_cause("supervisor_outages", "Outages ended, by the cause concluded once back")
        losses = _by_cause(
            "supervisor_connection_losses", "Connections lost while serving, by cause"
        )
        attempts = _by_cause(
            "supervisor_reconnect_attempts", "Failed connection attempts, by cause"
        )
        nodes = GaugeMetricFamily(
            "supervisor_node_up",
            "1 while a cluster node answers health checks",
            labels=["target", "node", "role"],
        )
        out_of_sync = GaugeMetricFamily(
            "supervisor_pubsub_out_of_sync",
            "Cluster pub/sub handles with a name not yet confirmed on the node that must "
            "carry it (after a slot move or a failover, until it is)",
            labels=["target"],
        )
        for name, sup in self._supervisors.items():
            for s in ConnectionState:
                state.add_metric([name, s.value], 1.0 if sup.state is s else 0.0)
            stats = sup.statistics()
            if stats.health_latency is not None:
                latency.add_metric([name], stats.health_latency)
            waiting.add_metric([name], stats.waiters)
            generations.add_metric([name], stats.generation)
            _add_causes(outages, name, stats.outages_by_cause)
            _add_causes(losses, name, stats.connections_lost_by_cause)
            _add_causes(attempts, name, stats.connect_attempts_by_cause)
            if isinstance(sup, ClusterSupervisor):
                out_of_sync.add_metric([name], stats.pubsub_out_of_sync)
                for address, node in sup.nodes.items():
                    nodes.add_metric([name, address, node.role], 1.0 if node.up else 0.0)
        yield from (state, latency, waiting, generations, outages, losses, attempts, nodes)
        yield out_of_sync
        yield from self._cache_metrics()
        yield from self._server_metrics()

    def _cache_metrics(self) -> Iterator[Metric]:
        """Only targets with ``client_cache`` have these; each counter from 0."""
        caches = [(n, s.statistics().cache) for n, s in self._supervisors.items()]
        present = [(n, c) for n, c in caches if c is not None]
        for field, kind, metric, doc in _CACHE:
            family = _family(kind, metric, doc)
            for name, cache in present:
                value = getattr(cache, field)
                if value is not None:
                    family.add_metric([name], float(value))
            yield family
        flushes = _by_cause(
            "supervisor_cache_flushes", "Times the client-side cache dropped every entry, by cause"
        )
        for name, cache in present:
            for cause in FlushCause:
                flushes.add_metric([name, cause.value], cache.flushes_by_cause.get(cause.value, 0))
        yield flushes

    def _server_metrics(self) -> Iterator[Metric]:
        for field, kind, metric, doc in _SERVER:
            family = _family(kind, metric, doc)
            for name, monitor in self.monitors.items():
                sample = monitor.latest
                value = getattr(sample, field) if sample is not None else None
                if value is not None:
                    family.add_metric([name], float(value))
            yield family


def _family(kind: str, name: str, doc: str) -> Any:
    """A family of one sample per target, of the kind its table row names."""
    return (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(
        name, doc, labels=["target"]
    )


def _by_cause(name: str, doc: str) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=["target", "cause"])


def _add_causes(family: CounterMetricFamily, target: str, counts: Mapping[str, int]) -> None:
    for cause in _CAUSES:
        family.add_metric([target, cause], counts.get(cause, 0))
