"""client_cache: reads from memory, invalidated by the server, refused where the
bound cannot hold. Real servers; the race is made deterministic with the fault proxy."""

from __future__ import annotations

import anyio
import pytest
import redis
from redis.exceptions import ResponseError

from supervisor import (
    CacheFlushed,
    ConfigError,
    ConnectionState,
    FlushCause,
    Supervisor,
    SupervisorConfig,
)
from tests.helpers.events import until
from tests.helpers.loops import poll, settle
from tests.helpers.servers import make_server

READY = ConnectionState.READY
CACHE = dict(client_cache=True, cache_max_staleness=0.1)


def cache_of(sup: Supervisor):  # type: ignore[no-untyped-def]
    stats = sup.statistics().cache
    assert stats is not None
    return stats


async def proven(sup: Supervisor) -> None:
    """Wait until the cache is proven fresh (it serves)."""
    await poll(
        lambda: (s := cache_of(sup).staleness) is not None and s < 0.1,
        "the cache's invalidation stream to be proven complete",
        lambda: cache_of(sup),
    )


async def test_a_second_read_is_a_hit_and_a_write_elsewhere_invalidates_it(server, supervise):
    admin = server.admin()
    admin.set("k", "v1")
    async with supervise(server.url, **CACHE) as sup:
        await proven(sup)
        assert await sup.client.get("k") == b"v1"
        assert await sup.client.get("k") == b"v1"
        assert (cache_of(sup).hits, cache_of(sup).misses) == (1, 1)
        admin.set("k", "v2")
        await poll(lambda: cache_of(sup).invalidations >= 1, "the server's invalidation")
        assert await sup.client.get("k") == b"v2"
        assert cache_of(sup).misses == 2
    admin.close()


async def test_own_writes_are_read_at_once(shared_server, supervise):
    """A write through sup.client drops its keys' entries when it is answered, before
    the server's invalidation arrives."""
    async with supervise(shared_server.url, **CACHE) as sup:
        await proven(sup)
        await sup.client.set("own", "1")
        assert await sup.client.get("own") == b"1"
        assert await sup.client.get("own") == b"1"
        await sup.client.set("own", "2")
        assert await sup.client.get("own") == b"2"
        await sup.client.hset("own:h", mapping={"a": "1"})
        assert await sup.client.hgetall("own:h") == {b"a": b"1"}
        await sup.client.hset("own:h", "a", "2")
        assert await sup.client.hgetall("own:h") == {b"a": b"2"}
        async with sup.client.pipeline() as pipe:
            pipe.set("own", "3").incr("own:n")
            await pipe.execute()
        assert await sup.client.get("own") == b"3"
        # keys a script touches cannot be told: hits wait for the stream to catch up
        await sup.client.eval("redis.call('SET', KEYS[1], ARGV[1])", 1, "own", "4")
        assert await sup.client.get("own") == b"4"
        await sup.client.delete("own", "own:h", "own:n")


async def test_own_write_is_read_before_the_servers_invalidation(server, supervise):
    """The invalidation stream is held back (its PING marks it), the proof is still
    recent: a write through sup.client is read back at once all the same."""
    from tests.helpers.proxy import FaultProxy

    async with FaultProxy(server.port) as proxy:
        async with supervise(
            proxy.url,
            client_cache=True,
            cache_max_staleness=2.0,
            health_check_interval=30.0,  # no health-check PING to mistake for the stream's
            health_check_timeout=5.0,
        ) as sup:
            await proven(sup)
            await sup.client.set("own", "1")
            assert await sup.client.get("own") == b"1"
            assert await sup.client.get("own") == b"1"
            proxy.hold_replies_on(b"PING")
            with anyio.fail_after(5):
                await proxy.held.wait()
            await sup.client.set("own", "2")
            assert await sup.client.get("own") == b"2"
            await sup.client.mset({"own": "3"})
            assert await sup.client.mget("own") == [b"3"]
            proxy.release_replies()


