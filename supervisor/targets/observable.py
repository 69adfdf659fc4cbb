"""What every supervisor shares: the state machine's one setter and the event stream.

``Observable`` numbers, publishes and logs events (each event is one
structured log line), hands subscribers a snapshot first, and lets callers
wait for a state. ``Supervisor`` and ``ClusterSupervisor`` build on it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio

from supervisor.causes import Cause
from supervisor.events import (
    Alert,
    CacheFlushed,
    ConnectionLost,
    Event,
    HealthCheckFailed,
    MasterChanged,
    NodeStateChanged,
    ReconnectScheduled,
    Resubscribed,
    ServerSampled,
    Snapshot,
    StateChanged,
    TopologyChanged,
)
from supervisor.log import Log
from supervisor.state import ConnectionState, check_transition
from supervisor.targets.hub import Hub, Subscription

__all__ = ("Observable",)

E = TypeVar("E", bound=Event)

_LOG_AS: dict[type[Any], tuple[str, int]] = {
    StateChanged: ("state_changed", logging.WARNING),
    ReconnectScheduled: ("reconnect_scheduled", logging.WARNING),
    ConnectionLost: ("connection_lost", logging.WARNING),
    HealthCheckFailed: ("health_check_failed", logging.WARNING),
    Resubscribed: ("resubscribed", logging.WARNING),
    MasterChanged: ("master_changed", logging.WARNING),
    NodeStateChanged: ("node_state_changed", logging.WARNING),
    TopologyChanged: ("topology_changed", logging.WARNING),
    # every monitor interval: telemetry for /metrics, not news (run --log-level debug)
    ServerSampled: ("server_sampled", logging.DEBUG),
    Alert: ("alert", logging.WARNING),
    CacheFlushed: ("cache_flushed", logging.INFO),
}
_CALM_STATES = (ConnectionState.READY, ConnectionState.CLOSED)


class Observable:
    def __init__(self, target: str, *, event_buffer: int) -> None:
        self.target = target
        self._log = Log(target)
        self._event_buffer = event_buffer
        self._hub = Hub()
        self._seq = 0
        self._state = ConnectionState.CONNECTING
        self._cause: Cause | None = None
        self._detail = "not connected yet"
        self._changed_at = time.monotonic()
        self._changed: anyio.Event | None = None

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def cause(self) -> Cause | None:
        """Why the target is not READY (or what the last outage was)."""
        return self._cause

    @property
    def detail(self) -> str:
        return self._detail

    @property
    def changed_at(self) -> float:
        """``time.monotonic()`` of the last change of state."""
        return self._changed_at

    async def wait_for(self, state: ConnectionState, timeout: float | None = None) -> None:
        """Wait until the target is in ``state``.

        Raises:
            TimeoutError: ``timeout`` seconds passed first; the message says
                where the target stands and why.
            RuntimeError: the supervisor closed first.
        """
        try:
            with anyio.fail_after(timeout):
                while self._state is not state:
                    if self._state is ConnectionState.CLOSED:
                        raise RuntimeError(f"supervisor of {self.target} is closed")
                    await self._state_changed().wait()
        except TimeoutError:
            cause = f", cause {self._cause.value}" if self._cause else ""
            raise TimeoutError(
                f"{self.target} not {state.value} after {timeout} s: it is "
                f"{self._state.value}{cause}: {self._detail}"
            ) from None

    @asynccontextmanager
    async def subscribe(self, max_buffer: int | None = None) -> AsyncGenerator[Subscription]:
        """Receive a ``Snapshot`` of the current state, then every event.

        Each subscriber has its own buffer of ``max_buffer`` events (default
        ``config.event_buffer``); when it is full the oldest is dropped and
        ``events.dropped`` counts it. Leaving the block unsubscribes.
        """
        subscription = Subscription(max_buffer or self._event_buffer)
        self._seq += 1
        self._hub.add(
            subscription,
            Snapshot(
                seq=self._seq,
                at=time.time(),
                target=self.target,
                state=self._state,
                cause=self._cause,
                detail=self._detail,
            ),
        )
        try:
            yield subscription
        finally:
            self._hub.remove(subscription)

    def _set_state(self, new: ConnectionState, cause: Cause | None, detail: str) -> bool:
        """The one place the state changes; False when ``new`` is the current state."""
        previous = self._state
        if new is previous:
            return False
        check_transition(previous, new)
        self._state, self._cause, self._detail = new, cause, detail
        self._changed_at = time.monotonic()
        if self._changed is not None:
            self._changed.set()
            self._changed = None
        self._publish(StateChanged, previous=previous, current=new, cause=cause, detail=detail)
        return True

    def _set_reason(self, cause: Cause, detail: str) -> None:
        """Why the target is where it is, learned without a change of state."""
        self._cause, self._detail = cause, detail

    def _state_changed(self) -> anyio.Event:
        if self._changed is None:
            self._changed = anyio.Event()
        return self._changed

    def _publish(self, kind: type[E], **fields: Any) -> E:
        """Number, publish and log one event: every event is one structured log line."""
        self._seq += 1
        event = kind(seq=self._seq, at=time.time(), target=self.target, **fields)
        self._hub.publish(event)
        name, level = _LOG_AS[type(event)]
        if (isinstance(event, StateChanged) and event.current in _CALM_STATES) or (
            isinstance(event, Alert) and not event.firing
        ):
            level = logging.INFO
        self._log.log(
            level, name, seq=event.seq, **{k: getattr(v, "value", v) for k, v in fields.items()}
        )
        return event
