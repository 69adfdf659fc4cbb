"""One supervisor's parts without the coordinator: real gate, pool, probe and schedule
against a real server, and a ``Board`` in the coordinator's place that records every
transition and event the parts ask for."""

from __future__ import annotations

import random
import time
from typing import Any

from supervisor.causes import Cause
from supervisor.config import SupervisorConfig
from supervisor.connection.gate import Gate
from supervisor.connection.losses import Loss
from supervisor.connection.pool import SupervisedConnectionPool, connection_class_for
from supervisor.connection.probe import Probe
from supervisor.connection.schedule import Schedule
from supervisor.errors import Unavailable
from supervisor.events import Event
from supervisor.state import ConnectionState
from supervisor.targets.context import Context
from supervisor.targets.sentinel import SentinelWatcher
from supervisor.testing import free_port


class Board:
    """Stands where the coordinator stands: the state, and what the parts asked of it."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.state = ConnectionState.CONNECTING
        self.cause: Cause | None = None
        self.detail = "not connected yet"
        self.changed_at = time.monotonic()
        self.transitions: list[tuple[ConnectionState, Cause | None, str]] = []
        self.events: list[tuple[type[Event], dict[str, Any]]] = []
        self.gate = Gate(max_waiters=10, fail_fast=False)
        self.lost: list[Loss] = []

    def transition(self, new: ConnectionState, cause: Cause | None, detail: str) -> None:
        self.transitions.append((new, cause, detail))
        if new is not self.state:
            self.state, self.cause, self.detail = new, cause, detail
            self.changed_at = time.monotonic()

    def reason(self, cause: Cause, detail: str) -> None:
        self.cause, self.detail = cause, detail

    def publish(self, kind: type[Any], **fields: Any) -> Any:
        self.events.append((kind, fields))
        return None

    def kinds(self) -> list[str]:
        return [kind.__name__ for kind, _ in self.events]

    # the pool's watcher
    command_deadline = 5.0

    def connection_lost(self, loss: Loss) -> None:
        self.lost.append(loss)

    def reply_claims(self, cause: Cause, error: str) -> None:
        pass

    def unavailable(self, why: str) -> Unavailable:
        return Unavailable(why)


def parts_context(url: str, **settings: Any) -> tuple[Context, Board]:
    config = SupervisorConfig(url=url, **settings)
    board = Board(config.target)
    kwargs = config.connection_kwargs()
    connection_class = connection_class_for(kwargs)
    pool = SupervisedConnectionPool(
        watcher=board, connection_class=connection_class, max_connections=4, **kwargs
    )
    probe_kwargs = {**kwargs, "socket_timeout": None}
    ctx = Context(
        config=config,
        status=board,
        publish=board.publish,
        transition=board.transition,
        reason=board.reason,
        gate=board.gate,
        pool=pool,
        probe=Probe(
            connection_class,
            probe_kwargs,
            timeout=config.health_check_timeout,
            connect_timeout=config.socket_connect_timeout,
            idle_timeout=config.server_idle_timeout,
        ),
        schedule=Schedule(
            refused_interval=config.refused_interval,
            backoff_base=config.backoff_base,
            backoff_cap=config.backoff_cap,
            jitter=config.backoff_jitter,
            auth_retry_interval=config.auth_retry_interval,
            rng=random.Random(7),
        ),
        mux=None,
        sentinel=None,
        connection_kwargs=kwargs,
        probe_kwargs=probe_kwargs,
    )
    return ctx, board


async def close(ctx: Context) -> None:
    await ctx.probe.close()
    await ctx.pool.close()


def silent_sentinels() -> SentinelWatcher:
    """Sentinels at a port nothing listens on: every discovery fails."""
    return SentinelWatcher(
        [("127.0.0.1", free_port())],
        "mymaster",
        role="master",
        timeout=0.5,
        connect_timeout=0.5,
        backoff_base=0.05,
        backoff_cap=0.1,
    )
