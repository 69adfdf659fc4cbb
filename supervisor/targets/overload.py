"""Overload handling: the server answers but turns new connections away (``maxclients``).

Commands run on the connections that exist (the gate stays open for them); only this
part dials, one new connection at a time on the turned-away schedule, and the target
is READY again once one is accepted.
"""

from __future__ import annotations

import time

import anyio
from redis.exceptions import RedisError

from supervisor.causes import Cause, Evidence, attribute
from supervisor.connection.gate import Admission
from supervisor.connection.losses import describe
from supervisor.connection.probe import drop
from supervisor.connection.schedule import Showed, showed_by
from supervisor.state import ConnectionState
from supervisor.targets.context import Context
from supervisor.targets.prober import Prober

__all__ = ("OVERLOADED", "Overload")

OVERLOADED = (
    "new connections are turned away ({error}) while existing ones answer: commands run on "
    "those or wait for one to be released, and one new connection is tried at a time"
)


class Overload:
    def __init__(self, ctx: Context, prober: Prober) -> None:
        self._ctx = ctx
        self._prober = prober

    def enter(self, cause: Cause, error: str) -> None:
        """New connections are turned away while the server answers: serve from the
        connections that exist and dial only from here."""
        ctx = self._ctx
        if ctx.status.state is ConnectionState.OVERLOADED:
            ctx.gate.set(Admission.OPEN)
        else:
            ctx.transition(ConnectionState.OVERLOADED, cause, OVERLOADED.format(error=error))

    @property
    def dial_due(self) -> bool:
        ctx = self._ctx
        return ctx.status.state is ConnectionState.OVERLOADED and time.monotonic() >= ctx.dial_due

    async def dial_once(self) -> None:
        """Try one new connection. Accepted, it joins the pool and the target is READY;
        refused, nothing listens any more; turned away, wait longer."""
        ctx = self._ctx
        conn = ctx.pool.make_connection()  # type: ignore[no-untyped-call]
        timeout = ctx.config.socket_connect_timeout + ctx.config.health_check_timeout
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
                ctx.transition(ConnectionState.RECONNECTING, cause, detail)
                return
            if cause is not Cause.MAXCLIENTS:
                cause = Cause.NETWORK
            ctx.dial_due = time.monotonic() + self._prober.failed(
                cause, OVERLOADED.format(error=error), showed
            )
            return
        await ctx.pool.adopt(conn)
        ctx.schedule.reset()
        ctx.transition(
            ConnectionState.READY, ctx.status.cause, "a new connection was accepted again"
        )
