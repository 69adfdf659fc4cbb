"""What the parts of one ``Supervisor`` share: its machinery, its findings, its levers.

The health round, the prober, overload handling and the Sentinel locator each hold
this one record. They read the state through ``status`` and change it only through
``transition``, the coordinator's one place that changes it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import anyio

from supervisor.causes import Cause, fix_for
from supervisor.config import SupervisorConfig
from supervisor.connection.autopipeline import Multiplexer
from supervisor.connection.gate import Admission, Gate
from supervisor.connection.losses import Loss
from supervisor.connection.pool import SupervisedConnectionPool
from supervisor.connection.probe import Probe, ServerFacts
from supervisor.connection.schedule import Schedule, Showed
from supervisor.errors import Unavailable
from supervisor.events import Alert, Event
from supervisor.state import ConnectionState
from supervisor.targets.sentinel import SentinelWatcher

__all__ = ("DOWN", "SERVING", "Context", "Status")

E = TypeVar("E", bound=Event)

SERVING = (ConnectionState.READY, ConnectionState.UNHEALTHY, ConnectionState.OVERLOADED)
DOWN = (ConnectionState.CONNECTING, ConnectionState.RECONNECTING)

_REFUSED_AT_ONCE = frozenset({Cause.AUTH, Cause.TLS, Cause.SETUP})
"""Causes that waiting cannot fix: commands fail at once instead of waiting them out."""


class Status(Protocol):
    """The state as the parts read it (``Observable`` provides it)."""

    target: str

    @property
    def state(self) -> ConnectionState: ...

    @property
    def cause(self) -> Cause | None: ...

    @property
    def detail(self) -> str: ...

    @property
    def changed_at(self) -> float: ...


class Publish(Protocol):
    def __call__(self, kind: type[E], **fields: Any) -> E: ...


class Context:
    """One supervised target as its parts see it."""

    def __init__(
        self,
        *,
        config: SupervisorConfig,
        status: Status,
        publish: Publish,
        transition: Callable[[ConnectionState, Cause | None, str], None],
        reason: Callable[[Cause, str], None],
        gate: Gate,
        pool: SupervisedConnectionPool,
        probe: Probe,
        schedule: Schedule,
        mux: Multiplexer | None,
        sentinel: SentinelWatcher | None,
        connection_kwargs: dict[str, Any],
        probe_kwargs: dict[str, Any],
    ) -> None:
        self.config = config
        self.status = status
        self.publish = publish
        self.transition = transition
        self.reason = reason
        """Record why the target is where it is, without a change of state."""
        self.gate = gate
        self.pool = pool
        self.probe = probe
        self.schedule = schedule
        self.mux = mux
        self.sentinel = sentinel
        self.connection_kwargs = connection_kwargs
        self.probe_kwargs = probe_kwargs
        self.pubsubs: set[Any] = set()
        # what the checks learned and have yet to judge
        self.facts: ServerFacts | None = None
        self.losses: list[Loss] = []
        self.claims: dict[Cause, str] = {}
        """What error replies claimed since the last check (LOADING, READONLY), with the
        reply: the next check confirms or refutes it."""
        self.turned_away: Loss | None = None
        """The last new connection turned away since the gate last opened."""
        self.failed_commands = 0
        self.master_seen = False
        """The target answered as a master once: a READONLY from it now means a failover."""
        self.situation: tuple[Cause, Showed, str] | None = None
        """What the last failed attempt showed, and from where: one event per situation."""
        self.alerted: set[str] = set()
        # when the background task acts next
        self.round_due = 0.0
        self.dial_due = 0.0
        self.attempt_due = 0.0
        self.wake: anyio.Event | None = None
        """Set when a command failed: check now (made on entering: anyio needs a loop)."""
        self.hint: anyio.Event | None = None
        """Set on evidence that the target may be back: end the prober's wait now."""
        # counters for statistics()
        self.connect_attempts = 0
        self.attempts_by_cause: Counter[str] = Counter()
        self.connections_lost = 0
        self.lost_by_cause: Counter[str] = Counter()
        self.outages_by_cause: Counter[str] = Counter()
        self.health_checks = 0

    @property
    def address(self) -> tuple[Any, Any]:
        return self.connection_kwargs.get("host"), self.connection_kwargs.get("port")

    def attempt_failed(self, cause: Cause) -> None:
        """Count one failed connection attempt: the prober's, a health check's reopen, or
        a new connection of the pool's or the shared one's that the server turned away."""
        self.connect_attempts += 1
        self.attempts_by_cause[cause.value] += 1

    def command_failed(self) -> None:
        """New commands wait for the check that follows, so they do not dial a dead server."""
        self.failed_commands += 1
        if self.gate.admission is Admission.OPEN:
            self.gate.set(Admission.VERIFYING, self.refusal())
        self.check_now()

    def check_now(self) -> None:
        if self.wake is not None:
            self.wake.set()

    def target_may_be_back(self) -> None:
        """Evidence that the target may be back: the prober tries now, not after its wait."""
        if self.hint is not None:
            self.hint.set()

    def admit_while_down(self, cause: Cause | None) -> None:
        admission = Admission.REFUSING if cause in _REFUSED_AT_ONCE else Admission.DOWN
        self.gate.set(admission, self.refusal())

    def refusal(self) -> Refusal:
        return Refusal(self.status)

    def alert_refusals(self) -> None:
        """Say once per command what an ACL refusal keeps the supervisor from seeing."""
        for command, consequence in self.probe.refused.items():
            if command not in self.alerted:
                self.alerted.add(command)
                self.publish(Alert, name="command_not_allowed", firing=True, detail=consequence)

    def period(self) -> float:
        """Seconds between health rounds: a third of the server's idle timeout, if shorter."""
        interval = self.config.health_check_interval
        timeout = self.facts.idle_timeout if self.facts else None
        return min(interval, timeout / 3) if timeout else interval

    def next_round_in_a_period(self) -> None:
        self.round_due = time.monotonic() + self.period()


class Refusal:
    """Builds the error a refused command gets from the state at that moment."""

    __slots__ = ("_status",)

    def __init__(self, status: Status) -> None:
        self._status = status

    def __call__(self, why: str) -> Unavailable:
        status = self._status
        cause, target = status.cause, status.target
        if status.state is ConnectionState.CLOSED:
            return Unavailable(f"Redis at {target}: the supervisor is closed ({why})")
        if cause is None:
            return Unavailable(
                f"Redis at {target} is {status.state.value}: {status.detail} ({why})", cause=None
            )
        return Unavailable(
            f"Redis at {target} is {status.state.value}, cause {cause.value}: "
            f"{status.detail.rstrip('.')}. "
            f"{fix_for(cause)} ({why})",
            cause=cause,
        )
