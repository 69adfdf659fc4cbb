"""Supervised pub/sub against a real redis-server: no subscription silently lost."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest
from structlog.testing import capture_logs

from supervisor import (
    Cause,
    ConnectionState,
    Message,
    Resubscribed,
    StateChanged,
)
from tests.helpers.events import Recorder, health_rounds, until

READY = ConnectionState.READY


async def stalled_long_enough(sup, events) -> None:
    """The supervisor saw the stall and ran two more checks: by then the subscribed
    PING (interval + timeout) has failed too."""
    await until(events, lambda e: isinstance(e, StateChanged))
    await health_rounds(sup, 2)


async def next_item(ps, bound: float = 15.0):
    with anyio.fail_after(bound):
        return await ps.__anext__()


async def test_subscribe_receives_messages(shared_server, supervise):
    """subscribe/psubscribe confirm before returning; messages arrive in order."""
    admin = shared_server.admin()
    async with supervise(shared_server.url) as sup, sup.pubsub() as ps:
        await ps.subscribe("news")
        await ps.psubscribe("log.*")
        assert admin.publish("news", "a") == 1
        assert admin.publish("log.x", "b") == 1
        first, second = await next_item(ps), await next_item(ps)
        assert first == Message("message", b"news", b"a")
        assert second == Message("pmessage", b"log.x", b"b", pattern=b"log.*")
        await ps.unsubscribe("news")
        await ps.punsubscribe("log.*")
    assert ps.closed
    admin.close()


async def test_sharded_subscribe(shared_server, supervise):
    """ssubscribe works on Redis 7."""
    admin = shared_server.admin()
    async with supervise(shared_server.url) as sup, sup.pubsub() as ps:
        await ps.ssubscribe("shard")
        assert admin.execute_command("SPUBLISH", "shard", "x") == 1
        assert await next_item(ps) == Message("smessage", b"shard", b"x")
    admin.close()


@pytest.mark.parametrize("fault", ["client_kill", "restart"])
async def test_resubscribes_after_loss_with_cause(server, supervise, fault):
    """After CLIENT KILL or a restart: re-subscribed to every channel and pattern,
    a Resubscribed marker with the cause and window, then messages flow again."""
    admin = server.admin()
    async with supervise(server.url) as sup, sup.pubsub() as ps:
        await ps.subscribe("a", "b")
        await ps.psubscribe("p.*")
        async with sup.subscribe() as events:
            if fault == "client_kill":
                admin.client_kill_filter(_type="pubsub")
                expected = Cause.SERVER_CLOSED
            else:
                server.kill()
                await until(events, lambda e: isinstance(e, StateChanged))
                server.start()
                admin.close()
                admin = server.admin()
                expected = Cause.SERVER_RESTART
            marker = await next_item(ps)
            assert isinstance(marker, Resubscribed)
            assert marker.cause is expected, marker
            assert marker.channels == ("a", "b")
            assert marker.patterns == ("p.*",)
            assert marker.down_at <= marker.up_at
            assert "resync" in marker.detail
            published = await until(events, lambda e: isinstance(e, Resubscribed))
            assert published == marker
        assert admin.publish("b", "after") == 1
        assert admin.publish("p.q", "after") == 1
        assert await next_item(ps) == Message("message", b"b", b"after")
        assert await next_item(ps) == Message("pmessage", b"p.q", b"after", pattern=b"p.*")
    admin.close()


async def test_output_buffer_eviction_is_attributed(server, supervise):
    """A consumer that does not read while a publisher floods is evicted by
    client-output-buffer-limit: cause OUTPUT_BUFFER_LIMIT, re-subscribed, and the
    marker names the affected channels."""
    admin = server.admin()
    admin.config_set("client-output-buffer-limit", "pubsub 64kb 32kb 1")
    async with supervise(server.url) as sup, sup.pubsub() as ps:
        await ps.subscribe("flood")
        payload = "x" * 1024
        with anyio.fail_after(30):
            # fill the socket buffers, then keep the server's output buffer over the
            # soft limit (bounded: the hard limit ends it by 64 kB of server backlog)
            for _ in range(20000):
                if admin.publish("flood", payload) == 0:
                    break
                client = [c for c in admin.client_list(_type="pubsub")]
                if client and int(client[0]["omem"]) > 40000:
                    await anyio.sleep(0.05)  # trickle: the soft limit counts seconds
            else:
                pytest.fail("the server never evicted the slow consumer")
        assert admin.publish("flood", "after") == 0  # nobody subscribed: no zombie
        item = await next_item(ps)
        while isinstance(item, Message):
            item = await next_item(ps)
        assert isinstance(item, Resubscribed)
        assert item.cause is Cause.OUTPUT_BUFFER_LIMIT, item
        assert item.channels == ("flood",)
        assert "pubsub hard 65536" in item.detail
        assert admin.publish("flood", "fresh") == 1
        assert await next_item(ps) == Message("message", b"flood", b"fresh")
    admin.close()


async def test_idle_subscriber_survives_server_timeout(server, supervise):
    """Pub/sub connections outlive `timeout`: still subscribed after idling past it."""
    admin = server.admin()
    admin.config_set("timeout", 1)
    async with supervise(server.url) as sup, sup.pubsub() as ps:
        await ps.subscribe("quiet")
        async with anyio.create_task_group() as tg:
            got = []

            async def consume():
                got.append(await next_item(ps))

            tg.start_soon(consume)
            with anyio.move_on_after(2.5):  # the scenario: idle past the timeout
                await anyio.Event().wait()
            assert admin.publish("quiet", "still here") == 1
        assert got == [Message("message", b"quiet", b"still here")]
    admin.close()


@pytest.mark.parametrize("fault", ["sigstop", "blackhole"])
async def test_silence_detected_on_idle_subscription(server, proxy, supervise, fault):
    """A stopped server (SIGSTOP) or a blackholed network while subscribed and idle: the
    subscribed PING's deadline notices, and once traffic flows the handle re-subscribes
    with cause NETWORK."""
    admin = server.admin()
    silence, resume = (
        (server.stop, server.cont)
        if fault == "sigstop"
        else (proxy.blackhole, lambda: proxy.blackhole(False))
    )
    async with supervise(proxy.url) as sup, sup.pubsub() as ps:
        await ps.subscribe("c")
        async with sup.subscribe() as events:
            async with anyio.create_task_group() as tg:
                items = []

                async def consume():
                    items.append(await next_item(ps, bound=30))

                tg.start_soon(consume)
                silence()
                try:
                    await stalled_long_enough(sup, events)
                finally:
                    resume()
            assert isinstance(items[0], Resubscribed)
            assert items[0].cause is Cause.NETWORK, items[0]
        assert admin.publish("c", "x") == 1
    admin.close()


async def test_numbered_sequence_across_client_kill(server, supervise):
    """Publish 1..N across a CLIENT KILL: every message PUBLISH delivered to a subscriber
    arrives, in order, without duplicates, and everything after the marker is contiguous."""
    admin = server.admin()
    async with supervise(server.url) as sup, sup.pubsub() as ps:
        await ps.subscribe("seq")
        received: list[int] = []
        markers = []
        delivered: list[int] = []
        total = 400

        async def consume():
            while True:
                item = await next_item(ps)
                if isinstance(item, Resubscribed):
                    markers.append(len(received))
                else:
                    received.append(int(item.data))
                if published_all.is_set() and len(received) >= len(delivered):
                    all_in.set()

        published_all, all_in = anyio.Event(), anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            for n in range(1, total + 1):
                if n == total // 2:
                    admin.client_kill_filter(_type="pubsub")
                if admin.publish("seq", n):
                    delivered.append(n)
                await anyio.lowlevel.checkpoint()  # the consumer runs between publishes
            published_all.set()
            if len(received) < len(delivered):
                with anyio.fail_after(15):
                    await all_in.wait()
            tg.cancel_scope.cancel()
        assert markers and len(markers) == 1
        assert received == delivered  # in order, no duplicates, none delivered-and-lost
        after = received[markers[0] :]
        assert after == list(range(after[0], total + 1))
    admin.close()


async def test_handle_closes_with_the_supervisor(shared_server, supervise):
    """The application always knows: iteration ends and `closed` is true once the
    supervisor stops; publishing then reaches no one."""
    admin = shared_server.admin()
    items = []
    async with supervise(shared_server.url) as sup:
        ps = sup.pubsub()
        await ps.subscribe("bye")
        assert not ps.closed
        async with anyio.create_task_group() as tg:

            async def consume():
                async for item in ps:
                    items.append(item)

            tg.start_soon(consume)
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
    assert ps.closed
    assert admin.publish("bye", "x") == 0
    with pytest.raises(RuntimeError, match="closed"):
        await ps.subscribe("again")
    admin.close()


async def test_handle_without_subscriptions_is_not_a_stall(shared_server, supervise):
    """Iterated before its first subscribe(), or after unsubscribing everything, a
    handle's connection is a plain one and its quiet-channel PING gets +PONG: an
    answer, not a stall (no loss, no Resubscribed marker, no failed command)."""
    from supervisor import ConnectionLost

    recorded = Recorder()
    async with supervise(shared_server.url) as sup:
        await sup.wait_for(READY, timeout=5)
        async with sup.subscribe() as events, anyio.create_task_group() as tg:
            tg.start_soon(recorded.record, events)
            for unsubscribed in (False, True):
                items: list[object] = []
                async with sup.pubsub() as ps:
                    if unsubscribed:
                        await ps.subscribe("a")
                        await ps.unsubscribe("a")

                    async def consume(ps=ps, items=items) -> None:
                        async for item in ps:
                            items.append(item)

                    tg.start_soon(consume)
                    await health_rounds(sup, 6)  # several quiet-channel PINGs (0.2 s each)
                assert items == []
            await health_rounds(sup, 2)  # any loss would be attributed by now
            tg.cancel_scope.cancel()
    assert recorded.of(ConnectionLost, Resubscribed) == []


async def test_aclose_from_another_task_is_not_a_loss(shared_server, supervise):
    """aclose() while a consumer iterates ends the iteration; the dropped connection is
    the handle's own doing, not a ConnectionLost and not a failed command."""
    from supervisor import ConnectionLost

    recorded = Recorder()
    async with supervise(shared_server.url) as sup:
        await sup.wait_for(READY, timeout=5)
        async with sup.subscribe() as events, anyio.create_task_group() as tg:
            tg.start_soon(recorded.record, events)
            ps = sup.pubsub()
            await ps.subscribe("news")
            ended = anyio.Event()

            async def consume() -> None:
                async for _ in ps:
                    pass
                ended.set()

            tg.start_soon(consume)
            await anyio.wait_all_tasks_blocked()
            await ps.aclose()
            with anyio.fail_after(5):
                await ended.wait()
            await health_rounds(sup, 2)
            tg.cancel_scope.cancel()
    assert recorded.of(ConnectionLost, Resubscribed) == []


