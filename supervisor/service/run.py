"""The standalone process: supervise named targets, log every event, serve
``/health`` (also ``/ready``) and ``/metrics``, and stop cleanly on SIGTERM or SIGINT.

``run()`` is the same coroutine the CLI and an embedding application use;
signal handlers are installed only when no ``shutdown_trigger`` is given.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack

import anyio
import structlog

from supervisor.integrations.prometheus import Metrics
from supervisor.service.config import ServiceConfig
from supervisor.service.http import Response, serve
from supervisor.service.monitor import Monitor
from supervisor.targets.cluster import ClusterSupervisor
from supervisor.targets.readiness import AnySupervisor, health_response
from supervisor.targets.single import Supervisor

__all__ = ("run",)

log = structlog.get_logger("supervisor")


async def run(
    config: ServiceConfig, *, shutdown_trigger: Callable[[], Awaitable[object]] | None = None
) -> None:
    """Run until ``shutdown_trigger()`` returns, or until SIGTERM/SIGINT.

    Stopping is bounded: each supervisor closes its pool within 5 s.
    """
    async with AsyncExitStack() as stack:
        supervisors: dict[str, AnySupervisor] = {}
        for name, target in config.targets.items():
            sup: AnySupervisor = (
                ClusterSupervisor(target) if target.cluster_nodes else Supervisor(target)
            )
            supervisors[name] = await stack.enter_async_context(sup)
        metrics = Metrics(supervisors)
        async with anyio.create_task_group() as tg:
            for name, sup in supervisors.items():
                if isinstance(sup, Supervisor):
                    monitor = Monitor(sup, config.monitor)
                    metrics.monitors[name] = monitor
                    tg.start_soon(monitor.run)
            if config.http.enabled:
                port = await tg.start(
                    serve, config.http.host, config.http.port, _handler(supervisors, metrics)
                )
                log.info(
                    "http_listening", host=config.http.host, port=port, targets=list(supervisors)
                )
            await (shutdown_trigger or _wait_for_signal)()
            tg.cancel_scope.cancel()
    log.info("stopped")


async def _wait_for_signal() -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for received in signals:
            log.info("shutdown", signal=signal.Signals(received).name)
            return


def _handler(
    supervisors: Mapping[str, AnySupervisor], metrics: Metrics
) -> Callable[[str], Response]:
    def handle(path: str) -> Response:
        if path in ("/health", "/ready"):
            # the same answer: 200 while every target serves commands (a readiness probe)
            status, body = health_response(supervisors)
            return Response(status, json.dumps(body).encode())
        if path == "/metrics":
            return Response(200, metrics.render(), "text/plain; version=0.0.4; charset=utf-8")
        return Response(404, b'{"error": "try /health, /ready or /metrics"}')

    return handle
