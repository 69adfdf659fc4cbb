"""Every path answers exactly what plain redis-py answers.

Generated command sequences (``hypothesis``) go through plain ``redis.asyncio`` (the
oracle) and through ``sup.client`` in every mode: pooled, ``auto_pipeline``,
``client_cache``, both; RESP2 and RESP3; ``decode_responses`` off and on; and a
Cluster, pooled and auto-pipelined. Each command's reply, or its exception's type and
text, must be the same on every path.

Each path has a database of its own on one server, so they all see the same data; a
key written by one path only changes what that path reads. What the corpus covers:
every reply type of both protocols (booleans, doubles with inf and nan, big numbers,
maps, sets, verbatim strings, nulls, nested and empty arrays, error replies, a push
message before a reply), keys that are equal in Python and not on the wire (``1``,
``1.0``, ``"1"``, ``b"1"``, a memoryview), mixed-case command names, MULTI/EXEC, Lua,
callers that mutate what they got, and readers cancelled at random points.

``SUPERVISOR_DIFFERENTIAL=long`` runs the long profile (many more examples).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aredis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from redis.asyncio.cluster import RedisCluster

from supervisor import ClusterSupervisor, Supervisor, SupervisorConfig
from supervisor.testing.cluster import ClusterSetup
from tests.helpers.servers import make_server

LONG = os.environ.get("SUPERVISOR_DIFFERENTIAL") == "long"
EXAMPLES = 3000 if LONG else 100
STEP_BOUND = 30.0
"""Seconds one example may take on one path (a lane that lost its place would hang)."""

pytestmark = pytest.mark.timeout(1800 if LONG else 240)
SEEDED = settings(
    derandomize=not LONG,  # the same examples on every run of make test
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

MODES = {
    "pooled": {},
    "auto_pipeline": {"auto_pipeline": True},
    "client_cache": {"client_cache": True},
    "auto_pipeline+client_cache": {"auto_pipeline": True, "client_cache": True},
}
VARIANTS = [(protocol, decode) for protocol in (2, 3) for decode in (False, True)]
SUPERVISED = dict(
    health_check_interval=0.5,
    health_check_timeout=2.0,
    command_deadline=10.0,
    socket_timeout=2.0,
    cache_max_staleness=0.2,
)

# Keys that Python finds equal (or that hash alike) and the wire does not.
KEYS = st.sampled_from([1, 1.0, "a", b"1", "1", "1.0", b"a", memoryview(b"a"), "b", "é", b"\xff"])
VALUES = st.one_of(
    st.sampled_from([b"", "v", 1, 1.5, -0.0, "10", b"\x00\xff", "é"]),
    st.integers(-(10**3), 10**3),
)
FIELDS = st.sampled_from(["f", b"f", 1, "g"])
NAMES = st.sampled_from(["GET", "get", "Get"])

SCRIPTS = [
    "redis.setresp(3); return false",
    "redis.setresp(3); return true",
    "return redis.call('GET', KEYS[1])",
    "return false",
    "redis.setresp(3); return {double=1.5}",
    "redis.setresp(3); return {double=math.huge}",
    "redis.setresp(3); return {double=-math.huge}",
    "redis.setresp(3); return {double=0/0}",
    "redis.setresp(3); return {big_number='123456789012345678901234567890'}",
    "redis.setresp(3); return {map={a=1, b={1, 2}}}",
    "redis.setresp(3); return {set={x=true}}",
    "redis.setresp(3); return {verbatim_string={format='txt', string='hi'}}",
    "redis.setresp(3); return redis.call('HGETALL', KEYS[1])",
    "return {1, {2, {}}, 'x', {}}",
    "return {err='ERR scripted'}",
    "return {ok='FINE'}",
    "redis.setresp(3); return nil",
    "return redis.call('INCR', KEYS[1])",
]
DEBUG_TYPES = [
    "false", "true", "map", "set", "double", "bignum", "null", "array", "verbatim",
    "push", "string", "integer",
]  # fmt: skip


@dataclass(frozen=True)
class Call:
    """One ``execute_command``; ``read`` marks one that changes nothing."""

    args: tuple[Any, ...]
    read: bool = False
    cancel_after: int | None = None
    """Cancel the caller after this many loop turns (reads only)."""


@dataclass(frozen=True)
class Multi:
    calls: tuple[Call, ...]
    transaction: bool


Step = Call | Multi


def _r(*args: Any) -> Call:
    return Call(args, read=True)


def _w(*args: Any) -> Call:
    return Call(args)


def commands(keys: st.SearchStrategy[Any], cluster: bool = False) -> st.SearchStrategy[Step]:
    """One step over ``keys``: reads, writes, every reply type, a cancelled read, a
    MULTI or a pipeline (not on a Cluster, where they stay on one slot)."""
    gets = st.builds(lambda n, k: _r(n, k), NAMES, keys)
    mgets = st.builds(lambda ks: _r("MGET", *ks), st.lists(keys, min_size=1, max_size=4))
    hgetalls = st.builds(lambda n, k: _r(n, k), st.sampled_from(["HGETALL", "hgetall"]), keys)
    other_reads = st.one_of(
        st.builds(lambda ks: _r("EXISTS", *ks), st.lists(keys, min_size=1, max_size=3)),
        st.builds(lambda k: _r("STRLEN", k), keys),
        st.builds(lambda k: _r("TYPE", k), keys),
        st.builds(lambda k: _r("GETRANGE", k, 0, 1), keys),
        st.builds(lambda k, f: _r("HGET", k, f), keys, FIELDS),
        st.builds(
            lambda k, fs: _r("HMGET", k, *fs), keys, st.lists(FIELDS, min_size=1, max_size=3)
        ),
        st.builds(lambda k: _r("Hkeys", k), keys),
        st.builds(lambda k: _r("LRANGE", k, 0, -1), keys),
        st.builds(lambda k: _r("LLEN", k), keys),
        st.builds(lambda k: _r("SMEMBERS", k), keys),
        st.builds(lambda k, v: _r("SISMEMBER", k, v), keys, VALUES),
        st.builds(lambda k: _r("ZRANGE", k, 0, -1, "WITHSCORES"), keys),
        st.builds(lambda k, m: _r("ZSCORE", k, m), keys, VALUES),
        st.builds(
            lambda k, ms: _r("ZMSCORE", k, *ms), keys, st.lists(VALUES, min_size=1, max_size=3)
        ),
        st.builds(lambda k: _r("XINFO STREAM", k), keys),
        st.builds(lambda k: _r("SORT", k, "ALPHA"), keys),
        st.builds(lambda k: _r("XRANGE", k, "-", "+"), keys),
        st.sampled_from([_r("GET"), _r("MGET"), _r("HGETALL")]),  # no key: an error reply
    )
    reads = st.one_of(gets, gets, mgets, hgetalls, other_reads)
    sets = st.builds(lambda n, k, v: _w(n, k, v), st.sampled_from(["SET", "set"]), keys, VALUES)
    other_writes = st.one_of(
        st.builds(lambda k: _w("INCR", k), keys),
        st.builds(lambda k, v: _w("INCRBYFLOAT", k, v), keys, st.sampled_from([1.5, "inf", -2])),
        st.builds(lambda k, v: _w("APPEND", k, v), keys, VALUES),
        st.builds(lambda ks: _w("DEL", *ks), st.lists(keys, min_size=1, max_size=3)),
        st.builds(lambda k, v: _w("SADD", k, v), keys, VALUES),
        st.builds(
            lambda k, s, m: _w("ZADD", k, s, m),
            keys,
            st.sampled_from([1, 2.5, "inf", "-inf"]),
            VALUES,
        ),
        st.builds(
            lambda k, i, v: _w("XADD", k, i, "f", v),
            keys,
            st.sampled_from(["1-1", "2-0", "3"]),
            VALUES,
        ),
        st.just(_w("NOSUCHCOMMAND", "x")),
        st.just(_w("FLUSHDB")),
    )
    writes = st.one_of(
        sets,
        sets,
        st.builds(lambda k, f, v: _w("HSET", k, f, v), keys, FIELDS, VALUES),
        st.builds(lambda k, v: _w("RPUSH", k, v), keys, VALUES),
        other_writes,
    )
    replies = st.one_of(
        st.builds(lambda s, k: _w("EVAL", s, 1, k), st.sampled_from(SCRIPTS), keys),
        st.builds(lambda t: _w("DEBUG", "PROTOCOL", t), st.sampled_from(DEBUG_TYPES)),
    )
    cancelled = st.builds(
        lambda call, n: Call(call.args, read=True, cancel_after=n),
        reads,
        st.integers(0, 4),
    )
    multis = st.builds(
        lambda calls, tx: Multi(tuple(calls), tx),
        st.lists(st.one_of(reads, writes, replies), min_size=1, max_size=4),
        st.booleans(),
    )
    if cluster:
        return st.one_of(replies, reads, writes, reads, cancelled)
    return st.one_of(replies, reads, writes, reads, writes, multis, cancelled)


@st.composite
def sequences(draw: st.DrawFn, cluster: bool = False) -> list[Step]:
    """A few keys of this example's own (so its commands meet on them), then steps
    over them; a read is often repeated at once, as a cache's hit."""
    pool = draw(st.lists(KEYS, min_size=1, max_size=3, unique_by=repr))
    step = commands(st.sampled_from(pool), cluster)
    steps: list[Step] = []
    for _ in range(draw(st.integers(2, 10 if cluster else 16))):
        one = draw(step)
        steps.append(one)
        if isinstance(one, Call) and one.read and one.cancel_after is None and draw(st.booleans()):
            steps.append(one)
    return steps