async def test_mget_fetches_only_the_missing_keys(shared_server, supervise):
    admin = shared_server.admin()
    admin.mset({"m1": "a", "m2": "b", "m3": "c"})
    async with supervise(shared_server.url, **CACHE) as sup:
        await proven(sup)
        assert await sup.client.get("m1") == b"a"
        before = cache_of(sup)
        assert await sup.client.mget("m1", "m2", "m3", "m4") == [b"a", b"b", b"c", None]
        after = cache_of(sup)
        assert (after.hits - before.hits, after.misses - before.misses) == (1, 3)
        assert await sup.client.mget(["m3", "m4", "m1"]) == [b"c", None, b"a"]
        assert cache_of(sup).misses == after.misses
        # MGET's nil may be a key of another type, which GET answers with WRONGTYPE: an
        # MGET nil answers MGETs only
        assert await sup.client.get("m4") is None
        assert cache_of(sup).misses == after.misses + 1
        assert await sup.client.get("m4") is None
        assert cache_of(sup).misses == after.misses + 1
    admin.delete("m1", "m2", "m3")
    admin.close()


async def test_what_a_caller_changes_is_not_the_entry(shared_server, supervise):
    admin = shared_server.admin()
    admin.rpush("list", "a", "b")
    admin.sadd("set", "x")
    async with supervise(shared_server.url, **CACHE) as sup:
        await proven(sup)
        got = await sup.client.lrange("list", 0, -1)
        got.append(b"mine")
        assert await sup.client.lrange("list", 0, -1) == [b"a", b"b"]
        members = await sup.client.smembers("set")
        members.add(b"mine")
        assert await sup.client.smembers("set") == {b"x"}
        assert cache_of(sup).hits == 2
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await sup.client.get("list")  # an error reply stands, and is not stored
        assert cache_of(sup).entries == 2
    admin.delete("list", "set")
    admin.close()


async def test_an_invalidation_before_its_reply_never_stores_a_stale_value(server, supervise):
    """The race: the reply of a cached read is held back while another client's write
    is invalidated; the read's (older) reply is returned, never stored."""
    from tests.helpers.proxy import FaultProxy

    admin = server.admin()
    admin.set("race", "old")
    async with FaultProxy(server.port) as proxy:
        # the round of the proof must outlast the held reply, or a stall flush hides the race
        async with supervise(proxy.url, health_check_timeout=3.0, **CACHE) as sup:
            await proven(sup)
            proxy.hold_replies_on(b"GET")
            read: list[bytes | None] = []

            async def first_read() -> None:
                read.append(await sup.client.get("race"))

            async with anyio.create_task_group() as tg:
                tg.start_soon(first_read)
                with anyio.fail_after(5):
                    await proxy.held.wait()
                admin.set("race", "new")
                await poll(lambda: cache_of(sup).invalidations >= 1, "the invalidation")
                proxy.release_replies()
            assert read == [b"old"]  # it began before the write: an honest answer
            await proven(sup)
            assert await sup.client.get("race") == b"new"
            assert cache_of(sup).misses == 2
    admin.close()


async def test_an_entry_never_outlives_its_key(tmp_path, supervise):
    """Expiry with no access sends no invalidation (active expiry is off here): the
    entry is capped by the key's PTTL, read in the same write as the value."""
    server = make_server("--enable-debug-command", "yes")
    admin = server.admin()
    try:
        admin.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0")
        async with supervise(server.url, **CACHE) as sup:
            await proven(sup)
            admin.set("short", "v", px=300)
            assert await sup.client.get("short") == b"v"
            assert await sup.client.get("short") == b"v"
            assert cache_of(sup).hits == 1

            async def gone() -> None:
                for _ in range(200):
                    if await sup.client.get("short") is None:
                        return
                    await anyio.sleep(0.02)
                raise AssertionError("the entry outlived its key's expiry (4 s)")

            await gone()
    finally:
        admin.close()
        server.close()


