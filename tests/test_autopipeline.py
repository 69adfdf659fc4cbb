"""auto_pipeline = true: concurrent commands share one connection, batched per write."""

from __future__ import annotations

import anyio
import pytest

from supervisor import ConnectionState, OutcomeUnknown
from tests.helpers.loops import poll

READY = ConnectionState.READY
PROTOCOLS = pytest.mark.parametrize("protocol", [2, 3])
"""redis-py 8 speaks RESP3 unless told otherwise: both wires, and both sets of
response callbacks (``protocol=3`` switches redis-py to its RESP3 ones)."""


@PROTOCOLS
async def test_every_caller_gets_its_own_reply_in_order(shared_server, supervise, protocol):
    """50 tasks interleave 100 INCRs and GETs each on keys of their own: thousands of
    commands share batches, and each caller gets the reply to its own command."""
    async with supervise(
        shared_server.url, auto_pipeline=True, redis_options={"protocol": protocol}
    ) as sup:
        await sup.wait_for(READY, timeout=5)
        client = sup.client
        await client.delete(*(f"ap:order:{i}" for i in range(50)))
        seen: dict[int, list[int]] = {}

        async def caller(i: int) -> None:
            key = f"ap:order:{i}"
            mine = seen[i] = []
            for n in range(1, 101):
                mine.append(await client.incr(key))
                assert int(await client.get(key)) == n, (key, n)

        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(caller, i)
        assert seen == {i: list(range(1, 101)) for i in range(50)}


async def test_a_caller_cancelled_before_its_command_is_written_sends_nothing(proxy, supervise):
    """A caller cancelled while its command waits for the next write: the command is
    dropped, never sent, and the next callers get their own replies."""
    async with supervise(proxy.url, auto_pipeline=True) as sup:
        await sup.wait_for(READY, timeout=5)
        client = sup.client
        await client.set("ap:cancelled", 0)
        for _ in range(100):
            with anyio.CancelScope() as scope:
                scope.cancel()
                await client.incr("ap:cancelled")
        assert await client.get("ap:cancelled") == b"0"
        assert proxy.commands[b"INCRBY"] == 0


@PROTOCOLS
async def test_a_caller_cancelled_while_its_reply_is_on_the_way_takes_nobody_elses(
    proxy, supervise, protocol
):
    """40 GETs in one batch, their replies held back by the proxy; half the callers are
    cancelled. The others each get their own value, and afterwards no stray reply is
    left behind: the next GETs get theirs too."""
    async with supervise(
        proxy.url, auto_pipeline=True, redis_options={"protocol": protocol}
    ) as sup:
        await sup.wait_for(READY, timeout=5)
        client = sup.client
        for i in range(40):
            await client.set(f"ap:own:{i}", i)
        got: dict[int, bytes] = {}
        scopes = [anyio.CancelScope() for _ in range(40)]

        async def caller(i: int) -> None:
            with scopes[i]:
                got[i] = await client.get(f"ap:own:{i}")

        proxy.hold_replies()
        async with anyio.create_task_group() as tg:
            for i in range(40):
                tg.start_soon(caller, i)
            with anyio.fail_after(5):
                await proxy.held.wait()
            for i in range(1, 40, 2):
                scopes[i].cancel()
            proxy.release_replies()
        assert got == {i: str(i).encode() for i in range(0, 40, 2)}
        for i in range(40):
            assert await client.get(f"ap:own:{i}") == str(i).encode()


@PROTOCOLS
async def test_a_connection_cut_mid_batch_resends_reads_and_never_doubles_a_write(
    proxy, supervise, protocol
):
    """A batch of 20 GETs and 20 INCRs; the proxy cuts the connection when the replies
    come back. Every GET is sent again and returns its value; every INCR raises
    OutcomeUnknown (never re-sent), and the counter counts each at most once."""
    async with supervise(
        proxy.url, auto_pipeline=True, redis_options={"protocol": protocol}
    ) as sup:
        await sup.wait_for(READY, timeout=5)
        client = sup.client
        await client.set("ap:counter", 0)
        for i in range(20):
            await client.set(f"ap:read:{i}", i)
        applied = unknown = 0
        reads: dict[int, bytes] = {}

        async def writer() -> None:
            nonlocal applied, unknown
            try:
                await client.incr("ap:counter")
                applied += 1
            except OutcomeUnknown:
                unknown += 1

        async def reader(i: int) -> None:
            reads[i] = await client.get(f"ap:read:{i}")

        proxy.cut_reply_after(b"INCRBY")
        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(reader, i)
                tg.start_soon(writer)
        assert proxy.cut_done.is_set()
        assert reads == {i: str(i).encode() for i in range(20)}
        assert unknown >= 1
        assert applied + unknown == 20
        assert applied <= int(await client.get("ap:counter")) <= applied + unknown