STEPS = sequences()


# -- comparing answers -------------------------------------------------------------


def shape(value: Any) -> Any:
    """A value in a form ``==`` compares strictly: types kept (``True`` is not ``1``,
    ``b"1"`` is not ``"1"``), nan equal to nan, exceptions by type and text."""
    if isinstance(value, BaseException):
        return ("raised", type(value).__name__, str(value))
    if isinstance(value, float) and math.isnan(value):
        return ("float", "nan")
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [shape(v) for v in value])
    if isinstance(value, dict):
        return ("dict", sorted((repr(shape(k)), shape(v)) for k, v in value.items()))
    if isinstance(value, (set, frozenset)):
        return (type(value).__name__, sorted(repr(shape(v)) for v in value))
    return (type(value).__name__, value)


def meddle(value: Any) -> None:
    """What a careless caller does to a reply it got: edits it in place."""
    if isinstance(value, list):
        value.append("meddled")
    elif isinstance(value, dict):
        value["meddled"] = "meddled"
    elif isinstance(value, set):
        value.add("meddled")


async def attempt(op: Callable[[], Awaitable[Any]]) -> Any:
    try:
        return await op()
    except Exception as exc:
        return exc


async def run_step(client: Any, step: Step) -> Any:
    if isinstance(step, Multi):
        pipe = client.pipeline(transaction=step.transaction)
        for call in step.calls:
            pipe.execute_command(*call.args)
        result = await attempt(lambda: pipe.execute(raise_on_error=False))
        await pipe.reset()
        return result
    if step.cancel_after is not None:
        task = asyncio.ensure_future(client.execute_command(*step.args))
        for _ in range(step.cancel_after):
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        return "cancelled"
    return await attempt(lambda: client.execute_command(*step.args))


