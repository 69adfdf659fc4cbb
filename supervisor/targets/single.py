"""``Supervisor``: owns the pool and the one task that watches the target.

A single background task (in a task group the supervisor owns) checks
health, reconnects as the evidence allows while the target is down, attributes every
lost connection to a cause, and moves the state machine. The command path
only reads the gate and reports what broke.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import replace
from typing import Any, NamedTuple, Self, final

import anyio
from anyio import AsyncContextManagerMixin
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from supervisor.causes import Cause, Evidence, attribute, fix_for
from supervisor.config import SupervisorConfig
from supervisor.connection.autopipeline import Multiplexer
from supervisor.connection.client import SupervisedRedis
from supervisor.connection.doorbell import Doorbell, Watch
from supervisor.connection.gate import Admission, Gate
from supervisor.connection.losses import Loss, describe
from supervisor.connection.pool import SupervisedConnectionPool, connection_class_for
from supervisor.connection.probe import Probe, ProbeFailed, ServerFacts, drop
from supervisor.connection.schedule import REFUSED_SLOW, Schedule, Showed, showed_by
from supervisor.errors import Unavailable
from supervisor.events import (
    Alert,
    ConnectionLost,
    HealthCheckFailed,
    MasterChanged,
    ReconnectScheduled,
    Resubscribed,
)
from supervisor.state import ConnectionState
from supervisor.targets.observable import Observable
from supervisor.targets.pubsub import SupervisedPubSub
from supervisor.targets.sentinel import SentinelNotice, SentinelWatcher, parse_address

__all__ = ("Supervisor", "SupervisorStatistics")


_MAX_PENDING_LOSSES = 1000
_SERVING = (ConnectionState.READY, ConnectionState.UNHEALTHY, ConnectionState.OVERLOADED)
_DOWN = (ConnectionState.CONNECTING, ConnectionState.RECONNECTING)
_DISCOVERY_GAP = 0.1
"""Seconds between asking the sentinels while reconnecting fast: their pushes
(``+switch-master``) cut any wait short, so polling faster buys nothing."""


class SupervisorStatistics(NamedTuple):
    """A read-only snapshot of counters, for metrics and tests."""

    state: ConnectionState
    generation: int
    """How many times the pool was renewed after an outage (1 after the first connect)."""
    connect_attempts: int
    """Failed connection attempts by the prober."""
    connect_attempts_by_cause: dict[str, int]
    """The same, by cause (``Cause.value``)."""
    connections_lost: int
    connections_lost_by_cause: dict[str, int]
    """The same, by the cause they were attributed to (``Cause.value``)."""
    health_checks: int
    health_latency: float | None
    """Seconds the health check's last round trip (PING, or INFO on a fresh connection) took,
    or None before the first."""
    waiters: int
    """Commands waiting: at the gate, or for a connection to be released."""
    subscribers: int
    dropped_events: int
    """Events subscribers lost to a full buffer (current subscribers only)."""
    sentinels_watched: int
    """Sentinels whose announcements arrive (0 unless the target is a Sentinel service)."""


@final
class Supervisor(Observable, AsyncContextManagerMixin):
    """Supervise one Redis target: ``async with Supervisor(config) as sup``.

    Entering starts the background task and returns at once, even when Redis
    is down; leaving stops the task, ends every subscription and closes the
    pool. ``sup.client`` is a ``redis.asyncio.Redis`` for the application.

    Args:
        config: the target and its settings (default: ``SupervisorConfig()``).
        rng: random source of the backoff jitter (seed it in tests).
    """

    def __init__(
        self, config: SupervisorConfig | None = None, *, rng: random.Random | None = None
    ) -> None:
        self.config = config = config or SupervisorConfig()
        super().__init__(config.target, event_buffer=config.event_buffer)
        kwargs = config.connection_kwargs()
        kwargs["retry"] = Retry(NoBackoff(), 0)
        connection_class = connection_class_for(kwargs)
        self._connection_class = connection_class
        self._connection_kwargs = kwargs
        self._pubsubs: set[SupervisedPubSub] = set()
        self._sentinel = (
            SentinelWatcher(
                [parse_address(a) for a in config.sentinels],
                config.service_name,
                role=config.role,
                timeout=config.health_check_timeout,
                connect_timeout=config.socket_connect_timeout,
                backoff_base=config.backoff_base,
                backoff_cap=config.backoff_cap,
                username=config.sentinel_username,
                password=config.sentinel_password,
                tls={k: v for k, v in kwargs.items() if k.startswith("ssl_")}
                if config.sentinel_tls
                else None,
            )
            if config.sentinels
            else None
        )
        self.gate = Gate(max_waiters=config.max_waiters, fail_fast=config.offline == "fail_fast")
        self._pool = SupervisedConnectionPool(
            watcher=self,
            idempotent=frozenset(config.idempotent_commands),
            connection_class=connection_class,
            max_connections=config.max_connections,
            **kwargs,
        )
        self.client: SupervisedRedis = SupervisedRedis(connection_pool=self._pool)
        self._mux = Multiplexer(self._pool) if config.auto_pipeline else None
        self.client._mux = self._mux
        # the supervisor's own commands are ASCII: an app's ``encoding`` (utf-16...) must
        # not garble them, and their replies have their own deadline
        # (health_check_timeout), not socket_timeout; a probe built otherwise than the
        # pool's connections is not handed to the pool
        probe_kwargs = {k: v for k, v in kwargs.items() if k not in ("encoding", "encoding_errors")}
        self._adoptable = probe_kwargs == kwargs
        probe_kwargs["socket_timeout"] = None
        self._probe_kwargs = probe_kwargs
        self._probe = Probe(
            connection_class,
            probe_kwargs,
            timeout=config.health_check_timeout,
            connect_timeout=config.socket_connect_timeout,
            idle_timeout=config.server_idle_timeout,
        )
        self._schedule = Schedule(
            refused_interval=config.refused_interval,
            backoff_base=config.backoff_base,
            backoff_cap=config.backoff_cap,
            jitter=config.backoff_jitter,
            auth_retry_interval=config.auth_retry_interval,
            rng=rng,
        )
        self._situation: tuple[Cause, Showed] | None = None
        self._facts: ServerFacts | None = None
        self._master_seen = False
        """The target answered as a master once: a READONLY from it now means a failover."""
        self._alerted: set[str] = set()
        self._claims: dict[Cause, str] = {}
        """What error replies claimed since the last check (LOADING, READONLY), with the
        reply: the next check confirms or refutes it."""
        self._losses: list[Loss] = []
        self._failed_commands = 0
        self._turned_away: Loss | None = None
        """The last new connection turned away since the gate last opened."""
        self._wake: anyio.Event | None = None
        """Set when a command failed: check now (made on entering: anyio needs a loop)."""
        self._hint: anyio.Event | None = None
        """Set on evidence that the target may be back: end the prober's wait now."""
        self._round_due = 0.0
        self._dial_due = 0.0
        self._attempt_due = 0.0
        self._discovered_at = -_DISCOVERY_GAP
        self._entered = False
        self._connect_attempts = 0
        self._attempts_by_cause: Counter[str] = Counter()
        self._connections_lost = 0
        self._lost_by_cause: Counter[str] = Counter()
        self._health_checks = 0

    # -- what the application reads -------------------------------------------------

    @property
    def command_deadline(self) -> float:
        return self.config.command_deadline

    def statistics(self) -> SupervisorStatistics:
        return SupervisorStatistics(
            state=self._state,
            generation=self.gate.generation,
            connect_attempts=self._connect_attempts,
            connect_attempts_by_cause=dict(self._attempts_by_cause),
            connections_lost=self._connections_lost,
            connections_lost_by_cause=dict(self._lost_by_cause),
            health_checks=self._health_checks,
            health_latency=self._probe.latency,
            waiters=self.gate.waiters + self._pool.waiters,
            subscribers=len(self._hub),
            dropped_events=self._hub.dropped,
            sentinels_watched=self._sentinel.watching if self._sentinel else 0,
        )

    def __repr__(self) -> str:
        pool = self._pool
        in_use = len(pool._in_use_connections)
        total = in_use + len(pool._available_connections)
        return (
            f"<Supervisor {self.target} [{self._state.value} | pool {in_use}/{total} in use"
            f" | subscribers {len(self._hub)}]>"
        )

    def pubsub(self) -> SupervisedPubSub:
        """A supervised pub/sub handle: ``async with sup.pubsub() as ps``.

        It re-subscribes after any loss and yields a ``Resubscribed`` marker (also
        published to subscribers) with the cause and the window of lost messages.
        """
        return SupervisedPubSub(self)

    # -- lifecycle ----------------------------------------------------------------------

    @asynccontextmanager
    async def __asynccontextmanager__(self) -> AsyncGenerator[Self]:
        if self._entered:
            raise RuntimeError("a Supervisor can be entered only once; create a new one")
        self._entered = True
        self._wake, self._hint = anyio.Event(), anyio.Event()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._run)
                if self._sentinel is not None:
                    tg.start_soon(self._sentinel.watch, self._on_sentinel)
                try:
                    yield self
                finally:
                    tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self._close()

    async def _close(self) -> None:
        """Close every resource within its own bound, so one that stalls (pub/sub handles
        awaiting a stopped server's confirmations) cannot use up another's time: the
        handles close side by side, and the pool's sockets are closed whatever happened
        before."""
        self._transition(ConnectionState.CLOSED, None, "supervisor stopped")
        async with anyio.create_task_group() as tg:
            for handle in list(self._pubsubs):
                tg.start_soon(handle.aclose)  # bounded: health_check_timeout, then 1 s
        self._hub.close()
        await self._probe.close()  # bounded: 1 s
        if self._mux is not None:
            self._mux.aclose()
        await self._pool.close()  # bounded: 1 s

    # -- the watcher interface the pool and client use -------------------------------

    def connection_lost(self, loss: Loss) -> None:
        """Record a broken connection; a failed command also makes new commands
        wait for the check that follows, so they do not dial a dead server."""
        if len(self._losses) < _MAX_PENDING_LOSSES and not loss.turned_away:
            self._losses.append(loss)
        if loss.turned_away:
            self._turned_away = loss
        if loss.command_failed:
            self._command_failed()

    def reply_claims(self, cause: Cause, error: str) -> None:
        """An error reply says the target is loading or a replica. Any server can send
        one (``DEBUG ERROR``, a module), so the next check decides; until then new
        commands wait for it, as after a failed command."""
        self._claims.setdefault(cause, error)
        self._command_failed()

    def _command_failed(self) -> None:
        self._failed_commands += 1
        if self.gate.admission is Admission.OPEN:
            self.gate.set(Admission.VERIFYING, self._refusal())
        if self._wake is not None:
            self._wake.set()

    def pubsub_connection(self) -> AbstractConnection:
        return self._connection_class(**{**self._connection_kwargs, "protocol": 2})

    def track(self, handle: SupervisedPubSub, subscribed: bool) -> None:
        if subscribed:
            self._pubsubs.add(handle)
        else:
            self._pubsubs.discard(handle)

    def publish_resubscribed(self, **fields: Any) -> Resubscribed:
        return self._publish(Resubscribed, **fields)

    def unavailable(self, why: str) -> Unavailable:
        return _Refusal(self)(why)

    def _target_may_be_back(self) -> None:
        """Evidence that the target may be back: the prober tries now, not after its wait."""
        if self._hint is not None:
            self._hint.set()

    # -- the background task ----------------------------------------------------------

    async def _run(self) -> None:
        while True:
            if self._state in (ConnectionState.CONNECTING, ConnectionState.RECONNECTING):
                await self._connect_once()
            else:
                await self._check_once()

    async def _rest(self, delay: float) -> None:
        """Wait ``delay`` seconds, or less if a hint comes. A timer that gives the hint
        itself is one callback where a cancel scope's deadline is several: this wait
        comes between every two attempts of a long outage."""
        hint = self._hint
        assert hint is not None
        timer = asyncio.get_running_loop().call_later(delay, hint.set)
        try:
            await hint.wait()
        finally:
            timer.cancel()
        self._hint = anyio.Event()

    async def _knock_until_answered(self) -> bool:
        """Refused for a while: wait while the process's doorbell knocks (every target
        of the process on one timer), until something other than a refusal answers
        (True) or a hint comes (False). None of the refused knocks wakes this task."""
        hint = self._hint
        assert hint is not None
        where = self._probe.knock_address()
        assert where is not None
        answered = False

        def on_answer() -> None:
            nonlocal answered
            answered = True
            hint.set()

        bell = Doorbell.for_loop(REFUSED_SLOW)
        watch = Watch(
            *where, max(self.config.refused_interval, REFUSED_SLOW), self._refused_knock, on_answer
        )
        bell.watch(watch)
        try:
            await hint.wait()
        finally:
            bell.leave(watch)
        self._hint = anyio.Event()
        return answered

    def _refused_knock(self) -> None:
        self._connect_attempts += 1
        self._attempts_by_cause[Cause.NETWORK.value] += 1
        self._schedule.next_delay(Showed.REFUSED)

    async def _connect_once(self) -> None:
        wait = self._attempt_due - time.monotonic()
        knocked = False
        if wait > 0:
            if self._refused_slowly():
                knocked = await self._knock_until_answered()
            else:
                await self._rest(wait)
        try:
            if self._sentinel is not None and (
                time.monotonic() - self._discovered_at >= _DISCOVERY_GAP
            ):
                self._discovered_at = time.monotonic()
                await self._follow(await self._sentinel.discover(), self._cause or Cause.FAILOVER)
            if not knocked and self._situation is not None and self._situation[1] is Showed.REFUSED:
                await self._probe.knock()
            facts = await self._probe.open(self._facts)
        except ProbeFailed as failure:
            self._retry_later(failure.cause, failure.detail, failure.showed)
            return
        if self._needs_master() and facts.role != "master":
            await self._probe.close()
            detail = f"the server is a replica (role {facts.role}); writes would fail"
            self._retry_later(Cause.READONLY, detail, Showed.TURNED_AWAY)
            return
        self._recovered(facts)
        # the first waiting command gets the connection that just proved the target
        # is back (no second handshake before it is served); the probe reopens with
        # the next round, one interval later, off the commands' path
        if self._adoptable:
            connection = self._probe.detach()
            if connection is not None:
                await self._pool.adopt(connection)
        self._round_due = time.monotonic() + self._period()

    def _refused_slowly(self) -> bool:
        """Refused past a restart's gap, at an address a bare connect can knock on (not a
        host name), and not a Sentinel target (its discovery runs between attempts)."""
        situation = self._situation
        return (
            situation is not None
            and situation[1] is Showed.REFUSED
            and self._schedule.refused_slowly
            and self._sentinel is None
            and self._probe.knock_address() is not None
        )

    def _needs_master(self) -> bool:
        """A READONLY reply proved the app writes; a Sentinel master target always does."""
        if self._sentinel is not None:
            return self.config.role == "master"
        return self._cause is Cause.READONLY

    @property
    def address(self) -> str:
        """``host:port`` the target's connections go to now (it moves with Sentinel)."""
        kwargs = self._connection_kwargs
        return f"{kwargs.get('host', kwargs.get('path', '?'))}:{kwargs.get('port', '')}".rstrip(":")

    async def _follow(self, address: tuple[str, int], cause: Cause) -> None:
        """Point every new connection at ``address``; retire every connection to the old one."""
        old = self.address
        host, port = address
        if (self._connection_kwargs.get("host"), self._connection_kwargs.get("port")) == address:
            return
        for kwargs in (self._connection_kwargs, self._pool.connection_kwargs, self._probe_kwargs):
            kwargs.update(host=host, port=port)
        if self._facts is None:
            return  # the first discovery: nothing moved
        self._publish(
            MasterChanged,
            old=old,
            new=f"{host}:{port}",
            cause=cause,
            detail=f"{self.config.service_name} moved from {old} to {host}:{port}",
        )
        await self._probe.close()
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await self._pool.disconnect(inuse_connections=True)

    async def _on_sentinel(self, notice: SentinelNotice) -> None:
        """Act on what the sentinels say, before the first failing command shows it."""
        state = self._state
        if notice.kind == "failover-started" and state is ConnectionState.READY:
            self._transition(
                ConnectionState.UNHEALTHY,
                Cause.FAILOVER,
                f"Sentinel started a failover ({notice.detail}); writes wait",
            )
        elif (
            notice.kind == "failover-aborted"
            and self._cause is Cause.FAILOVER
            and (state is ConnectionState.UNHEALTHY)
        ):
            self._transition(
                ConnectionState.READY,
                Cause.FAILOVER,
                f"Sentinel aborted the failover ({notice.detail})",
            )
        elif notice.kind == "switch-master" and notice.new_master is not None:
            first_sign = Cause.FAILOVER
            if state in _SERVING:
                self._transition(ConnectionState.RECONNECTING, Cause.FAILOVER, notice.detail)
            elif self._cause is not None:
                first_sign = self._cause  # already down: that was the first sign
            await self._follow(notice.new_master, first_sign)
            self._discovered_at = time.monotonic()  # the announcement named the master
        elif notice.kind == "sentinels-lost":
            self._publish(Alert, name="sentinels_unreachable", firing=True, detail=notice.detail)
        elif notice.kind == "sentinels-back":
            self._publish(Alert, name="sentinels_unreachable", firing=False, detail=notice.detail)
            assert self._sentinel is not None
            with suppress(ProbeFailed):
                address = await self._sentinel.discover()
                if address != (
                    self._connection_kwargs.get("host"),
                    self._connection_kwargs.get("port"),
                ):
                    if self._state in _SERVING:
                        self._transition(
                            ConnectionState.RECONNECTING,
                            Cause.FAILOVER,
                            "the master moved while no sentinel answered",
                        )
                    await self._follow(address, Cause.FAILOVER)
        if self._wake is not None:
            self._wake.set()
        self._target_may_be_back()

    def _retry_later(self, cause: Cause, detail: str, showed: Showed) -> None:
        self._attempt_due = time.monotonic() + self._schedule_retry(cause, detail, showed)

    def _schedule_retry(self, cause: Cause, detail: str, showed: Showed) -> float:
        """Count a failed attempt and return the wait before the next one. One event
        (and one log line) per situation: a new cause, or a new kind of answer."""
        self._connect_attempts += 1
        self._attempts_by_cause[cause.value] += 1
        self._cause, self._detail = cause, detail
        if self._state is not ConnectionState.OVERLOADED:
            self._admit_while_down(cause)
        delay = self._schedule.next_delay(showed)
        if self._situation != (cause, showed):
            self._situation = (cause, showed)
            self._publish(
                ReconnectScheduled,
                attempt=self._schedule.attempts,
                delay=round(delay, 3),
                cause=cause,
                detail=_RETRYING[showed].format(detail=detail),
            )
        return delay

    def _recovered(self, facts: ServerFacts) -> None:
        self._alert_refusals()
        previous, down_cause = self._facts, self._cause
        self._claims.clear()
        self._master_seen = self._master_seen or facts.role == "master"
        self._schedule.reset()
        self._losses.clear()
        if self._state is ConnectionState.CONNECTING:
            cause, detail = None, f"connected to {facts.version}"
        elif previous and previous.address != facts.address:
            cause = down_cause
            detail = f"now on {facts.address} (role {facts.role}), was {previous.address}"
        elif previous and previous.run_id and previous.run_id != facts.run_id:
            cause = Cause.SERVER_RESTART
            detail = (
                f"server restarted: run_id {previous.run_id[:8]} -> {facts.run_id[:8]}, "
                f"up {facts.uptime} s"
            )
        else:
            cause = down_cause
            detail = f"recovered; the outage was {down_cause.value if down_cause else 'unknown'}"
        self._facts = facts
        self._transition(ConnectionState.READY, cause, detail)

    async def _check_once(self) -> None:
        """Sleep until the next health round (or, when overloaded, the next new
        connection to try) unless a failed command asks for a check first.

        A full round (PING, the server facts, idle connections) runs at most once per
        ``health_check_interval`` whatever fails; a failed command only costs a PING.
        """
        wake = self._wake
        assert wake is not None
        due = self._round_due
        if self._state is ConnectionState.OVERLOADED:
            due = min(due, self._dial_due)
        with anyio.move_on_after(max(0.0, due - time.monotonic())):
            await wake.wait()
        self._wake = anyio.Event()
        if self._state not in _SERVING:
            return
        if time.monotonic() >= self._round_due:
            await self._round()
        elif wake.is_set():
            await self._verify()
        if self._state is ConnectionState.OVERLOADED and time.monotonic() >= self._dial_due:
            await self._dial_once()

    async def _round(self) -> None:
        self._round_due = time.monotonic() + self._period()
        if self._state is ConnectionState.OVERLOADED and not self._probe.is_open:
            return  # reopening it would be a second dial; the prober's attempts tell
        self._health_checks += 1
        await self._within_deadline(self._round_steps)

    async def _verify(self) -> None:
        await self._within_deadline(self._verify_steps)

    async def _within_deadline(self, check: Callable[[], Awaitable[None]]) -> None:
        """Run every step of a check (reopening the probe, PING, the facts, the samples,
        the idle refresh) under the one ``health_check_timeout`` that governs the whole:
        a server that stops at any point of it is seen at that deadline."""
        timeout = self.config.health_check_timeout
        self._probe.step = None
        with anyio.move_on_after(timeout) as scope:
            await check()
        if scope.cancelled_caught:
            step = self._probe.step or "the PING of idle connections"
            await self._probe.close()
            failure = ProbeFailed(
                Cause.NETWORK,
                f"no reply to {step} within health_check_timeout={timeout:g} s, the bound "
                "of the whole check (server stalled or packets dropped)",
                stalled=True,
            )
            await self._check_failed(failure, reopen=False)

    async def _round_steps(self) -> None:
        failed_before = self._failed_commands
        opening = not self._probe.is_open
        try:
            if opening:
                facts = await self._probe.open()
            else:
                await self._probe.ping()
                facts = await self._current_facts()
            await self._sample_output_buffers()
        except ProbeFailed as failure:
            self._claims.clear()
            await self._check_failed(failure, reopen=not opening)
            return
        if self._demoted(facts):
            return
        self._healthy(facts, failed_before)
        refresh_after = (facts.idle_timeout or 0) / 3 or float("inf")
        await self._pool.refresh_idle(refresh_after, self.config.health_check_timeout)
        if self._mux is not None:
            await self._mux.refresh_idle(refresh_after)

    async def _verify_steps(self) -> None:
        """A command failed: one PING says whether the server still answers (a LOADING
        server does not); a READONLY reply also costs an ``INFO`` for the role."""
        failed_before = self._failed_commands
        opening = not self._probe.is_open
        if opening and self._state is ConnectionState.OVERLOADED:
            self._claims.clear()
            self.gate.set(Admission.OPEN)  # only the prober dials while overloaded
            return
        try:
            if opening:
                facts: ServerFacts | None = await self._probe.open()
            else:
                await self._probe.ping()
                facts = await self._probe.facts(self._facts) if self._claims else None
        except ProbeFailed as failure:
            self._claims.clear()
            await self._check_failed(failure, reopen=not opening)
            return
        if facts is not None and self._demoted(facts):
            return
        self._healthy(facts, failed_before)

    def _demoted(self, facts: ServerFacts) -> bool:
        """Judge what error replies claimed against the server's own facts: a READONLY
        from a target that was a master (or must be one) while it now is a replica is a
        failover behind one address. Otherwise the replies were answers."""
        claims, self._claims = self._claims, {}
        if facts.role == "master":
            self._master_seen = True
        wants_master = self._master_seen or (
            self._sentinel is not None and self.config.role == "master"
        )
        if Cause.READONLY not in claims or not wants_master or facts.role == "master":
            return False
        self._transition(
            ConnectionState.RECONNECTING,
            Cause.READONLY,
            f"{claims[Cause.READONLY]}: the server became a replica (role {facts.role}; "
            "failover?); reconnecting until the URL leads to a master",
        )
        return True

    async def _dial_once(self) -> None:
        """Overloaded: try one new connection. Accepted, it joins the pool and the target
        is READY; refused, nothing listens any more; turned away, wait longer."""
        conn = self._pool.make_connection()  # type: ignore[no-untyped-call]
        timeout = self.config.socket_connect_timeout + self.config.health_check_timeout
        try:
            with anyio.fail_after(timeout):
                await conn.connect()
        except (RedisError, OSError, TimeoutError) as exc:
            await drop(conn)
            error = (
                describe(exc) if not isinstance(exc, TimeoutError) else f"no reply in {timeout:g} s"
            )
            cause, detail = attribute(Evidence(error=error, reachable=False))
            showed = showed_by(exc, cause)
            if showed is Showed.REFUSED:
                self._transition(ConnectionState.RECONNECTING, cause, detail)
                return
            if cause is not Cause.MAXCLIENTS:
                cause = Cause.NETWORK
            self._dial_due = time.monotonic() + self._schedule_retry(
                cause, _OVERLOADED.format(error=error), showed
            )
            return
        await self._pool.adopt(conn)
        self._schedule.reset()
        self._transition(ConnectionState.READY, self._cause, "a new connection was accepted again")

    async def _sample_output_buffers(self) -> None:
        """Record how much output the server holds for each pub/sub connection: the
        evidence that names OUTPUT_BUFFER_LIMIT when the server then closes one; a
        sample of 0 also dates the handle's last moment with nothing left unsent."""
        handles = {h.client_id: h for h in self._pubsubs if h.client_id is not None}
        if handles:
            sampled_at = time.time()
            sampled = await self._probe.output_buffers(list(handles))
            for client_id, handle in handles.items():
                omem = sampled.get(client_id)
                if omem is not None:
                    handle.output_buffer_seen = max(handle.output_buffer_seen, omem)
                    if omem == 0:
                        handle.mark_caught_up(sampled_at)
                elif "CLIENT LIST" not in self._probe.refused and handle.client_id == client_id:
                    loss = handle.gone_from_server()
                    if loss is not None:
                        self.connection_lost(replace(loss, command_failed=False))

    async def _current_facts(self) -> ServerFacts:
        """Full ``INFO`` only when a loss needs attributing; otherwise refresh the
        idle timeout, which the application's admin may change at any time, and the
        ``INFO stats`` counters, so the sample before a loss is at most a round old."""
        if self._losses or self._claims or self._facts is None:
            return await self._probe.facts()
        facts = await self._probe.counters(self._facts)
        return replace(facts, idle_timeout=await self._probe.idle_timeout())

    async def _check_failed(self, failure: ProbeFailed, *, reopen: bool) -> None:
        """A lost probe connection is reopened at once (unless the failure was an
        opening already): if that works, the server is up and the loss is attributed
        like any other (ConnectionLost); if not, the check failed and the state follows."""
        if reopen and not failure.stalled:
            self._losses.append(Loss(failure.detail, None, command_failed=False))
            try:
                facts = await self._probe.open()
            except ProbeFailed as again:
                failure = again
            else:
                self._healthy(facts, self._failed_commands)
                return
        self._publish(HealthCheckFailed, cause=failure.cause, detail=failure.detail)
        if failure.stalled:
            if self._state in (ConnectionState.READY, ConnectionState.OVERLOADED):
                self._transition(ConnectionState.UNHEALTHY, Cause.NETWORK, failure.detail)
        elif failure.cause is Cause.MAXCLIENTS and self._state in (
            ConnectionState.READY,
            ConnectionState.OVERLOADED,
        ):
            # the server answered, so it is up: the pool's connections may still work
            self._overloaded(Cause.MAXCLIENTS, failure.detail)
        else:
            self._transition(ConnectionState.RECONNECTING, failure.cause, failure.detail)
            # the reopen was the first attempt: the schedule goes on from it
            self._retry_later(failure.cause, failure.detail, failure.showed)

    def _alert_refusals(self) -> None:
        """Say once per command what an ACL refusal keeps the supervisor from seeing."""
        for command, consequence in self._probe.refused.items():
            if command not in self._alerted:
                self._alerted.add(command)
                self._publish(Alert, name="command_not_allowed", firing=True, detail=consequence)

    def _healthy(self, facts: ServerFacts | None, failed_before: int) -> None:
        self._alert_refusals()
        before = self._facts
        if facts is not None:
            self._attribute_losses(facts)
        # during a failover the old master answers until Sentinel moves it: wait for the
        # verdict, but not forever (a leader that died mid-failover announces nothing)
        if (
            self._state is ConnectionState.UNHEALTHY
            and self._cause is Cause.FAILOVER
            and time.monotonic() - self._changed_at < self.config.command_deadline
        ):
            return
        if self._state is ConnectionState.UNHEALTHY:
            self._transition(ConnectionState.READY, self._cause, "answers health checks again")
            if facts is not None and before is not None and facts.run_id != before.run_id:
                self.gate.set(Admission.OPEN, new_generation=True)  # restarted while stalled
        elif self.gate.admission is Admission.VERIFYING:
            turned_away, self._turned_away = self._turned_away, None
            cause = None
            if turned_away is not None:
                cause, _ = attribute(Evidence(error=turned_away.error, reachable=True))
            if turned_away is not None and cause is Cause.MAXCLIENTS:
                # the server said so; a reset during a handshake (CLIENT KILL) does not
                self._overloaded(cause, turned_away.error)
            elif self._failed_commands == failed_before:
                self.gate.set(Admission.OPEN)
            elif self._wake is not None:
                self._wake.set()

    def _overloaded(self, cause: Cause, error: str) -> None:
        """New connections are turned away while the server answers: serve from the
        connections that exist (the gate opens for them) and dial only from the prober."""
        if self._state is ConnectionState.OVERLOADED:
            self.gate.set(Admission.OPEN)
        else:
            self._transition(ConnectionState.OVERLOADED, cause, _OVERLOADED.format(error=error))

    def _attribute_losses(self, facts: ServerFacts) -> None:
        losses, self._losses = self._losses, []
        before = self._facts
        self._facts = facts
        if not losses:
            return
        found: Counter[tuple[Cause, str]] = Counter()
        for loss in losses:
            evidence = Evidence(
                error=loss.error,
                idle_for=loss.idle_for,
                server_timeout=facts.idle_timeout,
                run_id_before=before.run_id if before else None,
                run_id_after=facts.run_id,
                uptime_after=facts.uptime,
                reachable=True,
                output_buffer_disconnections_delta=_delta(
                    before, facts, "output_buffer_disconnections"
                ),
                evicted_clients_delta=_delta(before, facts, "evicted_clients"),
                output_buffer_seen=loss.output_buffer_seen,
                output_buffer_limit=loss.output_buffer_limit,
                stalled=loss.stalled,
                client_class=loss.client_class,
                counters_window=facts.sampled_at - before.sampled_at if before else None,
            )
            found[attribute(evidence)] += 1
        self._connections_lost += len(losses)
        for (cause, detail), count in found.items():
            self._lost_by_cause[cause.value] += count
            text = f"{count} connection{'s' if count > 1 else ''}: {detail}"
            self._publish(ConnectionLost, cause=cause, detail=text)
            if cause is Cause.SERVER_RESTART and self._state is ConnectionState.READY:
                self.gate.set(Admission.OPEN, new_generation=True)

    def _period(self) -> float:
        interval = self.config.health_check_interval
        timeout = self._facts.idle_timeout if self._facts else None
        return min(interval, timeout / 3) if timeout else interval

    # -- the one place the state changes ------------------------------------------------

    def _transition(self, new: ConnectionState, cause: Cause | None, detail: str) -> None:
        """Change the state (``Observable._set_state``) and let the gate follow it."""
        previous = self._state
        if not self._set_state(new, cause, detail):
            return
        self._situation = None
        if new is ConnectionState.READY:
            self._turned_away = None
            self._pool.allow_dialing(True)
            # only an outage renews the pool: after a stall (UNHEALTHY) or OVERLOADED the
            # same server answers on the same connections, and a command that timed out
            # meanwhile was that command's own, not a lost one
            self.gate.set(Admission.OPEN, new_generation=previous in _DOWN)
        elif new is ConnectionState.OVERLOADED:
            self._pool.allow_dialing(False)
            self.gate.set(Admission.OPEN)
            self._dial_due = time.monotonic() + self.config.backoff_base
        elif new is ConnectionState.CLOSED:
            self.gate.set(Admission.REFUSING, self._refusal())
        else:
            self._admit_while_down(cause)

    def _admit_while_down(self, cause: Cause | None) -> None:
        admission = Admission.REFUSING if cause in _REFUSED_AT_ONCE else Admission.DOWN
        self.gate.set(admission, self._refusal())

    def _refusal(self) -> _Refusal:
        return _Refusal(self)


