"""A child process for the OTel test: redis-py's observability and ``instrument(sup)`` on
one global ``MeterProvider`` (an OTel global can be set once per process), a restart and a
``CLIENT KILL`` on a real server, then every exported point as one JSON line each.

The server is started before OpenTelemetry, and restarted and commanded over raw sockets,
so every point comes from the supervisor and the client the app uses.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys

from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from redis.observability.attributes import get_pool_name

from supervisor.testing import BinaryServer

BOUND = 20.0


def raw(port: int, *args: str) -> bytes:
    """One command over a bare socket: nothing recorded by redis-py."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(
            f"*{len(args)}\r\n".encode() + b"".join(f"${len(a)}\r\n{a}\r\n".encode() for a in args)
        )
        return s.recv(65536)


async def main() -> None:
    server = BinaryServer("--timeout", "3")  # the idle refresh PINGs pooled connections
    server.start()
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    from redis.observability import OTelConfig, get_observability_instance

    get_observability_instance().init(OTelConfig())
    from supervisor import ConnectionLost, ConnectionState, Supervisor, SupervisorConfig
    from supervisor.otel import instrument

    config = SupervisorConfig(url=server.url, health_check_interval=0.2, health_check_timeout=0.5)
    async with Supervisor(config) as sup:
        instrument(sup)
        await sup.wait_for(ConnectionState.READY, timeout=BOUND)
        await asyncio.gather(*(sup.client.incr("n") for _ in range(20)))
        server.kill()
        await sup.wait_for(ConnectionState.RECONNECTING, timeout=BOUND)
        server.start(wait=False)
        await sup.wait_for(ConnectionState.READY, timeout=BOUND)
        await asyncio.gather(*(sup.client.get("k") for _ in range(20)))
        async with sup.subscribe() as events:
            raw(server.port, "CLIENT", "KILL", "TYPE", "normal")
            await asyncio.gather(*(sup.client.get("k") for _ in range(20)))
            async with asyncio.timeout(BOUND):
                async for event in events:
                    if isinstance(event, ConnectionLost):
                        break
        await asyncio.gather(*(sup.client.get("k") for _ in range(20)))
        rounds = sup.statistics().health_checks
        # idle refreshes (every 1 s) take connections and give them back: wait for 8 rounds
        async with asyncio.timeout(BOUND):
            while sup.statistics().health_checks < rounds + 8:  # noqa: ASYNC110  (a counter)
                await asyncio.sleep(0.05)
        print(json.dumps({"pool": get_pool_name(sup._pool)}))
        data = reader.get_metrics_data()
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    kind = type(metric.data).__name__
                    for point in metric.data.data_points:
                        value = getattr(point, "value", None)
                        if value is None:
                            value = {"count": point.count, "sum": point.sum}
                        line = [scope.scope.name, metric.name, metric.unit, kind]
                        print(json.dumps([*line, dict(point.attributes), value]))
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