async def test_refused_subscribe_is_an_error_for_that_call(server, supervise):
    """An ACL user subscribing to a channel it may not read gets NoPermissionError from
    that subscribe(), nothing more: the allowed channel keeps delivering, and nothing
    is lost, reconnected or re-subscribed."""
    from redis.exceptions import NoPermissionError

    from supervisor import ConnectionLost

    admin = server.admin()
    admin.acl_setuser(
        "reader",
        enabled=True,
        passwords=["+reader-pw"],
        keys=["*"],
        channels=["allowed*"],
        commands=["+@all"],
    )
    url = f"redis://reader:reader-pw@127.0.0.1:{server.port}/0"
    recorded = Recorder()
    async with supervise(url, command_deadline=3) as sup:
        await sup.wait_for(READY, timeout=5)
        async with sup.subscribe() as events, anyio.create_task_group() as tg:
            tg.start_soon(recorded.record, events)
            async with sup.pubsub() as ps:
                await ps.subscribe("allowed-1")
                with pytest.raises(NoPermissionError):
                    await ps.subscribe("forbidden")
                assert ps.channels == {"allowed-1"}
                admin.publish("allowed-1", "hi")
                item = await next_item(ps)
                assert isinstance(item, Message) and item.data == b"hi"
            await health_rounds(sup, 2)
            tg.cancel_scope.cancel()
    assert recorded.of(ConnectionLost, Resubscribed) == []
    admin.close()


