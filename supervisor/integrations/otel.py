"""OpenTelemetry metrics of supervisors, in the app's own OTel pipeline.

``pip install 'redis-supervisor[otel]'``, then ``instrument(sup)`` once (it uses
the global ``MeterProvider`` unless given one). Every instrument is observable:
the values are read from ``sup.statistics()`` when the app's reader collects, so
nothing runs on the command path and no task is started.

Where redis-py and go-redis already name a metric, the name is theirs:
``db.client.connection.count`` (by ``db.client.connection.state``),
``db.client.connection.pending_requests`` (commands waiting: at the gate or for a
connection) and ``redis.client.connection.closed`` (by
``redis.client.connection.close_reason``: the cause the supervisor attributed).
What only the supervisor knows is named in the same style under
``redis.supervisor.*``. Per-command metrics (``db.client.operation.duration``,
``redis.client.errors``) come from redis-py's own observability, which
``sup.client`` is part of.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from supervisor._version import __version__
from supervisor.state import ConnectionState

__all__ = ("instrument",)

TARGET = "redis.supervisor.target"
"""The target's name (``host:port/db``, never credentials) on every point."""


def instrument(sup: Any, *, meter_provider: MeterProvider | None = None) -> None:
    """Report ``sup``'s state, losses, reconnect attempts, pool and waiters as OTel
    metrics; after the supervisor closes its points say so (state ``closed``)."""
    meter = metrics.get_meter("supervisor", __version__, meter_provider=meter_provider)
    target = {TARGET: sup.target}

    def state(_: CallbackOptions) -> Iterable[Observation]:
        current = sup.state
        for each in ConnectionState:
            yield Observation(
                int(each is current), {**target, "redis.supervisor.state": each.value}
            )

    def closed(_: CallbackOptions) -> Iterable[Observation]:
        for cause, count in sup.statistics().connections_lost_by_cause.items():
            yield Observation(count, {**target, "redis.client.connection.close_reason": cause})

    def attempts(_: CallbackOptions) -> Iterable[Observation]:
        for cause, count in sup.statistics().connect_attempts_by_cause.items():
            yield Observation(count, {**target, "redis.supervisor.cause": cause})

    def connections(_: CallbackOptions) -> Iterable[Observation]:
        pool = getattr(sup, "_pool", None)
        if pool is None:
            return
        used = len(pool._in_use_connections)
        idle = sum(1 for c in pool._available_connections if c.is_connected)
        name = {**target, "db.client.connection.pool.name": sup.target}
        yield Observation(used, {**name, "db.client.connection.state": "used"})
        yield Observation(idle, {**name, "db.client.connection.state": "idle"})

    def pending(_: CallbackOptions) -> Iterable[Observation]:
        yield Observation(sup.statistics().waiters, target)

    def latency(_: CallbackOptions) -> Iterable[Observation]:
        seconds = sup.statistics().health_latency
        if seconds is not None:
            yield Observation(seconds, target)

    def dropped(_: CallbackOptions) -> Iterable[Observation]:
        yield Observation(sup.statistics().dropped_events, target)

    meter.create_observable_gauge(
        "redis.supervisor.state",
        [state],
        unit="1",
        description="1 for the state the target is in, 0 for the others",
    )
    meter.create_observable_counter(
        "redis.client.connection.closed",
        [closed],
        unit="{connection}",
        description="Connections lost, by the cause the supervisor attributed",
    )
    meter.create_observable_counter(
        "redis.supervisor.reconnect.attempts",
        [attempts],
        unit="{attempt}",
        description="Failed connection attempts of the prober, by cause",
    )
    meter.create_observable_up_down_counter(
        "db.client.connection.count",
        [connections],
        unit="{connection}",
        description="Connections of the supervised pool, by state",
    )
    meter.create_observable_up_down_counter(
        "db.client.connection.pending_requests",
        [pending],
        unit="{request}",
        description="Commands waiting: at the gate during an outage, or for a connection",
    )
    meter.create_observable_gauge(
        "redis.supervisor.health_check.latency",
        [latency],
        unit="s",
        description="Round trip of the last health check",
    )
    meter.create_observable_counter(
        "redis.supervisor.events.dropped",
        [dropped],
        unit="{event}",
        description="Events subscribers lost to a full buffer",
    )
