"""The supervisor's metrics in an app's OpenTelemetry pipeline (the ``otel`` extra),
read from an in-memory reader after real events on a real server."""

from __future__ import annotations

import anyio
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from supervisor import Cause, ConnectionLost, ConnectionState
from supervisor.otel import TARGET, instrument
from tests.helpers.events import until


def points(reader: InMemoryMetricReader) -> dict[str, dict[frozenset, float]]:
    """metric name -> {attributes: value} of one collection."""
    out: dict[str, dict[frozenset, float]] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    attributes = frozenset(dict(point.attributes).items())
                    out.setdefault(metric.name, {})[attributes] = point.value
    return out


async def test_otel_metrics_follow_state_losses_and_pool(server, supervise):
    """State (1 for READY), a CLIENT KILL counted under redis.client.connection.closed
    with its attributed cause, the pool by state, the waiters, no credentials."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    admin = server.admin()
    async with supervise(server.url) as sup:
        instrument(sup, meter_provider=provider)
        await sup.wait_for(ConnectionState.READY, timeout=5)
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(sup.client.get, "k")
        async with sup.subscribe() as events:
            assert admin.client_kill_filter(_type="normal", skipme=True) >= 2
            assert await sup.client.get("k") is None
            lost = await until(events, lambda e: isinstance(e, ConnectionLost))
        seen = points(reader)
        target = (TARGET, sup.target)
        state = seen["redis.supervisor.state"]
        assert state[frozenset({target, ("redis.supervisor.state", "ready")})] == 1
        assert state[frozenset({target, ("redis.supervisor.state", "reconnecting")})] == 0
        closed = seen["redis.client.connection.closed"]
        reason = ("redis.client.connection.close_reason", lost.cause.value)
        assert lost.cause is Cause.SERVER_CLOSED
        assert closed[frozenset({target, reason})] >= 1
        pool = seen["db.client.connection.count"]
        by_state = {dict(a)["db.client.connection.state"]: v for a, v in pool.items()}
        assert set(by_state) == {"idle", "used"} and by_state["idle"] >= 1
        assert seen["db.client.connection.pending_requests"][frozenset({target})] == 0
        assert seen["redis.supervisor.health_check.latency"][frozenset({target})] > 0
    assert (
        points(reader)["redis.supervisor.state"][
            frozenset({target, ("redis.supervisor.state", "closed")})
        ]
        == 1
    )
    admin.close()
