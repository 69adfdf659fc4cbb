"""Prometheus metrics of supervised targets, in the text format of ``prometheus_client``.

Counters are fed from each target's events; gauges are read from the live
supervisors and the latest monitor sample when scraped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from supervisor.events import ConnectionLost, Event, StateChanged
from supervisor.service.monitor import Monitor
from supervisor.state import ConnectionState
from supervisor.targets.cluster import ClusterSupervisor
from supervisor.targets.single import Supervisor

__all__ = ("Metrics",)

_DOWN = (ConnectionState.RECONNECTING, ConnectionState.UNHEALTHY, ConnectionState.OVERLOADED)


class Metrics(Collector):
    def __init__(self, supervisors: Mapping[str, Supervisor | ClusterSupervisor]) -> None:
        self._supervisors = supervisors
        self.monitors: dict[str, Monitor] = {}
        self._losses: Counter[tuple[str, str]] = Counter()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def record(self, name: str, event: Event) -> None:
        """Count what an event says; called for every event of target ``name``."""
        lost = None
        if isinstance(event, ConnectionLost) or (
            isinstance(event, StateChanged) and event.current in _DOWN
        ):
            lost = event.cause
        if lost is not None:
            self._losses[(name, lost.value)] += 1

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        state = GaugeMetricFamily(
            "supervisor_state", "1 for the state each target is in", labels=["target", "state"]
        )
        latency = GaugeMetricFamily(
            "supervisor_health_check_latency_seconds",
            "Round trip of the last health-check PING",
            labels=["target"],
        )
        generation = GaugeMetricFamily(
            "supervisor_pool_generation", "Pool renewals after outages", labels=["target"]
        )
        for name, sup in self._supervisors.items():
            for s in ConnectionState:
                state.add_metric([name, s.value], 1.0 if sup.state is s else 0.0)
            stats = sup.statistics()
            if stats.health_latency is not None:
                latency.add_metric([name], stats.health_latency)
            generation.add_metric([name], stats.generation)
        nodes = GaugeMetricFamily(
            "supervisor_node_up",
            "1 while a cluster node answers health checks",
            labels=["target", "node", "role"],
        )
        for name, sup in self._supervisors.items():
            if isinstance(sup, ClusterSupervisor):
                for address, node in sup.nodes.items():
                    nodes.add_metric([name, address, node.role], 1.0 if node.up else 0.0)
        yield from (state, latency, generation, nodes)
        losses = CounterMetricFamily(
            "supervisor_connection_losses",
            "Connections lost, by cause",
            labels=["target", "cause"],
        )
        for (name, cause), n in sorted(self._losses.items()):
            losses.add_metric([name, cause], n)
        attempts = CounterMetricFamily(
            "supervisor_reconnect_attempts",
            "Failed reconnect attempts, by cause",
            labels=["target", "cause"],
        )
        for name, sup in self._supervisors.items():
            for cause, n in sorted(sup.statistics().connect_attempts_by_cause.items()):
                attempts.add_metric([name, cause], n)
        yield from (losses, attempts)
        yield from self._server_metrics()

    def _server_metrics(self) -> Iterator[GaugeMetricFamily]:
        fields = {
            "connected_clients": "Clients connected (INFO clients)",
            "blocked_clients": "Clients blocked (INFO clients)",
            "maxclients": "CONFIG GET maxclients",
            "rejected_connections": "Connections refused at maxclients (INFO stats)",
            "evicted_clients": "Clients evicted by maxmemory-clients (INFO stats)",
            "total_connections_received": "Connections accepted (INFO stats)",
            "timeout": "CONFIG GET timeout, seconds",
            "tcp_keepalive": "CONFIG GET tcp-keepalive, seconds",
        }
        for field, doc in fields.items():
            family = GaugeMetricFamily(f"redis_{field}", doc, labels=["target"])
            for name, monitor in self.monitors.items():
                sample = monitor.latest
                value = getattr(sample, field) if sample is not None else None
                if value is not None:
                    family.add_metric([name], float(value))
            yield family
