"""The health round: while commands are served, is the target still what it was?

A full round (PING, the server facts, the pub/sub output-buffer sample, the idle
refresh) runs once per ``health_check_interval``; a failed command costs one PING.
Every step of a check runs under the one ``health_check_timeout`` that governs the
whole. Lost connections are attributed here, from the facts a round reads.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import replace

import anyio

from supervisor.causes import Cause, Evidence, attribute
from supervisor.connection.gate import Admission
from supervisor.connection.losses import Loss
from supervisor.connection.probe import ProbeFailed, ServerFacts
from supervisor.events import ConnectionLost, HealthCheckFailed
from supervisor.state import ConnectionState
from supervisor.targets.context import SERVING, Context
from supervisor.targets.overload import Overload
from supervisor.targets.prober import Prober

__all__ = ("HealthRound",)


class HealthRound:
    def __init__(self, ctx: Context, prober: Prober, overload: Overload) -> None:
        self._ctx = ctx
        self._prober = prober
        self._overload = overload
        self._failing: tuple[Cause, str] | None = None
        """The failure last told (``HealthCheckFailed``), until the target is READY again."""

    async def wait_and_check(self) -> None:
        """Sleep until the next round (or, when overloaded, the next new connection to
        try) unless a failed command asks for a check first."""
        ctx = self._ctx
        wake = ctx.wake
        assert wake is not None
        due = ctx.round_due
        if ctx.status.state is ConnectionState.OVERLOADED:
            due = min(due, ctx.dial_due)
        with anyio.move_on_after(max(0.0, due - time.monotonic())):
            await wake.wait()
        ctx.wake = anyio.Event()
        if ctx.status.state not in SERVING:
            return
        if time.monotonic() >= ctx.round_due:
            await self._round()
        elif wake.is_set():
            await self._within_deadline(self._verify_steps)
        if self._overload.dial_due:
            await self._overload.dial_once()

    async def _round(self) -> None:
        ctx = self._ctx
        if ctx.status.state is ConnectionState.READY:
            self._failing = None
        ctx.next_round_in_a_period()
        if ctx.status.state is ConnectionState.OVERLOADED and not ctx.probe.is_open:
            return  # reopening it would be a second dial; the prober's attempts tell
        ctx.health_checks += 1
        await self._within_deadline(self._round_steps)

    async def _within_deadline(self, check: Callable[[], Awaitable[None]]) -> None:
        """Run every step of a check under the one ``health_check_timeout``: a server
        that stops at any point of it is seen at that deadline."""
        ctx = self._ctx
        timeout = ctx.config.health_check_timeout
        ctx.probe.step = None
        with anyio.move_on_after(timeout) as scope:
            await check()
        if scope.cancelled_caught:
            step = ctx.probe.step or "the PING of idle connections"
            await ctx.probe.close()
            failure = ProbeFailed(
                Cause.NETWORK,
                f"no reply to {step} within health_check_timeout={timeout:g} s, the bound "
                "of the whole check (server stalled or packets dropped)",
                stalled=True,
            )
            await self._check_failed(failure, reopen=False)

    async def _round_steps(self) -> None:
        ctx = self._ctx
        failed_before = ctx.failed_commands
        opening = not ctx.probe.is_open
        try:
            if opening:
                facts = await ctx.probe.open()
            else:
                await ctx.probe.ping()
                facts = await self._current_facts()
            await self._sample_output_buffers()
        except ProbeFailed as failure:
            ctx.claims.clear()
            await self._check_failed(failure, reopen=not opening)
            return
        if self._demoted(facts):
            return
        self._healthy(facts, failed_before)
        refresh_after = (facts.idle_timeout or 0) / 3 or float("inf")
        await ctx.pool.refresh_idle(refresh_after, ctx.config.health_check_timeout)
        if ctx.mux is not None:
            await ctx.mux.refresh_idle(refresh_after)

    async def _verify_steps(self) -> None:
        """A command failed: one PING says whether the server still answers (a LOADING
        server does not); a READONLY reply also costs an ``INFO`` for the role."""
        ctx = self._ctx
        failed_before = ctx.failed_commands
        opening = not ctx.probe.is_open
        if opening and ctx.status.state is ConnectionState.OVERLOADED:
            ctx.claims.clear()
            ctx.gate.set(Admission.OPEN)  # only the prober dials while overloaded
            return
        try:
            if opening:
                facts: ServerFacts | None = await ctx.probe.open()
            else:
                await ctx.probe.ping()
                facts = await ctx.probe.facts(ctx.facts) if ctx.claims else None
        except ProbeFailed as failure:
            ctx.claims.clear()
            await self._check_failed(failure, reopen=not opening)
            return
        if facts is not None and self._demoted(facts):
            return
        self._healthy(facts, failed_before)

    def _demoted(self, facts: ServerFacts) -> bool:
        """Judge what error replies claimed against the server's own facts: a READONLY
        from a target that was a master (or must be one) while it now is a replica is a
        failover behind one address. Otherwise the replies were answers."""
        ctx = self._ctx
        claims, ctx.claims = ctx.claims, {}
        if facts.role == "master":
            ctx.master_seen = True
        wants_master = ctx.master_seen or (ctx.sentinel is not None and ctx.config.role == "master")
        if Cause.READONLY not in claims or not wants_master or facts.role == "master":
            return False
        ctx.transition(
            ConnectionState.RECONNECTING,
            Cause.READONLY,
            f"{claims[Cause.READONLY]}: the server became a replica (role {facts.role}; "
            "failover?); reconnecting until the URL leads to a master",
        )
        return True

    async def _sample_output_buffers(self) -> None:
        """Record how much output the server holds for each pub/sub connection: the
        evidence that names OUTPUT_BUFFER_LIMIT when the server then closes one; a
        sample of 0 also dates the handle's last moment with nothing left unsent."""
        ctx = self._ctx
        handles = {h.client_id: h for h in ctx.pubsubs if h.client_id is not None}
        if handles:
            sampled_at = time.time()
            sampled = await ctx.probe.output_buffers(list(handles))
            for client_id, handle in handles.items():
                omem = sampled.get(client_id)
                if omem is not None:
                    handle.output_buffer_seen = max(handle.output_buffer_seen, omem)
                    if omem == 0:
                        handle.mark_caught_up(sampled_at)
                elif "CLIENT LIST" not in ctx.probe.refused and handle.client_id == client_id:
                    loss = handle.gone_from_server()
                    if loss is not None:
                        self.lost(replace(loss, command_failed=False))

    def lost(self, loss: Loss) -> None:
        """A connection broke: the next check's facts attribute it. A new connection the
        server turned away is a failed connection attempt, counted as the prober's are:
        the server counts it too (``rejected_connections``)."""
        ctx = self._ctx
        if len(ctx.losses) < _MAX_PENDING_LOSSES and not loss.turned_away:
            ctx.losses.append(loss)
        if loss.turned_away:
            ctx.turned_away = loss
            ctx.attempt_failed(attribute(Evidence(error=loss.error, reachable=True))[0])
        if loss.command_failed:
            ctx.command_failed()

    async def _current_facts(self) -> ServerFacts:
        """Full ``INFO`` only when a loss needs attributing; otherwise refresh the
        idle timeout, which the application's admin may change at any time, and the
        ``INFO stats`` counters, so the sample before a loss is at most a round old."""
        ctx = self._ctx
        if ctx.losses or ctx.claims or ctx.facts is None:
            return await ctx.probe.facts()
        facts = await ctx.probe.counters(ctx.facts)
        return replace(facts, idle_timeout=await ctx.probe.idle_timeout())

    async def _check_failed(self, failure: ProbeFailed, *, reopen: bool) -> None:
        """A lost probe connection is reopened at once (unless the failure was an
        opening already): if that works, the server is up and the loss is attributed
        like any other (ConnectionLost); if not, the check failed and the state follows."""
        ctx = self._ctx
        if reopen and not failure.stalled:
            ctx.losses.append(Loss(failure.detail, None, command_failed=False))
            try:
                facts = await ctx.probe.open()
            except ProbeFailed as again:
                failure = again
            else:
                self._healthy(facts, ctx.failed_commands)
                return
        said = (failure.cause, failure.detail)
        if said != self._failing:
            # a stall fails every round the same way: told once, until a check passes
            self._failing = said
            ctx.publish(HealthCheckFailed, cause=failure.cause, detail=failure.detail)
        state = ctx.status.state
        answering = state in (ConnectionState.READY, ConnectionState.OVERLOADED)
        if failure.stalled:
            if answering:
                ctx.transition(ConnectionState.UNHEALTHY, Cause.NETWORK, failure.detail)
        elif failure.cause is Cause.MAXCLIENTS and answering:
            # the server answered, so it is up: the pool's connections may still work
            ctx.attempt_failed(Cause.MAXCLIENTS)  # the (re)opening was turned away
            self._overload.enter(Cause.MAXCLIENTS, failure.detail)
        else:
            ctx.transition(ConnectionState.RECONNECTING, failure.cause, failure.detail)
            # the reopen was the first attempt: the schedule goes on from it
            self._prober.retry_later(failure.cause, failure.detail, failure.showed)

    def _healthy(self, facts: ServerFacts | None, failed_before: int) -> None:
        ctx = self._ctx
        self._failing = None
        ctx.alert_refusals()
        before = ctx.facts
        if facts is not None:
            self._attribute_losses(facts)
        status = ctx.status
        # during a failover the old master answers until Sentinel moves it: wait for the
        # verdict, but not forever (a leader that died mid-failover announces nothing)
        if (
            status.state is ConnectionState.UNHEALTHY
            and status.cause is Cause.FAILOVER
            and time.monotonic() - status.changed_at < ctx.config.command_deadline
        ):
            return
        if status.state is ConnectionState.UNHEALTHY:
            ctx.transition(ConnectionState.READY, status.cause, "answers health checks again")
            if facts is not None and before is not None and facts.run_id != before.run_id:
                ctx.gate.set(Admission.OPEN, new_generation=True)  # restarted while stalled
        elif ctx.gate.admission is Admission.VERIFYING:
            turned_away, ctx.turned_away = ctx.turned_away, None
            cause = None
            if turned_away is not None:
                cause, _ = attribute(Evidence(error=turned_away.error, reachable=True))
            if turned_away is not None and cause is Cause.MAXCLIENTS:
                # the server said so; a reset during a handshake (CLIENT KILL) does not
                self._overload.enter(cause, turned_away.error)
            elif ctx.failed_commands == failed_before:
                ctx.gate.set(Admission.OPEN)
            else:
                ctx.check_now()

    def _attribute_losses(self, facts: ServerFacts) -> None:
        ctx = self._ctx
        losses, ctx.losses = ctx.losses, []
        before = ctx.facts
        ctx.facts = facts
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
        ctx.connections_lost += len(losses)
        for (cause, detail), count in found.items():
            ctx.lost_by_cause[cause.value] += count
            text = f"{count} connection{'s' if count > 1 else ''}: {detail}"
            ctx.publish(ConnectionLost, cause=cause, detail=text)
            if cause is Cause.SERVER_RESTART and ctx.status.state is ConnectionState.READY:
                ctx.gate.set(Admission.OPEN, new_generation=True)


_MAX_PENDING_LOSSES = 1000


def _delta(before: ServerFacts | None, after: ServerFacts, name: str) -> int | None:
    if before is None:
        return None
    a, b = getattr(before, name), getattr(after, name)
    return b - a if a is not None and b is not None else None
