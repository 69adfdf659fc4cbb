"""The prober alone, against real ports: a failed attempt is counted and scheduled (one
event per situation), a successful one is READY and hands its connection to the pool."""

from __future__ import annotations

import anyio

from supervisor.causes import Cause
from supervisor.connection.gate import Admission
from supervisor.connection.schedule import Showed
from supervisor.state import ConnectionState
from supervisor.targets.prober import Prober
from supervisor.testing import free_port
from tests.helpers.servers import RedisServer
from tests.targets.parts import close, parts_context, silent_sentinels


async def test_refused_attempts_are_counted_and_told_once_per_situation() -> None:
    ctx, board = parts_context(f"redis://127.0.0.1:{free_port()}/0")
    ctx.hint = anyio.Event()
    prober = Prober(ctx, None, adoptable=True)
    try:
        with anyio.fail_after(5):
            for _ in range(3):
                await prober.attempt()
    finally:
        await close(ctx)
    assert ctx.connect_attempts == 3
    assert ctx.attempts_by_cause == {"network": 3}
    assert ctx.situation == (Cause.NETWORK, Showed.REFUSED, "target")
    assert board.kinds() == ["ReconnectScheduled"], board.events
    assert ctx.gate.admission is Admission.DOWN
    assert board.cause is Cause.NETWORK and "refused" in board.detail.lower()


async def test_a_successful_attempt_is_ready_and_its_connection_joins_the_pool(
    shared_server: RedisServer,
) -> None:
    ctx, board = parts_context(shared_server.url)
    ctx.hint = anyio.Event()
    prober = Prober(ctx, None, adoptable=True)
    try:
        with anyio.fail_after(5):
            await prober.attempt()
        assert [t[0] for t in board.transitions] == [ConnectionState.READY]
        assert board.transitions[0][2].startswith("connected to ")
        assert ctx.facts is not None and ctx.facts.role == "master"
        assert len(ctx.pool._available_connections) == 1, "the probe's connection was adopted"
        assert not ctx.probe.is_open
    finally:
        await close(ctx)


async def test_sentinels_that_do_not_answer_are_a_situation_of_their_own() -> None:
    """The master reset a connection, then no sentinel answers: the same cause and kind of
    answer, from another source, is told (it names the sentinels), once."""
    from supervisor.targets.locator import SentinelLocator

    ctx, board = parts_context(
        f"redis://127.0.0.1:{free_port()}/0", backoff_base=0.05, backoff_cap=0.05
    )
    ctx.hint = anyio.Event()
    sentinels = silent_sentinels()
    prober = Prober(ctx, SentinelLocator(ctx, sentinels), adoptable=True)
    try:
        prober.retry_later(Cause.NETWORK, "Connection reset by peer", Showed.TURNED_AWAY)
        with anyio.fail_after(5):
            for _ in range(3):
                await prober.attempt()
    finally:
        await close(ctx)
    told = [f["detail"] for kind, f in board.events if kind.__name__ == "ReconnectScheduled"]
    assert "reset" in told[0] and "no sentinel answered" in told[1], told
    assert sum("no sentinel answered" in t for t in told) == 1, told  # once per situation
