"""Under pressure: a stall at any step of a health check, a full pool, a crowd at the
gate, a long refused outage, a busy server. Each test goes through the public surface
against a real redis-server."""

from __future__ import annotations

from contextlib import AsyncExitStack

import anyio
import pytest
from redis.exceptions import TimeoutError as RedisTimeoutError

from supervisor import ConnectionState, Unavailable
from supervisor.connection.doorbell import Doorbell
from supervisor.connection.gate import Admission, Gate
from supervisor.connection.probe import Probe, ProbeFailed
from supervisor.connection.schedule import REFUSED_SLOW, Showed
from supervisor.testing import BinaryServer, free_port
from tests.helpers.events import until
from tests.helpers.loops import poll, settle

READY = ConnectionState.READY


def _down(event: object) -> bool:
    current = getattr(event, "current", None)
    return current in (ConnectionState.UNHEALTHY, ConnectionState.RECONNECTING)


@pytest.mark.parametrize("step", [b"PING", b"INFO", b"CONFIG", b"HELLO"])
async def test_a_stall_at_any_step_of_the_round_is_seen_at_its_deadline(
    server, proxy, supervise, step
):
    """The server stops answering at one step of a health round (its reply held by the
    proxy, as a SIGSTOP there would): the check fails at the round's one deadline, not
    after ``socket_connect_timeout`` (30 s here, far past the wait below)."""
    admin = server.admin()
    async with supervise(proxy.url, socket_connect_timeout=30.0, command_deadline=60.0) as sup:
        await sup.wait_for(READY, timeout=5)
        async with sup.subscribe() as events:
            proxy.hold_replies_from(step)
            if step == b"HELLO":
                # the probe reopens (and so says HELLO) once its connection is killed
                admin.client_kill_filter(skipme=True)
            try:
                with anyio.fail_after(10):
                    await proxy.held.wait()
                down = await until(events, _down, bound=10)
            finally:
                proxy.release_replies()
            expected = "handshake" if step == b"HELLO" else step.decode()
            assert expected in down.detail, down.detail
            await until(events, lambda e: getattr(e, "current", None) is READY)
    admin.close()


async def test_a_released_connection_goes_to_the_oldest_waiter_not_a_newcomer(server, supervise):
    """One connection, held by a BLPOP; three commands wait in line. When the BLPOP
    returns, its task sends a command at once, while the first waiter has been woken
    but has not run yet: the newcomer queues behind the three, who go in order."""
    admin = server.admin()
    order: list[object] = []
    async with supervise(server.url, max_connections=1) as sup:
        await sup.wait_for(READY, timeout=5)
        async with anyio.create_task_group() as tg:

            async def holder() -> None:
                await sup.client.blpop(["q"], 10)
                await sup.client.get("k")
                order.append("newcomer")

            async def waiter(i: int) -> None:
                await sup.client.get("k")
                order.append(i)

            tg.start_soon(holder)
            await poll(
                lambda: int(admin.info("clients")["blocked_clients"]) == 1,
                "the BLPOP to hold the only connection",
            )
            for i in range(3):
                tg.start_soon(waiter, i)
                await poll(
                    lambda n=i + 1: sup.statistics().waiters == n,
                    f"{i + 1} commands waiting in line",
                    lambda: sup.statistics().waiters,
                )
            admin.lpush("q", "x")
        assert order == [0, 1, 2, "newcomer"]
    admin.close()


async def test_a_waiter_out_of_time_passes_its_turn_on(server, supervise):
    """Waiters that give up (cancelled, or past their deadline) leave the line without
    keeping the connection from the ones behind them."""
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
            async with anyio.create_task_group() as quitters:
                for _ in range(3):
                    quitters.start_soon(sup.client.get, "k")
                await poll(lambda: sup.statistics().waiters == 3, "3 waiters")
                quitters.cancel_scope.cancel()

            async def get() -> None:
                results.append(await sup.client.get("k"))

            tg.start_soon(get)
            await poll(lambda: sup.statistics().waiters == 1, "the waiter after them")
            admin.lpush("q", "x")
        assert results == [None]
        assert sup.statistics().waiters == 0
    admin.close()