async def test_bounds_in_entries_and_bytes(shared_server, supervise):
    admin = shared_server.admin()
    admin.mset({f"b{i}": "x" * 1000 for i in range(20)})
    async with supervise(shared_server.url, cache_max_entries=5, **CACHE) as sup:
        await proven(sup)
        for i in range(20):
            await sup.client.get(f"b{i}")
        stats = cache_of(sup)
        assert stats.entries == 5 and stats.evictions == 15
        assert await sup.client.get("b19") == b"x" * 1000  # the most recent stayed
        assert cache_of(sup).hits == 1
    async with supervise(shared_server.url, cache_max_bytes=4000, **CACHE) as sup:
        await proven(sup)
        for i in range(20):
            await sup.client.get(f"b{i}")
        stats = cache_of(sup)
        assert stats.bytes <= 4000 and 1 <= stats.entries <= 3
    admin.delete(*[f"b{i}" for i in range(20)])
    admin.close()


@pytest.mark.parametrize(
    ("fault", "cause"),
    [
        ("kill stream", FlushCause.STREAM_LOST),
        ("kill reader", FlushCause.READER_LOST),
        ("flushall", FlushCause.SERVER_FLUSH),
        ("swapdb", FlushCause.SWAPDB),
        ("swapdb and resetstat", FlushCause.SWAPDB),
        ("restart", None),
    ],
)
async def test_each_fault_flushes_with_its_cause(server, supervise, fault, cause):
    """After the fault the cache serves again, and a value written meanwhile is read."""
    admin = server.admin()
    admin.set("f", "before")
    async with supervise(server.url, **CACHE) as sup:
        await proven(sup)
        assert await sup.client.get("f") == b"before"
        async with sup.subscribe() as events:
            if fault == "kill stream":
                admin.client_kill_filter(_type="pubsub")
            elif fault == "kill reader":
                admin.execute_command("CLIENT", "KILL", "ID", tracked_id(admin))
            elif fault == "flushall":
                admin.flushall()
            elif fault == "swapdb":
                admin.execute_command("SWAPDB", 0, 1)
            elif fault == "swapdb and resetstat":  # one MULTI: the counter goes back to 0
                pipe = admin.pipeline(transaction=True)
                pipe.execute_command("SWAPDB", 0, 1)
                pipe.execute_command("CONFIG", "RESETSTAT")
                pipe.execute()
            elif fault == "restart":
                server.restart()
            flushed = await until(events, lambda e: isinstance(e, CacheFlushed))
            assert isinstance(flushed, CacheFlushed)
            if cause is None:
                assert flushed.cause in (FlushCause.STREAM_LOST, FlushCause.READER_LOST)
            else:
                assert flushed.cause is cause
        admin = server.admin()
        admin.set("f", "after")
        await sup.wait_for(READY, timeout=10)
        await proven(sup)
        assert await sup.client.get("f") == b"after"
        assert await sup.client.get("f") == b"after"
    admin.close()


def tracked_id(admin: redis.Redis) -> int:
    """The id of the connection that tracks keys for the cache (``redir=`` set)."""
    for client in admin.client_list():
        if int(client.get("redir", -1)) >= 0:
            return int(client["id"])
    raise AssertionError("no connection with CLIENT TRACKING REDIRECT")


async def test_the_apps_own_tracking_commands_cannot_touch_the_cache(server, supervise):
    admin = server.admin()
    admin.set("t", "1")
    async with supervise(server.url, **CACHE) as sup:
        await proven(sup)
        assert await sup.client.get("t") == b"1"
        await sup.client.execute_command("CLIENT", "TRACKING", "off")
        await sup.client.execute_command("RESET")
        admin.set("t", "2")
        await poll(lambda: cache_of(sup).invalidations >= 1, "the server's invalidation")
        assert await sup.client.get("t") == b"2"
    admin.close()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (dict(cluster_nodes=("127.0.0.1:7000",)), "not cluster_nodes"),
        (
            dict(sentinels=("127.0.0.1:26379",), service_name="m", role="replica"),
            "role = 'master'",
        ),
        (dict(cache_max_staleness=0.001), "at least 0.01"),
        (dict(cache_max_entries=0), "cache_max_entries must be an integer"),
        (dict(cache_ttl="1"), "cache_ttl must be a number"),
    ],
)
def test_refusals(settings, message):
    with pytest.raises(ConfigError, match=message):
        SupervisorConfig(client_cache=True, **settings)


