"""The supervisor's metrics in an app's OpenTelemetry pipeline (the ``otel`` extra),
read from an in-memory reader after real events on a real server."""

from __future__ import annotations

import anyio
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from supervisor import Cause, ConnectionLost, ConnectionState
from supervisor.otel import CLOSE_REASON, TARGET, instrument
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
                    value = getattr(point, "value", None)
                    if value is None:  # a histogram: how many it recorded
                        value = point.count
                    out.setdefault(metric.name, {})[attributes] = value
    return out


async def test_otel_metrics_follow_state_losses_and_pool(server, supervise):
    """State (1 for READY), a CLIENT KILL counted under redis.supervisor.connection.lost
    with its attributed cause in redis-py's close-reason attribute, the pool by state with
    redis-py's pool name, the waiters and the pool's bound; every point carries the
    semantic conventions' server attributes, and no credentials."""
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
        base = {
            (TARGET, sup.target),
            ("db.system.name", "redis"),
            ("server.address", server.host),
            ("server.port", server.port),
            ("db.namespace", "0"),
        }
        state = seen["redis.supervisor.state"]
        assert state[frozenset({*base, ("redis.supervisor.state", "ready")})] == 1
        assert state[frozenset({*base, ("redis.supervisor.state", "reconnecting")})] == 0
        lost_points = seen["redis.supervisor.connection.lost"]
        assert lost.cause is Cause.SERVER_CLOSED
        assert lost_points[frozenset({*base, (CLOSE_REASON, "server_closed")})] >= 1
        assert lost_points[frozenset({*base, (CLOSE_REASON, "idle_timeout")})] == 0
        pool = seen["db.client.connection.count"]  # redis-py's observability is off here
        by_state = {dict(a)["db.client.connection.state"]: v for a, v in pool.items()}
        assert set(by_state) == {"idle", "used"} and by_state["idle"] >= 1
        named = {(k, v) for a in pool for k, v in a if k == "db.client.connection.pool.name"}
        [(_, pool_name)] = named
        pooled = frozenset({*base, ("db.client.connection.pool.name", pool_name)})
        assert seen["db.client.connection.pending_requests"][pooled] == 0
        assert seen["db.client.connection.max"][pooled] == sup.config.max_connections
    assert (
        points(reader)["redis.supervisor.state"][
            frozenset({*base, ("redis.supervisor.state", "closed")})
        ]
        == 1
    )
    admin.close()


def test_beside_redis_pys_own_observability_one_truth_and_no_error_the_app_never_saw():
    """Both instrumentations on one global MeterProvider (in a child process: an OTel
    global is set once), through a restart and a CLIENT KILL: redis-py counts no error
    (the app saw none: the supervisor's reconnects and re-sent reads are not the app's),
    its connection count of the pool never goes negative and is the only one, and the
    supervisor's points follow the semantic conventions."""
    import json
    import subprocess
    import sys

    from opentelemetry.semconv._incubating.metrics.db_metrics import (
        DB_CLIENT_CONNECTION_COUNT,
        DB_CLIENT_CONNECTION_MAX,
        DB_CLIENT_CONNECTION_PENDING_REQUESTS,
    )

    from tests.helpers.child import ROOT

    done = subprocess.run(
        [sys.executable, "-m", "tests.helpers.otel_child"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    pool_name = lines[0]["pool"]
    rows = [
        (scope, name, unit, kind, attrs, value)
        for scope, name, unit, kind, attrs, value in lines[1:]
    ]
    errors = [r for r in rows if r[1] == "redis.client.errors"]
    assert errors == [], errors
    counts = [
        r
        for r in rows
        if r[1] == DB_CLIENT_CONNECTION_COUNT
        and r[4].get("db.client.connection.pool.name") == pool_name
    ]
    assert counts and {r[0] for r in counts} == {"redis-py"}, counts
    assert all(r[5] >= 0 for r in counts), counts
    ours = [r for r in rows if r[0] == "supervisor"]
    for _, name, _, _, attrs, _ in ours:
        assert attrs["db.system.name"] == "redis" and attrs["db.namespace"] == "0", name
        assert {"server.address", "server.port"} <= attrs.keys(), name
    by_name = {r[1]: r for r in ours}
    for name in (DB_CLIENT_CONNECTION_MAX, DB_CLIENT_CONNECTION_PENDING_REQUESTS):
        assert by_name[name][4]["db.client.connection.pool.name"] == pool_name
    assert by_name["redis.supervisor.health_check.duration"][3] == "Histogram"
    outages = {
        r[4]["redis.supervisor.cause"]: r[5] for r in ours if r[1] == "redis.supervisor.outages"
    }
    assert outages["server_restart"] == 1 and sum(outages.values()) == 1, outages
    lost = {r[4][CLOSE_REASON]: r[5] for r in ours if r[1] == "redis.supervisor.connection.lost"}
    assert lost["server_closed"] >= 1, lost
