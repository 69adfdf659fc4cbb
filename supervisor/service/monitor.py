"""Server-side monitoring of one target: the seed's ``monitor_connections``, done properly.

At an interval it samples ``INFO clients``, ``INFO stats`` and (where the
server allows ``CONFIG``) the limits that close connections, publishes them as
``ServerSampled`` events, and raises ``Alert`` events when a threshold from
the config is crossed, and again when it clears.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import anyio
from redis.exceptions import RedisError, ResponseError

from supervisor.connection import replies
from supervisor.connection.quiet import quiet_task
from supervisor.errors import SupervisorError
from supervisor.events import Alert, ServerSampled
from supervisor.targets.single import Supervisor

__all__ = ("Monitor", "MonitorConfig")


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitorConfig:
    """Sampling interval and alert thresholds.

    Args:
        interval: seconds between samples.
        clients_ratio: alert when connected_clients >= this share of maxclients.
        rejected_connections: alert when rejected_connections grew by at least this.
        blocked_clients: alert when at least this many clients are blocked.
        evicted_clients: alert when evicted_clients grew by at least this.
    """

    interval: float = 10.0
    clients_ratio: float = 0.8
    rejected_connections: int = 1
    blocked_clients: int = 50
    evicted_clients: int = 1


_CONFIG_KEYS = ("maxclients", "timeout", "tcp-keepalive", "client-output-buffer-limit")


class Monitor:
    """Samples one supervised target; run ``await monitor.run()`` in a task group."""

    def __init__(self, sup: Supervisor, config: MonitorConfig) -> None:
        self._sup = sup
        self._config = config
        self._config_allowed = True
        self._previous: ServerSampled | None = None
        self._firing: set[str] = set()
        self.latest: ServerSampled | None = None

    async def run(self) -> None:
        quiet_task()  # its INFO and CONFIG GET are not the app's commands
        while True:
            try:
                sample = await self.sample_once()
            except (RedisError, SupervisorError) as exc:
                self._sup._log.log(logging.DEBUG, "monitor_sample_skipped", error=str(exc))
            else:
                self._check(sample)
            await anyio.sleep(self._config.interval)

    async def sample_once(self) -> ServerSampled:
        client = self._sup.client
        clients: dict[str, Any] = await client.info("clients")
        stats: dict[str, Any] = await client.info("stats")
        settings = await self._settings()
        sample = self._sup._publish(
            ServerSampled,
            connected_clients=int(clients.get("connected_clients", 0)),
            blocked_clients=int(clients.get("blocked_clients", 0)),
            maxclients=replies.to_int(settings.get("maxclients")),
            rejected_connections=int(stats.get("rejected_connections", 0)),
            evicted_clients=replies.to_int(stats.get("evicted_clients")),
            total_connections_received=int(stats.get("total_connections_received", 0)),
            timeout=replies.to_int(settings.get("timeout")),
            tcp_keepalive=replies.to_int(settings.get("tcp-keepalive")),
            client_output_buffer_limit=settings.get("client-output-buffer-limit"),
        )
        self._previous, self.latest = self.latest, sample
        return sample

    async def _settings(self) -> dict[str, str]:
        if not self._config_allowed:
            return {}
        try:
            raw = await self._sup.client.config_get(*_CONFIG_KEYS)
        except ResponseError as exc:
            self._config_allowed = False
            message = (
                f"CONFIG GET is not allowed on this server ({exc}); monitoring carries on "
                "with INFO only (maxclients, timeout and buffer limits are unknown)"
            )
            self._sup._publish(Alert, name="config_not_allowed", firing=True, detail=message)
            return {}
        return replies.pairs(raw)

    def _check(self, sample: ServerSampled) -> None:
        """Level alerts fire when entered and clear when left; counter alerts fire on
        every sample in which their counter grew past the threshold."""
        c, previous = self._config, self._previous
        levels: dict[str, str | None] = {
            "clients_near_maxclients": None,
            "blocked_clients": (
                f"{sample.blocked_clients} clients blocked (BLPOP, WAIT...): check their timeouts"
                if sample.blocked_clients >= c.blocked_clients
                else None
            ),
        }
        if sample.maxclients and sample.connected_clients >= c.clients_ratio * sample.maxclients:
            levels["clients_near_maxclients"] = (
                f"{sample.connected_clients} of maxclients {sample.maxclients} connected; new "
                "connections are refused at the limit: raise maxclients or use fewer connections"
            )
        for name, message in levels.items():
            if message is not None and name not in self._firing:
                self._firing.add(name)
                self._alert(name, True, message)
            elif message is None and name in self._firing:
                self._firing.discard(name)
                self._alert(name, False, f"{name} is back to normal")
        if previous is None:
            return
        rejected = sample.rejected_connections - previous.rejected_connections
        if rejected >= c.rejected_connections:
            self._alert(
                "rejected_connections",
                True,
                f"rejected_connections grew by {rejected} (now {sample.rejected_connections}): "
                f"maxclients {sample.maxclients or '?'} was hit",
            )
        if sample.evicted_clients is not None and previous.evicted_clients is not None:
            evicted = sample.evicted_clients - previous.evicted_clients
            if evicted >= c.evicted_clients:
                self._alert(
                    "evicted_clients",
                    True,
                    f"evicted_clients grew by {evicted}: the server closed clients to respect "
                    "maxmemory-clients",
                )

    def _alert(self, name: str, firing: bool, message: str) -> None:
        self._sup._publish(Alert, name=name, firing=firing, detail=message)
