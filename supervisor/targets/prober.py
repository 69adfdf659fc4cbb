"""The prober: while the target is down, one attempt at a time, as the evidence allows.

Each failed attempt is counted and its wait taken from the ``Schedule`` (what the
attempt showed decides it). Refused past a restart's gap, it waits on the process's
``Doorbell`` instead, which knocks for every target on one timer. The attempt that
succeeds hands its connection to the first waiting command.
"""

from __future__ import annotations

import asyncio
import time

import anyio

from supervisor.causes import Cause
from supervisor.connection.doorbell import Doorbell, Watch
from supervisor.connection.probe import ProbeFailed, ServerFacts
from supervisor.connection.schedule import REFUSED_SLOW, Showed
from supervisor.events import ReconnectScheduled
from supervisor.state import ConnectionState
from supervisor.targets.context import Context
from supervisor.targets.locator import SentinelLocator

__all__ = ("Prober",)

_RETRYING = {
    Showed.REFUSED: "{detail}; nothing listens: trying again every refused_interval until it "
    "accepts (a refused connect costs the server nothing)",
    Showed.TURNED_AWAY: "{detail}; each attempt costs the server, so the wait grows to backoff_cap",
    Showed.AUTH: "{detail}; waiting does not fix credentials: trying again every "
    "auth_retry_interval",
    Showed.TLS: "{detail}; waiting does not fix the TLS setup: trying again every "
    "auth_retry_interval",
    Showed.SETUP: "{detail}; waiting does not fix the url: trying again every auth_retry_interval",
}


class Prober:
    def __init__(self, ctx: Context, locator: SentinelLocator | None, *, adoptable: bool) -> None:
        self._ctx = ctx
        self._locator = locator
        self._adoptable = adoptable
        """The probe's connections are built like the pool's: one may join the pool."""

    async def attempt(self) -> None:
        """Wait for the attempt's time (or a hint), then try once."""
        ctx = self._ctx
        wait = ctx.attempt_due - time.monotonic()
        knocked = False
        if wait > 0:
            if self._refused_slowly():
                knocked = await self._knock_until_answered()
            else:
                await self._rest(wait)
        if self._locator is not None:
            try:
                await self._locator.discover_if_due()
            except ProbeFailed as failure:
                self.retry_later(failure.cause, failure.detail, failure.showed, "sentinels")
                return
        try:
            if not knocked and ctx.situation is not None and ctx.situation[1] is Showed.REFUSED:
                await ctx.probe.knock()
            facts = await ctx.probe.open(ctx.facts)
        except ProbeFailed as failure:
            self.retry_later(failure.cause, failure.detail, failure.showed)
            return
        if self._needs_master() and facts.role != "master":
            await ctx.probe.close()
            detail = f"the server is a replica (role {facts.role}); writes would fail"
            self.retry_later(Cause.READONLY, detail, Showed.TURNED_AWAY)
            return
        self._recovered(facts)
        # the first waiting command gets the connection that just proved the target is
        # back (no second handshake before it is served); the probe reopens with the
        # next round, one interval later, off the commands' path
        if self._adoptable:
            connection = ctx.probe.detach()
            if connection is not None:
                await ctx.pool.adopt(connection)
        ctx.next_round_in_a_period()

    async def _rest(self, delay: float) -> None:
        """Wait ``delay`` seconds, or less if a hint comes. A timer that gives the hint
        itself is one callback where a cancel scope's deadline is several: this wait
        comes between every two attempts of a long outage."""
        hint = self._ctx.hint
        assert hint is not None
        timer = asyncio.get_running_loop().call_later(delay, hint.set)
        try:
            await hint.wait()
        finally:
            timer.cancel()
        self._ctx.hint = anyio.Event()

    async def _knock_until_answered(self) -> bool:
        """Refused for a while: wait while the process's doorbell knocks (every target
        of the process on one timer), until something other than a refusal answers
        (True) or a hint comes (False). None of the refused knocks wakes this task."""
        ctx = self._ctx
        hint = ctx.hint
        assert hint is not None
        where = ctx.probe.knock_address()
        assert where is not None
        answered = False

        def on_answer() -> None:
            nonlocal answered
            answered = True
            hint.set()

        bell = Doorbell.for_loop(REFUSED_SLOW)
        interval = max(ctx.config.refused_interval, REFUSED_SLOW)
        watch = Watch(*where, interval, self._refused_knock, on_answer)
        bell.watch(watch)
        try:
            await hint.wait()
        finally:
            bell.leave(watch)
        ctx.hint = anyio.Event()
        return answered

    def _refused_knock(self) -> None:
        self._ctx.attempt_failed(Cause.NETWORK)
        self._ctx.schedule.next_delay(Showed.REFUSED)

    def _refused_slowly(self) -> bool:
        """Refused past a restart's gap, at an address a bare connect can knock on (not a
        host name), and not a Sentinel target (its discovery runs between attempts)."""
        ctx = self._ctx
        return (
            ctx.situation is not None
            and ctx.situation[1] is Showed.REFUSED
            and ctx.schedule.refused_slowly
            and ctx.sentinel is None
            and ctx.probe.knock_address() is not None
        )

    def _needs_master(self) -> bool:
        """A READONLY reply proved the app writes; a Sentinel master target always does."""
        ctx = self._ctx
        if ctx.sentinel is not None:
            return ctx.config.role == "master"
        return ctx.status.cause is Cause.READONLY

    def retry_later(
        self, cause: Cause, detail: str, showed: Showed, source: str = "target"
    ) -> None:
        self._ctx.attempt_due = time.monotonic() + self.failed(cause, detail, showed, source)

    def failed(self, cause: Cause, detail: str, showed: Showed, source: str = "target") -> float:
        """Count a failed attempt and return the wait before the next one. One event
        (and one log line) per situation: a new cause, a new kind of answer, or a new
        source of it (the target, or the sentinels that should name it)."""
        ctx = self._ctx
        ctx.attempt_failed(cause)
        ctx.reason(cause, detail)
        if ctx.status.state is not ConnectionState.OVERLOADED:
            ctx.admit_while_down(cause)
        delay = ctx.schedule.next_delay(showed)
        if ctx.situation != (cause, showed, source):
            ctx.situation = (cause, showed, source)
            ctx.publish(
                ReconnectScheduled,
                attempt=ctx.schedule.attempts,
                delay=round(delay, 3),
                cause=cause,
                detail=_RETRYING[showed].format(detail=detail),
            )
        return delay

    def _recovered(self, facts: ServerFacts) -> None:
        ctx = self._ctx
        ctx.alert_refusals()
        previous, down_cause = ctx.facts, ctx.status.cause
        ctx.claims.clear()
        ctx.master_seen = ctx.master_seen or facts.role == "master"
        ctx.schedule.reset()
        ctx.losses.clear()
        if ctx.status.state is ConnectionState.CONNECTING:
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
        ctx.facts = facts
        ctx.transition(ConnectionState.READY, cause, detail)