async def test_a_waiter_in_line_through_an_outage_is_told_of_the_outage(server, supervise):
    """The only connection is caught in a stall (SIGSTOP): a command waiting in the
    pool's line until its deadline is told the target was not available, not to raise
    max_connections."""
    async with supervise(
        server.url, max_connections=1, command_deadline=3.0, socket_timeout=8.0
    ) as sup:
        await sup.wait_for(READY, timeout=5)
        outcome: list[object] = []

        server.stop()
        try:
            async with anyio.create_task_group() as tg:
                for _ in range(2):  # one takes the connection and stalls, one waits in line
                    tg.start_soon(settle, lambda: sup.client.get("k"), outcome)
                await poll(lambda: sup.statistics().waiters >= 1, "a GET in the pool's line")
                await poll(lambda: outcome, "the GET in line to reach its deadline")
                tg.cancel_scope.cancel()
        finally:
            server.cont()
        assert len(outcome) == 1 and isinstance(outcome[0], Unavailable), outcome
        assert "max_connections" not in str(outcome[0]), outcome[0]
        assert "not available" in str(outcome[0]), outcome[0]


async def test_a_full_line_fails_at_once_with_max_waiters(server, supervise):
    admin = server.admin()
    async with supervise(server.url, max_connections=1, max_waiters=2) as sup:
        await sup.wait_for(READY, timeout=5)
        async with anyio.create_task_group() as tg:
            tg.start_soon(sup.client.blpop, ["q"], 10)
            await poll(
                lambda: int(admin.info("clients")["blocked_clients"]) == 1,
                "the BLPOP to hold the only connection",
            )
            tg.start_soon(sup.client.get, "k")
            tg.start_soon(sup.client.get, "k")
            await poll(lambda: sup.statistics().waiters == 2, "2 waiters")
            with anyio.fail_after(1), pytest.raises(Unavailable, match="max_waiters"):
                await sup.client.get("k")
            admin.lpush("q", "x")
    admin.close()


async def test_a_failed_attempt_that_changes_nothing_wakes_no_waiter():
    """The prober sets the gate after every failed attempt; only a change of admission
    wakes the commands waiting at it."""
    gate = Gate(max_waiters=10, fail_fast=False)
    async with anyio.create_task_group() as tg:
        tg.start_soon(gate.wait_open, anyio.current_time() + 10)
        await anyio.wait_all_tasks_blocked()
        changed = gate._changed
        assert changed is not None
        for _ in range(20):
            gate.set(Admission.DOWN)
        assert gate._changed is changed and not changed.is_set()
        gate.set(Admission.OPEN)
    assert gate.waiters == 0


async def test_a_refused_port_is_knocked_on_without_a_redis_connection(server):
    """While nothing listens the prober only knocks (a bare connect): it raises REFUSED
    there, and lets the full attempt go ahead where something accepts."""
    from redis.asyncio.connection import Connection

    port = free_port()
    probe = Probe(
        Connection,
        {"host": "127.0.0.1", "port": port},
        timeout=1,
        connect_timeout=1,
        idle_timeout=None,
    )
    with pytest.raises(ProbeFailed) as refused:
        await probe.knock()
    assert refused.value.showed is Showed.REFUSED
    assert f"127.0.0.1:{port}" in refused.value.detail
    listening = Probe(
        Connection,
        {"host": "127.0.0.1", "port": server.port},
        timeout=1,
        connect_timeout=1,
        idle_timeout=None,
    )
    await listening.knock()


async def test_targets_refused_for_long_share_one_doorbell_and_each_comes_back_alone(supervise):
    """20 targets of one process refused past a restart's gap: every prober waits on the
    process's one doorbell, which knocks for all of them (their attempts are counted).
    The one whose server starts is READY; the others stay knocked; leaving stops it."""
    server = BinaryServer()  # not started yet: its port refuses
    ports = [server.port, *(free_port() for _ in range(19))]
    bell = None
    try:
        async with AsyncExitStack() as stack:
            sups = [
                await stack.enter_async_context(supervise(f"redis://127.0.0.1:{p}/0"))
                for p in ports
            ]
            bell = Doorbell.for_loop(REFUSED_SLOW)
            await poll(
                lambda: bell.waiting == 20,
                "all 20 probers waiting on the process's doorbell",
                lambda: bell.waiting,
            )
            before = [s.statistics().connect_attempts for s in sups]
            server.start()
            await sups[0].wait_for(READY, timeout=10)
            assert await sups[0].client.ping()
            await poll(
                lambda: all(
                    s.statistics().connect_attempts > b
                    for s, b in zip(sups[1:], before[1:], strict=True)
                ),
                "each of the 19 others knocked again",
            )
            assert bell.waiting == 19
    finally:
        server.close()
    assert bell is not None and bell.waiting == 0
    assert bell._timer is None, "the doorbell's timer outlived every supervisor"


