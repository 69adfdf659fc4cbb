"""The Sentinel locator alone: an announced new master moves every new connection (pool,
probe, pub/sub) and is told once; the first discovery moves nothing that was told."""

from __future__ import annotations

import anyio

from supervisor.causes import Cause
from supervisor.state import ConnectionState
from supervisor.targets.locator import SentinelLocator
from supervisor.targets.sentinel import SentinelNotice
from supervisor.testing import free_port
from tests.helpers.servers import RedisServer
from tests.targets.parts import close, parts_context, silent_sentinels


async def test_switch_master_moves_every_new_connection(shared_server: RedisServer) -> None:
    ctx, board = parts_context(shared_server.url)
    ctx.wake, ctx.hint = anyio.Event(), anyio.Event()
    locator = SentinelLocator(ctx, silent_sentinels())
    try:
        with anyio.fail_after(5):
            ctx.facts = await ctx.probe.open()
            board.state = ConnectionState.READY
            old = f"127.0.0.1:{shared_server.port}"
            await locator.on_notice(
                SentinelNotice("switch-master", "mymaster moved", ("127.0.0.1", 7999))
            )
    finally:
        await close(ctx)
    assert [(t[0], t[1]) for t in board.transitions] == [
        (ConnectionState.RECONNECTING, Cause.FAILOVER)
    ]
    for kwargs in (ctx.connection_kwargs, ctx.pool.connection_kwargs, ctx.probe_kwargs):
        assert (kwargs["host"], kwargs["port"]) == ("127.0.0.1", 7999)
    [fields] = [f for k, f in board.events if k.__name__ == "MasterChanged"]
    assert (fields["old"], fields["new"]) == (old, "127.0.0.1:7999")
    assert ctx.hint.is_set(), "the prober tries the new master at once"


async def test_the_first_discovery_moves_silently() -> None:
    ctx, board = parts_context(f"redis://127.0.0.1:{free_port()}/0")
    locator = SentinelLocator(ctx, silent_sentinels())
    await locator.follow(("127.0.0.1", 7998), Cause.FAILOVER)
    await close(ctx)
    assert ctx.address == ("127.0.0.1", 7998)
    assert board.events == []
