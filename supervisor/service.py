"""The standalone process: supervise named targets, log every event, serve
``/health`` and ``/metrics``, and stop cleanly on SIGTERM or SIGINT.

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

from supervisor.cluster import ClusterSupervisor
from supervisor.httpserver import Response, serve
from supervisor.metrics import Metrics
from supervisor.monitor import Monitor
from supervisor.service_config import ServiceConfig
from supervisor.state import ConnectionState
from supervisor.supervisor import Supervisor

AnySupervisor = Supervisor | ClusterSupervisor

__all__ = ("health_response", "run")

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
                tg.start_soon(_count_events, name, sup, metrics)
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


async def _count_events(name: str, sup: AnySupervisor, metrics: Metrics) -> None:
    async with sup.subscribe(max_buffer=1000) as events:
        async for event in events:
            metrics.record(name, event)


_SERVING = (ConnectionState.READY, ConnectionState.OVERLOADED)


def health_response(supervisors: Mapping[str, AnySupervisor]) -> tuple[int, dict[str, object]]:
    """200 when every target serves commands (READY, or OVERLOADED: commands run on the
    connections that exist), else 503; the body names each state and cause (and, for a
    cluster, each node)."""
    targets: dict[str, dict[str, object]] = {}
    for name, sup in supervisors.items():
        targets[name] = {
            "target": sup.target,
            "state": sup.state.value,
            "cause": sup.cause.value if sup.cause else None,
            "detail": sup.detail,
        }
        if isinstance(sup, ClusterSupervisor):
            targets[name]["nodes"] = {
                address: {"role": n.role, "up": n.up, "slots": n.slots, "detail": n.detail}
                for address, n in sup.nodes.items()
            }
    ready = all(sup.state in _SERVING for sup in supervisors.values())
    return (200 if ready else 503), {
        "status": "ready" if ready else "unavailable",
        "targets": targets,
    }


def _handler(
    supervisors: Mapping[str, AnySupervisor], metrics: Metrics
) -> Callable[[str], Response]:
    def handle(path: str) -> Response:
        if path == "/health":
            status, body = health_response(supervisors)
            return Response(status, json.dumps(body).encode())
        if path == "/metrics":
            return Response(200, metrics.render(), "text/plain; version=0.0.4; charset=utf-8")
        return Response(404, b'{"error": "try /health or /metrics"}')

    return handle