_BUSY = """
local t0 = redis.call('TIME')
local start = t0[1] * 1000000 + t0[2]
while true do
  local t = redis.call('TIME')
  if t[1] * 1000000 + t[2] - start > tonumber(ARGV[1]) then break end
end
return 1
"""


@pytest.mark.parametrize("deadline", [10.0, 1.0])
async def test_a_read_past_socket_timeout_on_a_busy_server_runs_once(server, supervise, deadline):
    """A slow script (1.5 s) outlives ``socket_timeout`` (0.5 s): the server is busy, not
    lost. The read asks for the supervisor's verdict; the check goes unanswered too, so
    the read is held up to ``command_deadline`` on the same connection: with 10 s the
    caller gets the script's answer, with 1 s redis-py's TimeoutError. Either way the
    read is not sent again, and the script ran once."""
    admin = server.admin()
    admin.config_resetstat()
    async with supervise(
        server.url, socket_timeout=0.5, socket_connect_timeout=0.3, command_deadline=deadline
    ) as sup:
        await sup.wait_for(READY, timeout=5)
        if deadline > 1.5:
            assert await sup.client.eval_ro(_BUSY, 0, 1_500_000) == 1
        else:
            with pytest.raises(RedisTimeoutError):
                await sup.client.eval_ro(_BUSY, 0, 1_500_000)
        stats = admin.info("commandstats")
        assert stats["cmdstat_eval_ro"]["calls"] == 1, stats["cmdstat_eval_ro"]
        assert await sup.client.get("k") is None
    admin.close()


async def test_idempotent_commands_given_in_lower_case_are_re_sent(proxy, supervise):
    """``idempotent_commands=("set",)`` passed to the constructor: a SET whose reply is
    lost goes again (it raised OutcomeUnknown while only upper case counted)."""
    async with supervise(proxy.url, idempotent_commands=("set",)) as sup:
        await sup.wait_for(READY, timeout=5)
        proxy.cut_reply_after(b"SET")
        assert await sup.client.set("k", "v") is True
        assert proxy.cut_done.is_set()
        assert await sup.client.get("k") == b"v"


def test_overloaded_is_ready_with_its_state_in_the_body():
    """OVERLOADED serves commands on the connections that exist: a readiness probe says
    ready (200) and names the state, so replicas are not all pulled at once."""
    from supervisor.service.run import health_response

    class Seen:
        target = "127.0.0.1:6379/0"
        cause = None
        detail = "new connections are turned away"

        def __init__(self, state: ConnectionState) -> None:
            self.state = state

    status, body = health_response({"redis": Seen(ConnectionState.OVERLOADED)})  # type: ignore[dict-item]
    assert status == 200 and body["targets"]["redis"]["state"] == "overloaded"  # type: ignore[index]
    status, _ = health_response({"redis": Seen(ConnectionState.RECONNECTING)})  # type: ignore[dict-item]
    assert status == 503


async def test_client_kill_of_every_connection_is_not_overloaded(server, supervise):
    """CLIENT KILL closes the app's connections (the server turns nobody away): never
    OVERLOADED, only evidence from the server (maxclients) makes it so."""
    from tests.helpers.events import Recorder

    admin = server.admin()
    async with supervise(server.url) as sup:
        await sup.wait_for(READY, timeout=5)
        recorder = Recorder()
        async with anyio.create_task_group() as tg, sup.subscribe() as events:
            tg.start_soon(recorder.record, events)
            for _ in range(5):
                async with anyio.create_task_group() as load:
                    for i in range(20):
                        load.start_soon(sup.client.get, f"k{i}")
                admin.client_kill_filter(skipme=True)
                async with anyio.create_task_group() as load:
                    for i in range(20):
                        load.start_soon(sup.client.get, f"k{i}")
            tg.cancel_scope.cancel()
        states = [getattr(e, "current", None) for e in recorder.events]
        assert ConnectionState.OVERLOADED not in states, states
    admin.close()


