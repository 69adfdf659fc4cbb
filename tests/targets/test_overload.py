"""Overload handling alone, against a real server at ``maxclients``: a turned-away dial is
scheduled on the turned-away backoff; an accepted one is READY and joins the pool."""

from __future__ import annotations

import time

import anyio

from supervisor.causes import Cause
from supervisor.state import ConnectionState
from supervisor.targets.overload import Overload
from supervisor.targets.prober import Prober
from tests.helpers.servers import RedisServer
from tests.targets.parts import close, parts_context


async def test_one_dial_at_a_time_until_the_server_accepts_again(server: RedisServer) -> None:
    ctx, board = parts_context(server.url, backoff_base=0.05, backoff_cap=0.05)
    ctx.hint = anyio.Event()
    board.state = ConnectionState.OVERLOADED
    overload = Overload(ctx, Prober(ctx, None, adoptable=True))
    admin = server.admin()
    clients = int(admin.info("clients")["connected_clients"])
    admin.config_set("maxclients", clients)
    try:
        with anyio.fail_after(10):
            await overload.dial_once()
            assert board.transitions == []
            assert ctx.attempts_by_cause == {"maxclients": 1}
            assert ctx.dial_due > time.monotonic() - 1
            [(kind, fields)] = board.events
            assert kind.__name__ == "ReconnectScheduled" and fields["cause"] is Cause.MAXCLIENTS
            admin.config_set("maxclients", 100)
            await overload.dial_once()
        assert [t[0] for t in board.transitions] == [ConnectionState.READY]
        assert len(ctx.pool._available_connections) == 1
    finally:
        admin.close()
        await close(ctx)
