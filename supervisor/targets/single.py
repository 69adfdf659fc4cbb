"""``Supervisor``: a coordinator over the parts that watch one Redis target.

It owns the pool, the task group of the one background task and the state machine
(``_transition`` is the one place the state changes). The parts do the watching:
``HealthRound`` while commands are served, ``Prober`` while the target is down,
``Overload`` while new connections are turned away, ``SentinelLocator`` for a Sentinel
service. The command path only reads the gate and reports what broke.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Any, Self, final

import anyio
from anyio import AsyncContextManagerMixin
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from supervisor.causes import Cause, FlushCause
from supervisor.config import SupervisorConfig
from supervisor.connection.autopipeline import Multiplexer
from supervisor.connection.cache import ClientCache
from supervisor.connection.cachestore import CacheStore
from supervisor.connection.client import SupervisedRedis
from supervisor.connection.deadlines import ReadDeadlines
from supervisor.connection.gate import Admission, Gate
from supervisor.connection.losses import Loss
from supervisor.connection.pool import SupervisedConnectionPool, connection_class_for
from supervisor.connection.probe import Probe
from supervisor.connection.quiet import quiet_task
from supervisor.connection.schedule import Schedule
from supervisor.connection.tracking import Tracker
from supervisor.errors import Unavailable
from supervisor.events import Alert, CacheFlushed, Resubscribed
from supervisor.state import ConnectionState
from supervisor.targets.context import DOWN, Context
from supervisor.targets.health import HealthRound
from supervisor.targets.locator import SentinelLocator, address_of
from supervisor.targets.observable import Observable
from supervisor.targets.overload import Overload
from supervisor.targets.prober import Prober
from supervisor.targets.pubsub import SupervisedPubSub
from supervisor.targets.sentinel import SentinelWatcher, parse_address
from supervisor.targets.statistics import CacheStatistics, SupervisorStatistics

_ANSWERING = (ConnectionState.READY, ConnectionState.OVERLOADED)

__all__ = ("Supervisor", "SupervisorStatistics")


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
        self._deadlines = (
            ReadDeadlines(
                config.socket_timeout,
                hold=config.command_deadline,
                stalled=lambda: self._state is ConnectionState.UNHEALTHY,
                check=lambda: self._ctx.check_now(),
                verdict_within=config.health_check_timeout,
            )
            if config.socket_timeout
            else None
        )
        connection_class = connection_class_for(kwargs, self._deadlines)
        self._connection_class = connection_class
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
        self._cache = self._pool.cache = self._client_cache() if config.client_cache else None
        self.client: SupervisedRedis = SupervisedRedis(connection_pool=self._pool)
        self._mux = Multiplexer(self._pool) if config.auto_pipeline else None
        self.client._mux = self._mux
        # the supervisor's own commands are ASCII: an app's ``encoding`` (utf-16...) must
        # not garble them, and their replies have their own deadline
        # (health_check_timeout), not socket_timeout; a probe built otherwise than the
        # pool's connections is not handed to the pool
        probe_kwargs = {k: v for k, v in kwargs.items() if k not in ("encoding", "encoding_errors")}
        adoptable = probe_kwargs == kwargs
        probe_kwargs["socket_timeout"] = None
        self._probe = Probe(
            connection_class,
            probe_kwargs,
            timeout=config.health_check_timeout,
            connect_timeout=config.socket_connect_timeout,
            idle_timeout=config.server_idle_timeout,
        )
        ctx = self._ctx = Context(
            config=config,
            status=self,
            publish=self._publish,
            transition=self._transition,
            reason=self._set_reason,
            gate=self.gate,
            pool=self._pool,
            probe=self._probe,
            schedule=Schedule(
                refused_interval=config.refused_interval,
                backoff_base=config.backoff_base,
                backoff_cap=config.backoff_cap,
                jitter=config.backoff_jitter,
                auth_retry_interval=config.auth_retry_interval,
                rng=rng,
            ),
            mux=self._mux,
            sentinel=self._sentinel,
            connection_kwargs=kwargs,
            probe_kwargs=probe_kwargs,
        )
        self._locator = SentinelLocator(ctx, self._sentinel) if self._sentinel else None
        self._prober = Prober(ctx, self._locator, adoptable=adoptable)
        self._overload = Overload(ctx, self._prober)
        self._health = HealthRound(ctx, self._prober, self._overload)
        self._entered = False

    def _client_cache(self) -> ClientCache:
        config = self.config
        store = CacheStore(max_entries=config.cache_max_entries, max_bytes=config.cache_max_bytes)
        tracker = Tracker(
            self._pool,
            store,
            gate=self.gate,
            watcher=self,
            max_staleness=config.cache_max_staleness,
            stall_limit=config.command_deadline,
            open_timeout=config.socket_connect_timeout + 2 * config.health_check_timeout,
            backoff_base=config.backoff_base,
            backoff_cap=config.backoff_cap,
            flushed=self._cache_flushed,
            alert=self._cache_refused,
        )
        return ClientCache(
            store,
            tracker,
            self._pool.get_encoder().encode,  # type: ignore[no-untyped-call]
            ttl=config.cache_ttl,
            max_staleness=config.cache_max_staleness,
            max_waiters=config.max_waiters,
            read_timeout=config.socket_timeout,
        )

    def _cache_refused(self, detail: str) -> None:
        self._publish(Alert, name="command_not_allowed", firing=True, detail=detail)

    def _cache_flushed(self, cause: FlushCause, entries: int, detail: str) -> None:
        self._publish(CacheFlushed, cause=cause, entries=entries, detail=detail)

    # -- what the application reads -------------------------------------------------

    @property
    def command_deadline(self) -> float:
        return self.config.command_deadline

    def statistics(self) -> SupervisorStatistics:
        ctx = self._ctx
        return SupervisorStatistics(
            state=self._state,
            generation=self.gate.generation,
            connect_attempts=ctx.connect_attempts,
            connect_attempts_by_cause=dict(ctx.attempts_by_cause),
            connections_lost=ctx.connections_lost,
            connections_lost_by_cause=dict(ctx.lost_by_cause),
            outages_by_cause=dict(ctx.outages_by_cause),
            health_checks=ctx.health_checks,
            health_latency=self._probe.latency,
            waiters=self.gate.waiters + self._pool.waiters,
            subscribers=len(self._hub),
            dropped_events=self._hub.dropped,
            sentinels_watched=self._sentinel.watching if self._sentinel else 0,
            cache=None if self._cache is None else CacheStatistics.of(self._cache),
        )

    def __repr__(self) -> str:
        pool = self._pool
        in_use = len(pool._in_use_connections)
        total = in_use + len(pool._available_connections)
        return (
            f"<Supervisor {self.target} [{self._state.value} | pool {in_use}/{total} in use"
            f" | subscribers {len(self._hub)}]>"
        )

    @property
    def address(self) -> str:
        """``host:port`` the target's connections go to now (it moves with Sentinel)."""
        return address_of(self._ctx.connection_kwargs)

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
        self._ctx.wake, self._ctx.hint = anyio.Event(), anyio.Event()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._run)
                if self._deadlines is not None:
                    tg.start_soon(self._deadlines.run)
                if self._sentinel is not None and self._locator is not None:
                    tg.start_soon(self._watch_sentinels)
                if self._cache is not None:
                    tg.start_soon(self._cache.tracker.run)
                try:
                    yield self
                finally:
                    tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self._close()

    async def _watch_sentinels(self) -> None:
        assert self._sentinel is not None and self._locator is not None
        quiet_task()
        await self._sentinel.watch(self._locator.on_notice)

    async def _close(self) -> None:
        """Close every resource within its own bound, so one that stalls (pub/sub handles
        awaiting a stopped server's confirmations) cannot use up another's time: the
        handles close side by side, and the pool's sockets are closed whatever happened
        before."""
        self._transition(ConnectionState.CLOSED, None, "supervisor stopped")
        async with anyio.create_task_group() as tg:
            for handle in list(self._ctx.pubsubs):
                tg.start_soon(handle.aclose)  # bounded: health_check_timeout, then 1 s
        if self._cache is not None:
            self._cache.tracker.close()
        self._hub.close()
        await self._probe.close()  # bounded: 1 s
        if self._mux is not None:
            self._mux.aclose()
        await self._pool.close()  # bounded: 1 s

    async def _run(self) -> None:
        quiet_task()  # what the supervisor does for the app is not the app's, in redis-py's metrics
        while True:
            if self._state in DOWN:
                await self._prober.attempt()
            else:
                await self._health.wait_and_check()

    # -- the watcher interface the pool, client and pub/sub handles use -----------------

    def connection_lost(self, loss: Loss) -> None:
        """Record a broken connection; a failed command also makes new commands
        wait for the check that follows, so they do not dial a dead server."""
        self._health.lost(loss)

    def reply_claims(self, cause: Cause, error: str) -> None:
        """An error reply says the target is loading or a replica. Any server can send
        one (``DEBUG ERROR``, a module), so the next check decides; until then new
        commands wait for it, as after a failed command."""
        self._ctx.claims.setdefault(cause, error)
        self._ctx.command_failed()

    def unavailable(self, why: str) -> Unavailable:
        return self._ctx.refusal()(why)

    def pubsub_connection(self) -> AbstractConnection:
        return self._connection_class(**{**self._ctx.connection_kwargs, "protocol": 2})

    def track(self, handle: SupervisedPubSub, subscribed: bool) -> None:
        if subscribed:
            self._ctx.pubsubs.add(handle)
        else:
            self._ctx.pubsubs.discard(handle)

    def publish_resubscribed(self, **fields: Any) -> Resubscribed:
        return self._publish(Resubscribed, **fields)

    # -- the one place the state changes ------------------------------------------------

    def _transition(self, new: ConnectionState, cause: Cause | None, detail: str) -> None:
        """Change the state (``Observable._set_state``) and let the gate follow it."""
        previous, was = self._state, self._cause
        if not self._set_state(new, cause, detail):
            return
        ctx = self._ctx
        ctx.situation = None
        if self._cache is not None:
            self._cache.tracker.target_ready(new in _ANSWERING)
        if new is ConnectionState.READY and previous is ConnectionState.RECONNECTING:
            ctx.outages_by_cause[(cause or was or Cause.NETWORK).value] += 1
        if new is ConnectionState.READY:
            ctx.turned_away = None
            self._pool.allow_dialing(True)
            # only an outage renews the pool: after a stall (UNHEALTHY) or OVERLOADED the
            # same server answers on the same connections, and a command that timed out
            # meanwhile was that command's own, not a lost one
            self.gate.set(Admission.OPEN, new_generation=previous in DOWN)
        elif new is ConnectionState.OVERLOADED:
            self._pool.allow_dialing(False)
            self.gate.set(Admission.OPEN)
            ctx.dial_due = time.monotonic() + self.config.backoff_base
        elif new is ConnectionState.CLOSED:
            self.gate.set(Admission.REFUSING, ctx.refusal())
        else:
            ctx.admit_while_down(cause)
