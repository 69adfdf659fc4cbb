"""OpenTelemetry metrics of supervisors, in the app's own OTel pipeline, beside redis-py's.

``pip install 'redis-supervisor[otel]'``, then ``instrument(sup)`` once (it uses the
global ``MeterProvider`` unless given one). Names, units and attributes are the semantic
conventions' (``opentelemetry-semantic-conventions``): every point carries
``db.system.name``, ``server.address``, ``server.port`` and ``db.namespace``, so it joins
redis-py's own ``db.client.operation.duration``, and the pool metrics carry the pool name
redis-py gives the same pool, so one pool is one series. One truth per fact: the pool's
connection count is redis-py's while redis-py's observability is on, and ours only while
it is off; what only the supervisor knows is under ``redis.supervisor.*``. The supervisor's
own connections and re-sent attempts are never counted in redis-py's errors
(``supervisor.connection.quiet``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.semconv._incubating.attributes.db_attributes import (
    DB_CLIENT_CONNECTION_POOL_NAME,
    DB_CLIENT_CONNECTION_STATE,
)
from opentelemetry.semconv._incubating.metrics.db_metrics import (
    DB_CLIENT_CONNECTION_COUNT,
    DB_CLIENT_CONNECTION_MAX,
    DB_CLIENT_CONNECTION_PENDING_REQUESTS,
)
from opentelemetry.semconv.attributes.db_attributes import DB_NAMESPACE, DB_SYSTEM_NAME
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT
from redis.observability.attributes import get_pool_name

from supervisor._version import __version__
from supervisor.causes import Cause, FlushCause
from supervisor.state import ConnectionState

__all__ = ("CLOSE_REASON", "FLUSH_CAUSE", "TARGET", "instrument")

TARGET = "redis.supervisor.target"
"""The target's name (``host:port/db``, never credentials) on every point."""
CLOSE_REASON = "redis.client.connection.close.reason"
"""redis-py's, go-redis's and node-redis's attribute for why a connection closed."""
CAUSE = "redis.supervisor.cause"
FLUSH_CAUSE = "redis.supervisor.cache.flush.cause"
_CAUSES = [c.value for c in Cause]
_CACHE_COUNTERS = (
    ("hits", "{read}", "Cacheable reads answered from the client-side cache"),
    ("misses", "{read}", "Cacheable reads the cache sent to the server, to store"),
    ("bypassed", "{read}", "Cacheable reads sent to the server while freshness was unproven"),
    ("invalidations", "{key}", "Keys invalidated, by the server or a write through sup.client"),
    ("evictions", "{entry}", "Entries dropped for cache_max_entries or cache_max_bytes"),
)


def instrument(sup: Any, *, meter_provider: MeterProvider | None = None) -> None:
    """Report ``sup``'s state, outages, losses, reconnect attempts, pool, waiters and
    health checks as OTel metrics; after the supervisor closes its points say so."""
    meter = metrics.get_meter("supervisor", __version__, meter_provider=meter_provider)
    pool: Any = getattr(sup, "_pool", None)

    def attributes() -> dict[str, Any]:
        """Read at each collection: a Sentinel target's server moves with its master."""
        return {TARGET: sup.target, DB_SYSTEM_NAME: "redis", **_server(sup)}

    def pool_attributes() -> dict[str, Any]:
        return {**attributes(), DB_CLIENT_CONNECTION_POOL_NAME: get_pool_name(pool)}

    def state(_: CallbackOptions) -> Iterable[Observation]:
        current, base = sup.state, attributes()
        for each in ConnectionState:
            yield Observation(int(each is current), {**base, "redis.supervisor.state": each.value})

    def by_cause(field: str, key: str) -> Any:
        def observe(_: CallbackOptions) -> Iterable[Observation]:
            counts, base = getattr(sup.statistics(), field), attributes()
            for cause in _CAUSES:
                yield Observation(counts.get(cause, 0), {**base, key: cause})

        return observe

    def connections(_: CallbackOptions) -> Iterable[Observation]:
        if pool is None or _redis_py_counts():
            return  # redis-py's own count of this pool is the one series
        used = len(pool._in_use_connections)
        idle = len(pool._available_connections)
        pooled = pool_attributes()
        yield Observation(used, {**pooled, DB_CLIENT_CONNECTION_STATE: "used"})
        yield Observation(idle, {**pooled, DB_CLIENT_CONNECTION_STATE: "idle"})

    def most(_: CallbackOptions) -> Iterable[Observation]:
        if pool is not None:
            yield Observation(pool.max_connections, pool_attributes())

    def pending(_: CallbackOptions) -> Iterable[Observation]:
        if pool is not None:
            yield Observation(sup.statistics().waiters, pool_attributes())

    def dropped(_: CallbackOptions) -> Iterable[Observation]:
        yield Observation(sup.statistics().dropped_events, attributes())

    meter.create_observable_gauge(
        "redis.supervisor.state",
        [state],
        unit="1",
        description="1 for the state the target is in, 0 for the others",
    )
    meter.create_observable_counter(
        "redis.supervisor.outages",
        [by_cause("outages_by_cause", CAUSE)],
        unit="{outage}",
        description="Outages ended, by the cause concluded once the target was back",
    )
    meter.create_observable_counter(
        "redis.supervisor.connection.lost",
        [by_cause("connections_lost_by_cause", CLOSE_REASON)],
        unit="{connection}",
        description="Connections lost while serving, by the cause the supervisor attributed",
    )
    meter.create_observable_counter(
        "redis.supervisor.reconnect.attempts",
        [by_cause("connect_attempts_by_cause", CAUSE)],
        unit="{attempt}",
        description="Failed connection attempts, by cause",
    )
    meter.create_observable_up_down_counter(
        DB_CLIENT_CONNECTION_COUNT,
        [connections],
        unit="{connection}",
        description="Connections of the supervised pool, by state (while redis-py's is off)",
    )
    meter.create_observable_up_down_counter(
        DB_CLIENT_CONNECTION_MAX,
        [most],
        unit="{connection}",
        description="The most connections the supervised pool opens (max_connections)",
    )
    meter.create_observable_up_down_counter(
        DB_CLIENT_CONNECTION_PENDING_REQUESTS,
        [pending],
        unit="{request}",
        description="Commands waiting: at the gate during an outage, or for a connection",
    )
    meter.create_observable_gauge(
        "redis.supervisor.events.dropped",
        [dropped],
        unit="{event}",
        description="Events the current subscribers lost to a full buffer",
    )
    if getattr(sup.config, "client_cache", False):
        _instrument_cache(sup, meter, attributes)
    probe = getattr(sup, "_probe", None)
    if probe is not None:
        duration = meter.create_histogram(
            "redis.supervisor.health_check.duration",
            unit="s",
            description="Round trip of each health check (PING, or INFO on a fresh connection)",
        )
        probe.on_round_trip = lambda seconds: duration.record(seconds, attributes())


