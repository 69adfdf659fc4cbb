"""What the command path tells the supervisor when a connection breaks.

Reporting is synchronous and allocation-light: the command path records a
``Loss`` and moves on; attribution happens later in the supervisor's task.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from supervisor.causes import Cause
from supervisor.connection.gate import Gate
from supervisor.errors import Unavailable

__all__ = ("Loss", "Reported", "Watcher", "describe")


class Reported:
    """Mixed into an error whose loss was reported once already, by the connection
    it broke, for every command it failed (a multiplexed connection fails many)."""


@dataclass(frozen=True, slots=True)
class Loss:
    """One broken connection: the error, its idle time, whether a command failed.

    ``cause`` is set when the error alone names it (a READONLY reply);
    ``output_buffer_*`` carry what was sampled of a pub/sub connection's
    output buffer before it was lost.
    """

    error: str
    idle_for: float | None
    command_failed: bool
    cause: Cause | None = None
    output_buffer_seen: int | None = None
    output_buffer_limit: str | None = None
    stalled: bool = False
    """The client gave up waiting for a reply: nobody closed the connection."""
    turned_away: bool = False
    """A new connection was accepted and then refused (maxclients, a reset during the
    handshake): the server may be up but full."""
    client_class: str = "normal"
    """``pubsub`` for a pub/sub handle's connection: the class whose limits apply."""


class Watcher(Protocol):
    """The part of a supervisor that the pool and the client talk to."""

    gate: Gate

    @property
    def command_deadline(self) -> float: ...

    def connection_lost(self, loss: Loss) -> None: ...

    def reply_claims(self, cause: Cause, error: str) -> None:
        """An error reply says the target is loading or a replica: check it."""
        ...

    def unavailable(self, why: str) -> Unavailable:
        """The error for a command that cannot be served, naming the target's state."""
        ...


def describe(exc: BaseException) -> str:
    """A one-line description of an error, safe for logs (no secrets in redis-py's texts)."""
    text = str(exc).strip() or "no message"
    name = type(exc).__name__.lstrip("_")
    return f"{name}: {text}"