async def test_eviction_window_holds_every_undelivered_message(server, supervise):
    """A consumer stops reading while a publisher floods, and the server evicts it for
    its output buffer between two health checks. Every message it never received was
    published inside the marker's [down_at, up_at] (the window may be wider, never
    narrower), and the marker names the output-buffer limit from the handle's own
    backlog, as no health check sampled it."""
    import time

    import redis.asyncio

    from tests.helpers.loops import bounded, poll

    admin = server.admin()
    admin.config_set("client-output-buffer-limit", "pubsub 256kb 0 0")
    publisher = redis.asyncio.Redis(host="127.0.0.1", port=server.port)
    published: dict[int, tuple[float, float]] = {}
    stop = anyio.Event()
    pad = "p" * 1000

    async def publish() -> None:
        for n in bounded("publishes of the flood"):
            if stop.is_set():
                return
            # recorded before the call: the subscriber may read it before publish returns
            published[n] = (time.time(), float("inf"))
            await publisher.publish("feed", f"{n}|{pad}")
            published[n] = (published[n][0], time.time())

    async with supervise(server.url, health_check_interval=5.0) as sup, sup.pubsub() as ps:
        await ps.subscribe("feed")
        client_id = ps.client_id
        received: set[int] = set()
        async with anyio.create_task_group() as tg:
            tg.start_soon(publish)

            def evicted() -> bool:
                return client_id not in {int(c["id"]) for c in admin.client_list(_type="pubsub")}

            await poll(evicted, "the server evicting the consumer that does not read")
            marker = None
            with anyio.fail_after(30):
                async for item in ps:
                    if isinstance(item, Resubscribed):
                        marker = item
                        continue
                    n = int(item.data.split(b"|")[0])
                    received.add(n)
                    if marker is not None and published[n][0] > marker.up_at:
                        break  # a message published after the window arrived
            stop.set()
    await publisher.aclose()
    admin.close()
    assert marker is not None
    assert marker.cause is Cause.OUTPUT_BUFFER_LIMIT, marker.detail
    last = max(received)
    missing = {n: at for n, at in published.items() if n not in received and n < last}
    assert missing, "the eviction lost no message: the test proved nothing"
    outside = {n: at for n, at in missing.items() if at[1] < marker.down_at or at[0] > marker.up_at}
    assert not outside, (
        f"{len(outside)} of {len(missing)} undelivered messages were published outside "
        f"[{marker.down_at}, {marker.up_at}]"
    )