async def test_a_large_reply_next_to_small_ones(shared_server, supervise):
    """An 8 MB value read alongside 200 small GETs: each caller gets its own reply."""
    async with supervise(shared_server.url, auto_pipeline=True) as sup:
        await sup.wait_for(READY, timeout=5)
        client = sup.client
        big = b"x" * (8 * 1024 * 1024)
        await client.set("ap:big", big)
        for i in range(200):
            await client.set(f"ap:small:{i}", i)
        got: dict[int, bytes] = {}

        async def small(i: int) -> None:
            got[i] = await client.get(f"ap:small:{i}")

        async def large() -> None:
            got[-1] = await client.get("ap:big")

        async with anyio.create_task_group() as tg:
            for i in range(100):
                tg.start_soon(small, i)
            tg.start_soon(large)
            for i in range(100, 200):
                tg.start_soon(small, i)
        assert got.pop(-1) == big
        assert got == {i: str(i).encode() for i in range(200)}


async def test_commands_that_need_a_connection_of_their_own_keep_the_pool(shared_server, supervise):
    """BLPOP, transactions, pipelines, pub/sub and client() go through the pool as
    before, next to auto-pipelined commands."""
    async with supervise(shared_server.url, auto_pipeline=True) as sup:
        await sup.wait_for(READY, timeout=5)
        client = sup.client
        await client.delete("ap:list")
        async with anyio.create_task_group() as tg:

            async def pop() -> None:
                assert await client.blpop(["ap:list"], timeout=5) == (b"ap:list", b"v")

            tg.start_soon(pop)
            pool = client.connection_pool
            await poll(lambda: len(pool._in_use_connections) == 1, "BLPOP on a pooled connection")
            assert await client.get("ap:missing") is None  # not behind the BLPOP
            await client.rpush("ap:list", "v")
        async with client.pipeline(transaction=True) as pipe:
            pipe.set("ap:tx", 1).incr("ap:tx")
            assert await pipe.execute() == [True, 2]
        async with client.client() as single:
            await single.select(1)
            assert await single.get("ap:tx") is None
        assert await client.get("ap:tx") == b"2"  # db 0: SELECT stayed on its connection


@PROTOCOLS
async def test_replies_are_shaped_as_redis_py_shapes_them(shared_server, supervise, protocol):
    """Maps, sets, doubles, nested arrays and errors: on the shared connection, each reply
    is what plain redis-py (same protocol) returns."""
    import redis.asyncio
    from redis.exceptions import ResponseError

    plain = redis.asyncio.Redis.from_url(shared_server.url, protocol=protocol)
    await plain.hset("ap:h", mapping={"a": "1", "b": "2"})
    await plain.zadd("ap:z", {"a": 1.5, "b": 2})
    await plain.sadd("ap:s", "x", "y")
    await plain.xadd("ap:x", {"f": "v"}, id="1-1")
    calls = [
        ("hgetall", "ap:h"),
        ("zrange", "ap:z", 0, -1, False, True),
        ("zscore", "ap:z", "a"),
        ("zpopmin", "ap:nothing"),
        ("smembers", "ap:s"),
        ("xrange", "ap:x"),
        ("config_get", "maxmemory*"),
        ("exists", "ap:h", "ap:s"),
        ("time",),
    ]
    async with supervise(
        shared_server.url, auto_pipeline=True, redis_options={"protocol": protocol}
    ) as sup:
        await sup.wait_for(READY, timeout=5)
        for name, *args in calls:
            want = await getattr(plain, name)(*args)
            got = await getattr(sup.client, name)(*args)
            if name == "time":
                assert type(got) is type(want) and len(got) == len(want), (got, want)
            else:
                assert got == want and type(got) is type(want), (name, got, want)
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await sup.client.get("ap:h")
    await plain.delete("ap:h", "ap:z", "ap:s", "ap:x")
    await plain.aclose()