async def test_health_answers_with_many_silent_connections_held_against_it():
    """200 connections that send nothing (or trickle) are held against the listener: a
    probe that sends its request at once still gets its answer, each time."""
    import httpx

    from supervisor.service.http import Response, serve

    async with anyio.create_task_group() as tg:
        port = await tg.start(serve, "127.0.0.1", 0, lambda path: Response(200, b"{}"))
        idle = [await anyio.connect_tcp("127.0.0.1", port) for _ in range(100)]
        trickle = []
        for _ in range(100):
            stream = await anyio.connect_tcp("127.0.0.1", port)
            await stream.send(b"GET /health HT")
            trickle.append(stream)
        async with httpx.AsyncClient(timeout=5) as client:
            for _ in range(20):
                response = await client.get(f"http://127.0.0.1:{port}/health")
                assert response.status_code == 200
        for stream in idle + trickle:
            await stream.aclose()
        tg.cancel_scope.cancel()


async def test_auto_pipeline_queue_is_bounded_by_max_waiters(server, supervise):
    """The server is stopped; 300 SETs go to the shared connection at once: beyond
    max_waiters they fail at once with Unavailable, as on the pool; the others complete
    once the server goes on."""
    outcomes: list[str] = []
    async with supervise(server.url, auto_pipeline=True, max_waiters=100) as sup:
        await sup.wait_for(READY, timeout=5)
        await sup.client.set("warm", "1")  # the lane is open
        server.stop()
        try:
            async with anyio.create_task_group() as tg:

                async def put(i: int) -> None:
                    try:
                        await sup.client.set(f"k{i}", "x" * 1000)
                        outcomes.append("ok")
                    except Unavailable:
                        outcomes.append("unavailable")

                for i in range(300):
                    tg.start_soon(put, i)
                await poll(
                    lambda: outcomes.count("unavailable") >= 200,
                    "200 SETs refused at once (max_waiters)",
                    lambda: outcomes.count("unavailable"),
                )
                server.cont()
        finally:
            server.cont()
    assert outcomes.count("unavailable") == 200, outcomes.count("unavailable")
    assert outcomes.count("ok") == 100


async def test_auto_pipeline_under_maxclients_runs_on_the_pools_connections(server, supervise):
    """The shared connection is killed while the server is full: the lane cannot be
    reopened, so commands run on the pool's idle connections (every one succeeds), and
    nothing dials but the prober while OVERLOADED."""
    admin = server.admin()
    async with supervise(server.url, auto_pipeline=True, backoff_base=0.1) as sup:
        await sup.wait_for(READY, timeout=5)
        assert await sup.client.get("k") is None  # the lane is open
        async with anyio.create_task_group() as tg:  # two pooled connections
            for _ in range(2):
                tg.start_soon(sup.client.blpop, ["q"], 0.05)
        lane = [c for c in admin.client_list() if c["cmd"] == "get"]
        assert len(lane) == 1, admin.client_list()
        admin.client_kill_filter(_id=lane[0]["id"])
        admin.config_set("maxclients", int(admin.info("clients")["connected_clients"]))
        admin.config_resetstat()
        results: list[object] = []
        async with anyio.create_task_group() as tg:
            for i in range(20):

                async def get(i: int = i) -> None:
                    results.append(await sup.client.get(f"c{i}"))

                tg.start_soon(get)
        assert results == [None] * 20  # every command served
        rejected = int(admin.info("stats")["rejected_connections"])
        attempts = sup.statistics().connect_attempts_by_cause.get("maxclients", 0)
        # every connection the server turned away is one of ours it counted: none uncounted
        assert 1 <= rejected <= attempts, (rejected, attempts)
        admin.config_set("maxclients", 10000)
    admin.close()


async def test_leaving_while_the_shared_connection_opens_settles_its_callers(proxy, supervise):
    """The server stops answering while the shared connection is in its handshake
    (``socket_timeout`` None: that handshake would wait forever). Leaving the supervisor
    closes that socket and settles its 100 callers at once."""
    from tests.helpers.loops import Tally

    settled = Tally()
    errors: list[BaseException] = []
    async with anyio.create_task_group() as tg:
        async with supervise(proxy.url, auto_pipeline=True, socket_timeout=None) as sup:
            await sup.wait_for(READY, timeout=5)
            proxy.hold_replies_from(b"CLIENT")  # the lane's handshake: CLIENT SETINFO

            async def call() -> None:
                try:
                    await sup.client.get("k")
                except Exception as exc:
                    errors.append(exc)
                settled.add()

            for _ in range(100):
                tg.start_soon(call)
            with anyio.fail_after(10):
                await proxy.held.wait()
        await settled.reach(100, "the callers to settle once the supervisor is left", 5)
        proxy.release_replies()
    assert len(errors) == 100
