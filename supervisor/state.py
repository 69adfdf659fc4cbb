"""The connection state machine: its states and the moves between them.

Pure and synchronous. ``Supervisor._transition`` is the only code that
changes a supervisor's state, and it asks ``check_transition`` first.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

__all__ = ("ConnectionState", "check_transition")


class ConnectionState(enum.Enum):
    """Where a supervised target stands, as the application should see it."""

    CONNECTING = "connecting"
    """Starting: no connection has worked yet."""
    READY = "ready"
    """Health checks pass; commands run."""
    UNHEALTHY = "unhealthy"
    """The server accepts connections but does not answer health checks."""
    OVERLOADED = "overloaded"
    """The server turns new connections away (maxclients) while existing ones work:
    commands run on those or wait for one to be released; only the prober dials,
    one attempt at a time."""
    RECONNECTING = "reconnecting"
    """The connection was lost; one prober reconnects, as soon as the evidence allows."""
    CLOSED = "closed"
    """The supervisor stopped; nothing runs any more."""


_S = ConnectionState
ALLOWED: Final[Mapping[ConnectionState, frozenset[ConnectionState]]] = {
    _S.CONNECTING: frozenset({_S.READY, _S.UNHEALTHY, _S.RECONNECTING, _S.CLOSED}),
    _S.READY: frozenset({_S.UNHEALTHY, _S.OVERLOADED, _S.RECONNECTING, _S.CLOSED}),
    _S.UNHEALTHY: frozenset({_S.READY, _S.RECONNECTING, _S.CLOSED}),
    _S.OVERLOADED: frozenset({_S.READY, _S.UNHEALTHY, _S.RECONNECTING, _S.CLOSED}),
    _S.RECONNECTING: frozenset({_S.READY, _S.UNHEALTHY, _S.CLOSED}),
    _S.CLOSED: frozenset(),
}


def check_transition(previous: ConnectionState, current: ConnectionState) -> None:
    """Raise ``RuntimeError`` for a move the state machine does not allow."""
    if current not in ALLOWED[previous]:
        raise RuntimeError(f"illegal transition {previous.value} -> {current.value}")
