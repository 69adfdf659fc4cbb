"""The health round alone, against a real server: a round reads the facts, a stall at
any step is UNHEALTHY at the check's one deadline, and a loss is attributed by the
next round's facts."""

from __future__ import annotations

import anyio

from supervisor.causes import Cause
from supervisor.connection.losses import Loss
from supervisor.state import ConnectionState
from supervisor.targets.health import HealthRound
from supervisor.targets.overload import Overload
from supervisor.targets.prober import Prober
from tests.helpers.servers import RedisServer
from tests.targets.parts import close, parts_context


def _health(url: str, **settings: object) -> tuple[HealthRound, object, object]:
    ctx, board = parts_context(url, **settings)
    ctx.wake, ctx.hint = anyio.Event(), anyio.Event()
    board.state = ConnectionState.READY
    prober = Prober(ctx, None, adoptable=True)
    return HealthRound(ctx, prober, Overload(ctx, prober)), ctx, board


async def test_a_round_reads_the_facts_and_a_lost_connection_is_attributed(
    shared_server: RedisServer,
) -> None:
    health, ctx, board = _health(shared_server.url)
    try:
        with anyio.fail_after(10):
            await health.wait_and_check()
            assert ctx.health_checks == 1 and ctx.facts is not None
            health.lost(Loss("Connection closed by server.", 1.0, command_failed=False))
            ctx.round_due = 0.0
            await health.wait_and_check()
    finally:
        await close(ctx)
    assert ctx.connections_lost == 1
    lost = [fields for kind, fields in board.events if kind.__name__ == "ConnectionLost"]
    assert len(lost) == 1 and lost[0]["detail"].startswith("1 connection: "), board.events
    assert board.transitions == [], "a loss on a server that answers changes no state"


async def test_a_stall_in_a_round_is_unhealthy_at_the_checks_deadline(server: RedisServer) -> None:
    health, ctx, board = _health(server.url, health_check_timeout=0.3)
    try:
        with anyio.fail_after(10):
            await health.wait_and_check()  # opens the probe
            server.stop()
            ctx.round_due = 0.0
            await health.wait_and_check()
    finally:
        server.cont()
        await close(ctx)
    assert [(t[0], t[1]) for t in board.transitions] == [
        (ConnectionState.UNHEALTHY, Cause.NETWORK)
    ], board.transitions
    assert "within health_check_timeout=0.3 s" in board.transitions[0][2]
    assert "HealthCheckFailed" in board.kinds()