_RETRYING = {
    Showed.REFUSED: "{detail}; nothing listens: trying again every refused_interval until it "
    "accepts (a refused connect costs the server nothing)",
    Showed.TURNED_AWAY: "{detail}; each attempt costs the server, so the wait grows to backoff_cap",
    Showed.AUTH: "{detail}; waiting does not fix credentials: trying again every "
    "auth_retry_interval",
    Showed.TLS: "{detail}; waiting does not fix the TLS setup: trying again every "
    "auth_retry_interval",
}

_REFUSED_AT_ONCE = frozenset({Cause.AUTH, Cause.TLS})
"""Causes that waiting cannot fix: commands fail at once instead of waiting them out."""

_OVERLOADED = (
    "new connections are turned away ({error}) while existing ones answer: commands run on "
    "those or wait for one to be released, and one new connection is tried at a time"
)


class _Refusal:
    """Builds the error a refused command gets from the supervisor's state at that moment."""

    __slots__ = ("_sup",)

    def __init__(self, sup: Supervisor) -> None:
        self._sup = sup

    def __call__(self, why: str) -> Unavailable:
        sup = self._sup
        cause = sup.cause
        if sup.state is ConnectionState.CLOSED:
            return Unavailable(f"Redis at {sup.target}: the supervisor is closed ({why})")
        if cause is None:
            return Unavailable(
                f"Redis at {sup.target} is {sup.state.value}: {sup.detail} ({why})", cause=None
            )
        return Unavailable(
            f"Redis at {sup.target} is {sup.state.value}, cause {cause.value}: "
            f"{sup.detail.rstrip('.')}. "
            f"{fix_for(cause)} ({why})",
            cause=cause,
        )


def _delta(before: ServerFacts | None, after: ServerFacts, name: str) -> int | None:
    if before is None:
        return None
    a, b = getattr(before, name), getattr(after, name)
    return b - a if a is not None and b is not None else None