async def test_many_channels_resubscribe_in_one_command_marker_first(server, supervise):
    """5,000 channels subscribed in batches: after CLIENT KILL the handle resubscribes
    them all with one SUBSCRIBE (counted by INFO commandstats), and the Resubscribed
    marker, on the handle and on the event stream, lists every channel and comes
    before the first message published after the gap."""
    names = [f"many:{i}" for i in range(5000)]
    admin = server.admin()
    async with supervise(server.url) as sup, sup.pubsub() as ps:
        for i in range(0, len(names), 1000):
            await ps.subscribe(*names[i : i + 1000])
        assert admin.execute_command("PUBSUB", "NUMSUB", names[-1])[1] == 1
        admin.config_resetstat()
        seen: list[object] = []

        async def publish_until_delivered() -> None:
            # from the kill on, racing the resubscription: whatever reaches the handle
            # after the gap must come after the marker
            for _ in range(2000):
                if any(isinstance(i, Message) for i in seen):
                    return
                admin.publish(names[-1], "after the gap")
                await anyio.sleep(0.005)
            raise AssertionError("no message reached the handle after 2,000 publishes")

        with capture_logs() as logs:
            async with sup.subscribe() as events, anyio.create_task_group() as tg:
                admin.client_kill_filter(_type="pubsub")
                tg.start_soon(publish_until_delivered)
                with anyio.fail_after(15):
                    async for item in ps:
                        seen.append(item)
                        if isinstance(item, Message):
                            break
                published = await until(events, lambda e: isinstance(e, Resubscribed))
        assert isinstance(seen[0], Resubscribed), seen
        assert seen[1:] == [Message("message", names[-1].encode(), b"after the gap")], seen
        assert set(seen[0].channels) == set(names)
        assert published == seen[0]
        assert "and 4,990 more" in seen[0].detail
        logged = [e for e in logs if e["event"] == "resubscribed"]
        assert logged and logged[0]["channels"][-1] == "... 4,990 more", "a 5,000-name log line"
        stats = admin.info("commandstats")
        assert stats["cmdstat_subscribe"]["calls"] == 1, stats.get("cmdstat_subscribe")
    admin.close()