async def test_nothing_is_left_running(server, supervise):
    admin = server.admin()
    async with supervise(server.url, **CACHE) as sup:
        await proven(sup)
        await sup.client.get("x")
        assert len(admin.client_list()) == 4  # admin, the pool's, the stream, the reader
    await poll(
        lambda: len(admin.client_list()) == 1,
        "every connection of the supervisor to close",
        lambda: admin.client_list(),
    )
    admin.close()


async def test_the_caches_counters_in_otel_and_prometheus(server, supervise):
    """A real MeterProvider and a real scrape: hits, misses, flushes by cause (every
    cause from 0), entries, bytes and the proven staleness."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from prometheus_client.parser import text_string_to_metric_families

    from supervisor.integrations.prometheus import Metrics
    from supervisor.otel import FLUSH_CAUSE, instrument
    from tests.test_otel import points

    reader = InMemoryMetricReader()
    admin = server.admin()
    admin.set("c", "1")
    async with supervise(server.url, **CACHE) as sup:
        instrument(sup, meter_provider=MeterProvider(metric_readers=[reader]))
        await proven(sup)
        assert await sup.client.get("c") == b"1"
        assert await sup.client.get("c") == b"1"
        async with sup.subscribe() as events:
            admin.flushall()
            await until(events, lambda e: isinstance(e, CacheFlushed))
        seen = points(reader)
        [hits] = seen["redis.supervisor.cache.hits"].values()
        [misses] = seen["redis.supervisor.cache.misses"].values()
        assert (hits, misses) == (1, 1)
        flushes = {
            dict(a)[FLUSH_CAUSE]: v for a, v in seen["redis.supervisor.cache.flushes"].items()
        }
        assert flushes == {c.value: int(c is FlushCause.SERVER_FLUSH) for c in FlushCause}
        assert set(seen) >= {
            "redis.supervisor.cache.entries",
            "redis.supervisor.cache.size",
            "redis.supervisor.cache.staleness",
        }
        text = Metrics({"main": sup}).render().decode()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        assert families["supervisor_cache_hits"].type == "counter"
        [hit] = families["supervisor_cache_hits"].samples
        assert hit.name == "supervisor_cache_hits_total" and hit.value == 1
        by_cause = {
            s.labels["cause"]: s.value for s in families["supervisor_cache_flushes"].samples
        }
        assert by_cause == {c.value: float(c is FlushCause.SERVER_FLUSH) for c in FlushCause}
        assert families["supervisor_cache_size_bytes"].type == "gauge"
    admin.close()


async def test_maps_count_their_size_against_cache_max_bytes(server, supervise):
    """RESP3 answers HGETALL with a map: its bytes count, so 20 hashes of half a
    megabyte never sit under a 1 MB cap."""
    admin = server.admin()
    field = b"x" * 1000
    for i in range(20):
        admin.hset(f"h{i}", mapping={f"f{n}": field for n in range(500)})
    cap = 1024 * 1024
    async with supervise(
        server.url, **CACHE, cache_max_bytes=cap, redis_options={"protocol": 3}
    ) as sup:
        await proven(sup)
        for i in range(20):
            assert len(await sup.client.hgetall(f"h{i}")) == 500
        stats = cache_of(sup)
        assert stats.bytes <= cap, stats
        assert stats.entries <= 2, stats
        assert stats.evictions >= 18, stats
    admin.close()


async def test_reads_outside_the_cached_list_hold_no_hit_back(shared_server, supervise):
    """Reads the cache does not answer (XREAD, SORT without STORE, XINFO STREAM, any
    read in lower case) change nothing: the next cacheable read is still a hit."""
    admin = shared_server.admin()
    admin.set("plain", "v")
    admin.xadd("stream", {"f": "v"})
    admin.rpush("list", "b", "a")
    async with supervise(shared_server.url, **CACHE) as sup:
        client = sup.client
        await proven(sup)
        assert await client.get("plain") == b"v"
        reads = [
            lambda: client.xread({"stream": 0}),
            lambda: client.sort("list", alpha=True),
            lambda: client.xinfo_stream("stream"),
            lambda: client.execute_command("strlen", "plain"),
            lambda: client.execute_command("get", "plain"),
        ]
        for read in reads:
            before = cache_of(sup).hits
            await read()
            assert await client.get("plain") == b"v"
            stats = cache_of(sup)
            assert stats.hits >= before + 1 and stats.bypassed == 0, (read, stats)
    admin.delete("plain", "stream", "list")
    admin.close()


async def test_a_replica_url_is_served_uncached(supervise):
    """A replica applies what its master acknowledged later: while the server says
    role:slave, no read is answered from the cache, and the cache says why once."""
    master = make_server()
    replica = make_server("--replicaof", "127.0.0.1", str(master.port))  # type: ignore[attr-defined]
    primary, follower = master.admin(), replica.admin()
    try:
        await poll(
            lambda: follower.info("replication").get("master_link_status") == "up",
            "the replica's link to its master",
        )
        primary.set("k", "v1")
        assert primary.wait(1, 5000) == 1
        async with supervise(replica.url, **CACHE) as sup, sup.subscribe() as events:
            await sup.wait_for(READY, timeout=10)
            flushed = await until(
                events, lambda e: isinstance(e, CacheFlushed) and e.cause is FlushCause.REPLICA
            )
            assert "role:slave" in flushed.detail
            for value in (b"v1", b"v2", b"v3"):
                primary.set("k", value)
                assert primary.wait(1, 5000) == 1
                assert await sup.client.get("k") == value
                assert await sup.client.get("k") == value
            stats = cache_of(sup)
            assert stats.hits == 0 and stats.bypassed >= 6, stats
    finally:
        primary.close()
        follower.close()
        replica.close()
        master.close()


def get_calls(admin: redis.Redis) -> int:
    return int(admin.info("commandstats").get("cmdstat_get", {}).get("calls", 0))


async def test_a_read_slower_than_socket_timeout_runs_once_and_keeps_the_cache(server, supervise):
    """A miss read on the cache's connection while the server is stopped for longer than
    socket_timeout: the caller gets redis-py's TimeoutError (as on the pool), the
    server runs the GET once when it resumes, and nothing stored is dropped: a stalled
    server is not a lost connection. Meanwhile nothing is served (the proof ages)."""
    admin = server.admin()
    admin.set("kept", "v")
    admin.set("slow", "s")
    async with supervise(server.url, **CACHE, socket_timeout=0.5) as sup:
        await proven(sup)
        assert await sup.client.get("kept") == b"v"
        assert await sup.client.get("kept") == b"v"
        before = get_calls(admin)
        outcome: list[object] = []
        async with anyio.create_task_group() as tg:
            server.stop()
            tg.start_soon(settle, lambda: sup.client.get("slow"), outcome)
            # timed out, the read waits for the supervisor's verdict on the stall
            await poll(lambda: sup.statistics().waiters >= 1, "the timed-out read to wait")
            server.cont()
        assert len(outcome) == 1 and isinstance(outcome[0], redis.exceptions.TimeoutError), outcome
        await sup.wait_for(READY, timeout=10)
        await proven(sup)
        assert get_calls(admin) - before == 1, "the slow GET ran more than once"
        hits = cache_of(sup).hits
        assert await sup.client.get("kept") == b"v"
        stats = cache_of(sup)
        assert stats.hits == hits + 1 and stats.flushes_by_cause == {}, stats
        admin.set("kept", "after")
        await poll(lambda: cache_of(sup).invalidations >= 1, "the server's invalidation")
        assert await sup.client.get("kept") == b"after"
    admin.close()
