"""Start, use and stop a supervisor against a real redis-server."""

from __future__ import annotations

import asyncio
import logging

import anyio
import pytest
import redis.asyncio
import structlog

from supervisor import (
    Cause,
    ConnectionState,
    ReconnectScheduled,
    Snapshot,
    StateChanged,
    Unavailable,
)
from tests.helpers.events import until
from tests.helpers.loops import poll
from tests.helpers.servers import free_port


async def test_commands_run_through_a_real_client(shared_server, supervise):
    """sup.client is a redis.asyncio.Redis and commands reach the server."""
    async with supervise(shared_server.url) as sup:
        assert isinstance(sup.client, redis.asyncio.Redis)
        await sup.wait_for(ConnectionState.READY, timeout=5)
        await sup.client.set("lifecycle:k", "v")
        assert await sup.client.get("lifecycle:k") == b"v"
        assert sup.state is ConnectionState.READY


async def test_client_name_is_set_on_every_connection(shared_server, supervise):
    """Every connection, the health probe's included, carries client_name."""
    admin = shared_server.admin()

    def named() -> list[str]:
        return [c["name"] for c in admin.client_list() if c["name"] == "myapp"]

    async with supervise(shared_server.url, client_name="myapp") as sup:
        await sup.wait_for(ConnectionState.READY, timeout=5)
        await sup.client.ping()
        # the probe's first connection joined the pool; the next round opens another
        await poll(lambda: len(named()) >= 2, "the pool's and the probe's connections", named)
    admin.close()


async def test_subscriber_gets_snapshot_then_numbered_events(shared_server, supervise):
    """A new subscriber first receives the current state, then every event, numbered."""
    async with supervise(shared_server.url) as sup, sup.subscribe() as events:
        first = await events.__anext__()
        assert isinstance(first, Snapshot)
        assert first.state is sup.state
        ready = await until(
            events, lambda e: isinstance(e, StateChanged) or (isinstance(e, Snapshot) and False)
        )
        assert isinstance(ready, StateChanged)
        assert ready.previous is ConnectionState.CONNECTING
        assert ready.current is ConnectionState.READY
        assert ready.seq > first.seq


async def test_entering_does_not_fail_when_redis_is_down(supervise):
    """Nothing listens on the port: entering works, the cause is NETWORK, commands
    fail with a clear error at their deadline instead of hanging."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    async with supervise(url, command_deadline=0.5) as sup:
        async with sup.subscribe() as events:
            attempt = await until(events, lambda e: isinstance(e, ReconnectScheduled))
            assert attempt.cause is Cause.NETWORK
            assert "refused" in attempt.detail.lower() or "111" in attempt.detail
        with pytest.raises(Unavailable, match="network") as info:
            with anyio.fail_after(5):
                await sup.client.get("k")
        assert info.value.cause is Cause.NETWORK
        with pytest.raises(TimeoutError, match="connecting"):
            await sup.wait_for(ConnectionState.READY, timeout=0.2)


async def test_leaving_stops_every_task_and_closes_the_pool(shared_server, supervise):
    """After the block: state CLOSED, subscriptions ended, no task left, pool empty."""
    before = asyncio.all_tasks()
    async with supervise(shared_server.url) as sup:
        await sup.wait_for(ConnectionState.READY, timeout=5)
        await sup.client.get("k")
        async with sup.subscribe() as events:
            pass
    assert sup.state is ConnectionState.CLOSED
    assert asyncio.all_tasks() == before
    assert [type(e) async for e in events] == [Snapshot]  # buffered, then the end
    assert "pool 0/" in repr(sup)
    assert all(not c.is_connected for c in sup._pool._available_connections)
    with pytest.raises(Unavailable, match="closed"):
        await sup.client.get("k")


async def test_subscription_ends_when_supervisor_closes(shared_server, supervise):
    """A subscriber loop ends cleanly when the supervisor stops."""
    seen = []
    async with supervise(shared_server.url) as sup, sup.subscribe() as events:
        async with anyio.create_task_group() as tg:

            async def consume():
                async for event in events:
                    seen.append(event)

            tg.start_soon(consume)
            await sup.wait_for(ConnectionState.READY, timeout=5)
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
    assert isinstance(seen[0], Snapshot)


async def test_library_logs_through_stdlib_logging_and_prints_nothing(
    shared_server, supervise, capfd
):
    """An app that did not configure structlog gets standard logging records on the
    logger "supervisor" (level filtering works), and nothing is printed on its own."""
    structlog.reset_defaults()  # as in an app that never configured structlog
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("supervisor")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        async with supervise(shared_server.url) as sup:
            await sup.wait_for(ConnectionState.READY, timeout=5)
        logger.setLevel(logging.WARNING)
        async with supervise(shared_server.url) as sup:
            await sup.wait_for(ConnectionState.READY, timeout=5)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    changes = [(r.event, r.fields["current"]) for r in records]  # type: ignore[attr-defined]
    assert changes == [("state_changed", "ready"), ("state_changed", "closed")]
    assert records[0].fields["target"] == sup.target  # type: ignore[attr-defined]


async def test_leaving_during_a_stall_closes_every_socket(server, supervise):
    """Six pub/sub handles and a busy pool when the server is stopped (SIGSTOP): each
    handle's close waits at most its own bound, side by side, and the pool's sockets are
    closed anyway; once the server runs again it sees none of the supervisor's
    connections left (a leaked socket would stay a client of it)."""
    admin = server.admin()
    try:
        async with supervise(server.url, health_check_timeout=1.0) as sup:
            await sup.wait_for(ConnectionState.READY, timeout=5)
            handles = [sup.pubsub() for _ in range(6)]
            for i, handle in enumerate(handles):
                await handle.subscribe(f"channel-{i}")
            async with anyio.create_task_group() as tg:
                for _ in range(8):
                    tg.start_soon(sup.client.blpop, ["nothing"], 0.2)
            assert len(admin.client_list()) >= 8
            server.stop()
        server.cont()
        await poll(
            lambda: len(admin.client_list()) == 1,
            "only the test's own admin connection left on the server",
            lambda: [c["name"] or c["cmd"] for c in admin.client_list()],
        )
    finally:
        server.cont()
        admin.close()