def _instrument_cache(sup: Any, meter: Any, attributes: Any) -> None:
    def field(name: str) -> Any:
        def observe(_: CallbackOptions) -> Iterable[Observation]:
            cache = sup.statistics().cache
            if cache is not None:
                value = getattr(cache, name)
                if value is not None:
                    yield Observation(value, attributes())

        return observe

    def flushes(_: CallbackOptions) -> Iterable[Observation]:
        cache = sup.statistics().cache
        if cache is not None:
            base = attributes()
            for cause in FlushCause:
                yield Observation(
                    cache.flushes_by_cause.get(cause.value, 0), {**base, FLUSH_CAUSE: cause.value}
                )

    for name, unit, description in _CACHE_COUNTERS:
        meter.create_observable_counter(
            f"redis.supervisor.cache.{name}", [field(name)], unit=unit, description=description
        )
    meter.create_observable_counter(
        "redis.supervisor.cache.flushes",
        [flushes],
        unit="{flush}",
        description="Times the client-side cache dropped every entry, by cause",
    )
    meter.create_observable_up_down_counter(
        "redis.supervisor.cache.entries", [field("entries")], unit="{entry}",
        description="Entries in the client-side cache",
    )  # fmt: skip
    meter.create_observable_up_down_counter(
        "redis.supervisor.cache.size", [field("bytes")], unit="By",
        description="Memory the client-side cache's entries hold (estimated)",
    )  # fmt: skip
    meter.create_observable_gauge(
        "redis.supervisor.cache.staleness", [field("staleness")], unit="s",
        description="Seconds since the moment up to which the cache is proven complete",
    )  # fmt: skip


def _server(sup: Any) -> dict[str, Any]:
    kwargs = getattr(sup, "_ctx", None)
    kwargs = kwargs.connection_kwargs if kwargs is not None else sup.config.connection_kwargs()
    if sup.config.cluster_nodes:
        host, _, port = sup.config.cluster_nodes[0].rpartition(":")
        return {SERVER_ADDRESS: host, SERVER_PORT: int(port), DB_NAMESPACE: "0"}
    if "path" in kwargs:
        return {SERVER_ADDRESS: kwargs["path"], DB_NAMESPACE: str(kwargs.get("db", 0))}
    return {
        SERVER_ADDRESS: kwargs.get("host", "localhost"),
        SERVER_PORT: int(kwargs.get("port", 6379)),
        DB_NAMESPACE: str(kwargs.get("db", 0)),
    }


def _redis_py_counts() -> bool:
    from redis.observability.providers import get_observability_instance

    try:
        return bool(get_observability_instance().is_enabled())
    except Exception:
        return False