async def serving(client: Any) -> None:
    """With ``client_cache``, wait until the cache may answer (a write whose keys it
    cannot tell holds hits back for one proof round): every read is then put to it."""
    cache = getattr(client, "_cache", None)
    if cache is None:
        return
    for _ in range(1000):
        if cache.serving(time.monotonic()):
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"the cache did not serve within 5 s: {cache.tracker.proven_at=}")


async def replay(client: Any, steps: list[Step]) -> list[Any]:
    """Each answer, shaped before the caller meddles with it."""
    answers = []
    for step in steps:
        if isinstance(step, Call) and step.read:
            await serving(client)
        result = await run_step(client, step)
        answers.append(shape(result))
        meddle(result)
    return answers


def compare(label: str, steps: list[Step], expected: list[Any], got: list[Any]) -> None:
    for i, (step, want, have) in enumerate(zip(steps, expected, got, strict=True)):
        assert have == want, (
            f"{label}: step {i} {step!r} answered {have!r}; plain redis-py answered {want!r}"
        )


# -- the paths, on one event loop in a thread of their own ----------------------------


class Paths:
    """A loop in a thread that owns every client; examples are run on it."""

    def __repr__(self) -> str:
        return "<Paths>"

    def __init__(self, build: Callable[[contextlib.AsyncExitStack], Awaitable[None]]) -> None:
        self.loop = asyncio.new_event_loop()
        self._build = build
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self.loop.run_until_complete, args=(self._host(),))
        self._thread.start()
        if not self._ready.wait(60) or self._error is not None:
            self.close()
            raise AssertionError(f"the differential paths did not start: {self._error!r}")

    async def _host(self) -> None:
        self._stop = asyncio.Event()
        try:
            async with contextlib.AsyncExitStack() as stack:
                await self._build(stack)
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    def run(self, coro: Awaitable[Any], bound: float) -> Any:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]
        try:
            return future.result(bound)
        except TimeoutError:
            future.cancel()
            raise AssertionError(f"an example did not finish within {bound:g} s") from None

    def close(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
        self.loop.close()


@dataclass(repr=False)
class Group:
    """One protocol and decoding: the oracle and the supervised clients."""

    label: str
    oracle: Any
    subjects: dict[str, Any]

    def __repr__(self) -> str:
        return f"<{self.label}: {', '.join(self.subjects)}>"


async def _ready(sup: Supervisor) -> None:
    from supervisor import ConnectionState

    await sup.wait_for(ConnectionState.READY, timeout=30)


@pytest.fixture(scope="module")
def single() -> Iterator[tuple[Paths, list[Group]]]:
    server = make_server("--databases", "32")
    groups: list[Group] = []

    async def build(stack: contextlib.AsyncExitStack) -> None:
        db = 0
        for protocol, decode in VARIANTS:
            base = f"redis://127.0.0.1:{server.port}"  # type: ignore[attr-defined]
            oracle = aredis.Redis.from_url(
                f"{base}/{db}", protocol=protocol, decode_responses=decode
            )
            stack.push_async_callback(oracle.aclose)
            db += 1
            subjects = {}
            for mode, extra in MODES.items():
                config = SupervisorConfig(
                    url=f"{base}/{db}",
                    decode_responses=decode,
                    redis_options={"protocol": protocol},
                    **{**SUPERVISED, **extra},
                )
                sup = await stack.enter_async_context(Supervisor(config))
                await _ready(sup)
                subjects[mode] = sup.client
                db += 1
            groups.append(Group(f"RESP{protocol} decode={decode}", oracle, subjects))

    paths = Paths(build)
    yield paths, groups
    paths.close()
    server.close()


async def _example(groups: list[Group], steps: list[Step]) -> list[str]:
    failures = []
    for group in groups:
        clients = [group.oracle, *group.subjects.values()]
        await asyncio.gather(*(c.execute_command("FLUSHDB") for c in clients))
        expected = await replay(group.oracle, steps)
        for mode, client in group.subjects.items():
            got = await replay(client, steps)
            try:
                compare(f"{mode} {group.label}", steps, expected, got)
            except AssertionError as exc:
                failures.append(str(exc))
    return failures


@settings(SEEDED, max_examples=EXAMPLES)
@given(steps=STEPS)
# the defects the generator found before they were fixed, kept as seeds
@example(steps=[_w("DEBUG", "PROTOCOL", "false"), _w("SET", "a", "1"), _r("GET", "a")])
@example(steps=[_w("HSET", "a", "f", "v"), _r("HGETALL", "a"), _r("HGETALL", "a")])
@example(steps=[_w("SET", 1, "x"), _r("GET", 1), _r("GET", 1.0)])
@example(steps=[_w("RPUSH", "a", "x"), _r("MGET", "a"), _r("GET", "a")])
@example(steps=[_w("SET", "a", b"\xff"), _r("GET", "a"), _r("GET", "a"), _r("STRLEN", "a")])
def test_every_single_target_path_answers_as_plain_redis_py(
    single: tuple[Paths, list[Group]], steps: list[Step]
) -> None:
    paths, groups = single
    failures = paths.run(_example(groups, steps), STEP_BOUND * 5)
    assert not failures, "\n".join(failures)


# -- Cluster ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Paths, list[Group]]]:
    setup = ClusterSetup()
    setup.wait_ok()
    groups: list[Group] = []

    async def build(stack: contextlib.AsyncExitStack) -> None:
        for protocol in (2, 3):
            host, port = setup.seeds[0].split(":")
            oracle = RedisCluster(host=host, port=int(port), protocol=protocol)
            stack.push_async_callback(oracle.aclose)
            subjects = {}
            for mode in ("pooled", "auto_pipeline"):
                config = SupervisorConfig(
                    url=f"redis://{setup.seeds[0]}/0",
                    cluster_nodes=tuple(setup.seeds),
                    redis_options={"protocol": protocol},
                    **{**SUPERVISED, **MODES[mode]},
                )
                sup = await stack.enter_async_context(ClusterSupervisor(config))
                await _ready(sup)  # type: ignore[arg-type]
                subjects[mode] = sup.client
            groups.append(Group(f"Cluster RESP{protocol}", oracle, subjects))

    paths = Paths(build)
    yield paths, groups
    paths.close()
    setup.close()


CLUSTER_STEPS = sequences(cluster=True)


async def _cluster_example(groups: list[Group], steps: list[Step]) -> list[str]:
    failures = []
    for group in groups:
        for mode, client in [("oracle", group.oracle), *group.subjects.items()]:
            await group.oracle.flushall()
            got = await replay(client, steps)
            if mode == "oracle":
                expected = got
                continue
            try:
                compare(f"{mode} {group.label}", steps, expected, got)
            except AssertionError as exc:
                failures.append(str(exc))
    return failures


@settings(SEEDED, max_examples=EXAMPLES // 2)
@given(steps=CLUSTER_STEPS)
@example(steps=[_w("EVAL", SCRIPTS[0], 1, "a"), _w("SET", "a", "1"), _r("GET", "a")])
def test_every_cluster_path_answers_as_plain_redis_py(
    cluster: tuple[Paths, list[Group]], steps: list[Step]
) -> None:
    paths, groups = cluster
    failures = paths.run(_cluster_example(groups, steps), STEP_BOUND * 3)
    assert not failures, "\n".join(failures)
