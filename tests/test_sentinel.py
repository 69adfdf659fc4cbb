"""Redis Sentinel: real master, replica and three sentinels on loopback."""

from __future__ import annotations

import anyio
import pytest

from supervisor import (
    Alert,
    Cause,
    ConnectionState,
    MasterChanged,
    OutcomeUnknown,
    StateChanged,
    Supervisor,
    SupervisorConfig,
    Unavailable,
)
from supervisor.testing import SentinelSetup
from tests.helpers.events import until
from tests.helpers.loops import Tally, bounded, poll
from tests.helpers.proxy import FaultProxy

READY = ConnectionState.READY


@pytest.fixture
def setup():
    s = SentinelSetup()
    yield s
    s.close()


def config_for(setup: SentinelSetup, **overrides) -> SupervisorConfig:
    values = dict(
        sentinels=tuple(setup.addresses),
        service_name=setup.service,
        health_check_interval=0.2,
        health_check_timeout=0.2,
        backoff_base=0.05,
        backoff_cap=0.3,
        socket_connect_timeout=0.5,
        command_deadline=20.0,
    )
    return SupervisorConfig(**{**values, **overrides})


async def watching_all(sup: Supervisor, setup: SentinelSetup) -> None:
    """Until every sentinel's announcements reach the supervisor (bounded)."""
    for _ in range(200):
        if sup.statistics().sentinels_watched == len(setup.sentinels):
            return
        await anyio.sleep(0.02)
    pytest.fail("the supervisor never subscribed to every sentinel")


class Load:
    """Readers and one writer of distinct keys; the writer can pause between writes.

    With ``replicated``, a write is kept in ``acked`` only once ``WAIT`` says a replica
    has it: what an application does when a write must survive a failover. ``acks``
    counts every write the master answered.
    """

    def __init__(self, sup: Supervisor, *, replicated: bool = False) -> None:
        self.sup = sup
        self.replicated = replicated
        self.read_errors: list[BaseException] = []
        self.acked: list[int] = []
        self.acks = Tally()
        self.unknown: list[int] = []
        self.reads = 0
        self.resume = anyio.Event()
        self.resume.set()
        self.paused = anyio.Event()

    async def reader(self) -> None:
        for _ in bounded("reader"):
            try:
                await self.sup.client.get("w:0")
                self.reads += 1
            except Exception as exc:  # any read error fails the test
                self.read_errors.append(exc)
                return
            await anyio.lowlevel.checkpoint()

    async def writer(self) -> None:
        for i in bounded("writer"):
            if not self.resume.is_set():
                self.paused.set()
                await self.resume.wait()
            try:
                if self.replicated:
                    pipe = self.sup.client.pipeline(transaction=False)
                    _, replicas = await pipe.set(f"w:{i}", i).wait(1, 50).execute()
                    if replicas >= 1:
                        self.acked.append(i)
                else:
                    await self.sup.client.set(f"w:{i}", i)
                    self.acked.append(i)
                self.acks.add()
            except OutcomeUnknown:
                self.unknown.append(i)
            await anyio.lowlevel.checkpoint()

    def missing_on(self, admin) -> list[int]:
        keys = [f"w:{i}" for i in self.acked]
        values = admin.mget(keys) if keys else []
        return [i for i, v in zip(self.acked, values, strict=True) if v is None]


async def test_master_killed_under_load_follows_the_new_master(setup):
    """SIGKILL the master under reads and writes: no read fails, every acknowledged write
    is on the new master, and a MasterChanged event names old and new addresses."""
    async with Supervisor(config_for(setup)) as sup, sup.subscribe(max_buffer=1000) as events:
        await sup.wait_for(READY, timeout=10)
        await watching_all(sup, setup)
        old = sup.address
        load = Load(sup)
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(load.reader)
            tg.start_soon(load.writer)
            await load.acks.reach(50, "50 acknowledged writes")
            # replication is asynchronous: kill the master only once the replica has
            # every write it acknowledged, so a lost write could only be the supervisor's
            load.resume = anyio.Event()
            with anyio.fail_after(10):
                await load.paused.wait()
            master, replica = setup.master.admin(), setup.replica.admin()
            for _ in range(1000):  # poll the servers' replication offsets, at most 10 s
                if (
                    master.info("replication")["master_repl_offset"]
                    == replica.info("replication")["slave_repl_offset"]
                ):
                    break
                await anyio.sleep(0.01)
            else:
                pytest.fail("the replica never caught up")
            master.close()
            replica.close()
            setup.master.kill()
            load.resume.set()
            moved = await until(events, lambda e: isinstance(e, MasterChanged), bound=30)
            assert moved.old == old
            assert moved.new == f"127.0.0.1:{setup.replica.port}"
            await until(events, lambda e: isinstance(e, StateChanged) and e.current is READY)
            await load.acks.reach(load.acks.value + 50, "50 more writes on the new master")
            tg.cancel_scope.cancel()
        assert load.read_errors == []
        admin = setup.replica.admin()
        assert admin.info("replication")["role"] == "master"
        assert load.missing_on(admin) == []
        admin.close()


async def test_planned_switch_pauses_writes_and_keeps_replicated_ones(setup):
    """SENTINEL FAILOVER under a write load: writes pause from +try-failover until the
    new master answers, and every write a replica acknowledged (WAIT) is on the new
    master. A write acknowledged without WAIT just before the switch may not have
    reached the replica: Redis replicates asynchronously, and no client can change that."""
    async with Supervisor(config_for(setup)) as sup, sup.subscribe(max_buffer=1000) as events:
        await sup.wait_for(READY, timeout=10)
        await watching_all(sup, setup)
        load = Load(sup, replicated=True)
        async with anyio.create_task_group() as tg:
            tg.start_soon(load.writer)
            tg.start_soon(load.reader)
            await load.acks.reach(50, "50 acknowledged writes")
            sentinel = setup.sentinel_admin(0)
            sentinel.execute_command("SENTINEL", "FAILOVER", setup.service)
            sentinel.close()
            paused = await until(
                events,
                lambda e: isinstance(e, StateChanged) and e.current is ConnectionState.UNHEALTHY,
            )
            assert paused.cause is Cause.FAILOVER
            moved = await until(events, lambda e: isinstance(e, MasterChanged), bound=30)
            assert moved.cause is Cause.FAILOVER
            assert moved.new == f"127.0.0.1:{setup.replica.port}"
            await until(events, lambda e: isinstance(e, StateChanged) and e.current is READY)
            await load.acks.reach(load.acks.value + 20, "20 more writes on the new master")
            tg.cancel_scope.cancel()
        assert load.read_errors == []
        new_master = setup.replica.admin()
        assert load.acked, "no write was acknowledged by a replica"
        assert load.missing_on(new_master) == [], f"{len(load.acked)} acked"
        new_master.close()


async def test_all_sentinels_down_then_back(setup):
    """All sentinels down: an alert says so while the master keeps serving; with the
    master gone too, RECONNECTING names the sentinels; all back: READY again."""
    async with Supervisor(config_for(setup)) as sup, sup.subscribe(max_buffer=1000) as events:
        await sup.wait_for(READY, timeout=10)
        await watching_all(sup, setup)
        for sentinel in setup.sentinels:
            sentinel.kill()
        alert = await until(events, lambda e: isinstance(e, Alert))
        assert alert.name == "sentinels_unreachable" and alert.firing
        assert sup.state is READY
        assert await sup.client.ping()
        setup.master.kill()
        down = await until(
            events,
            lambda e: isinstance(e, StateChanged) and e.current is ConnectionState.RECONNECTING,
        )
        assert down.cause is Cause.NETWORK
        await until(
            events,
            lambda e: (
                type(e).__name__ == "ReconnectScheduled" and "no sentinel answered" in e.detail
            ),
        )
        setup.master.start()
        for sentinel in setup.sentinels:
            sentinel.start()
        back = await until(events, lambda e: isinstance(e, Alert))
        assert back.name == "sentinels_unreachable" and not back.firing
        await sup.wait_for(READY, timeout=20)
        assert await sup.client.ping()


async def test_replica_role_reads_from_a_replica(setup):
    """role = "replica" connects to a healthy replica."""
    async with Supervisor(config_for(setup, role="replica")) as sup:
        await sup.wait_for(READY, timeout=10)
        assert sup.address == f"127.0.0.1:{setup.replica.port}"
        info = await sup.client.info("replication")
        assert info["role"] == "slave"


async def test_switch_master_ends_the_reconnect_wait(setup):
    """With waits of 30-60 s between attempts, +switch-master still brings the target
    back at once: the announcement cuts the wait short (the test's bound is 30 s)."""
    config = config_for(setup, refused_interval=60.0, backoff_base=60.0, backoff_cap=60.0)
    async with Supervisor(config) as sup, sup.subscribe(max_buffer=1000) as events:
        await sup.wait_for(READY, timeout=10)
        await watching_all(sup, setup)
        with setup.master.admin() as master:
            master.set("k", "v")
            assert master.wait(1, 5000) == 1
        setup.master.kill()
        retry = await until(events, lambda e: type(e).__name__ == "ReconnectScheduled")
        assert retry.delay >= 30
        moved = await until(events, lambda e: isinstance(e, MasterChanged), bound=30)
        assert moved.new == f"127.0.0.1:{setup.replica.port}"
        await until(events, lambda e: isinstance(e, StateChanged) and e.current is READY)
        assert await sup.client.get("k") == b"v"


async def test_password_protected_sentinels():
    """Sentinels with requirepass: with sentinel_password (separate from the data nodes'
    credentials) the service is discovered and served; without it the supervisor says the
    sentinels refused authentication, not that they do not know the service."""
    setup = SentinelSetup(sentinel_password="s3ntinel-pw")
    try:
        async with Supervisor(config_for(setup, sentinel_password="s3ntinel-pw")) as sup:
            await sup.wait_for(READY, timeout=10)
            await sup.client.set("k", "v")
            assert await sup.client.get("k") == b"v"
        assert "s3ntinel-pw" not in repr(config_for(setup, sentinel_password="s3ntinel-pw"))
        async with Supervisor(config_for(setup)) as sup, sup.subscribe() as events:
            await until(events, lambda e: getattr(e, "cause", None) is Cause.NETWORK)
            assert "authentication" in sup.detail.lower(), sup.detail
            assert "does not know" not in sup.detail
    finally:
        setup.close()


async def test_tls_sentinels_and_servers():
    """Sentinels, master and replica that listen on TLS only: with a rediss:// url and
    sentinel_tls the service is discovered over TLS and served over TLS, and a failover
    is followed; without sentinel_tls the detail says the sentinels were not reached,
    and no command goes out."""
    setup = SentinelSetup(tls=True)
    try:
        assert setup.tls is not None
        secure = dict(url="rediss://127.0.0.1:6379/0", redis_options={"ssl_ca_certs": setup.tls.ca})
        async with (
            Supervisor(config_for(setup, sentinel_tls=True, **secure)) as sup,
            sup.subscribe() as events,
        ):
            await sup.wait_for(READY, timeout=10)
            await sup.client.set("k", "over tls")
            with setup.master.admin() as admin:
                assert admin.wait(1, 5000) == 1, "the replica did not acknowledge"
            setup.master.kill()
            moved = await until(events, lambda e: isinstance(e, MasterChanged), bound=30)
            assert moved.new == f"127.0.0.1:{setup.replica.port}"
            await sup.wait_for(READY, timeout=10)
            assert await sup.client.get("k") == b"over tls"
        plain_sentinels = config_for(setup, offline="fail_fast", **secure)
        async with Supervisor(plain_sentinels) as sup, sup.subscribe() as events:
            await until(events, lambda e: getattr(e, "cause", None) is Cause.NETWORK)
            assert "sentinel" in sup.detail.lower(), sup.detail
            with pytest.raises(Unavailable):
                await sup.client.get("k")
    finally:
        setup.close()


async def test_an_announcement_that_arrives_before_the_pong_counts():
    """The watcher PINGs a quiet sentinel and reads until the PONG. The fault proxy holds
    that PING back while a failover starts, so +try-failover arrives before the PONG:
    it counts like any other announcement (writes wait: UNHEALTHY, cause FAILOVER)."""
    setup = SentinelSetup()
    try:
        async with FaultProxy(setup.sentinels[0].port) as proxy:
            config = config_for(
                setup, sentinels=(f"127.0.0.1:{proxy.port}",), health_check_timeout=5.0
            )
            async with Supervisor(config) as sup, sup.subscribe() as events:
                await sup.wait_for(READY, timeout=10)
                await poll(lambda: proxy.commands[b"PSUBSCRIBE"] >= 1, "the watcher subscribed")
                proxy.hold_requests()
                try:
                    pings = proxy.commands[b"PING"]
                    await poll(lambda: proxy.commands[b"PING"] > pings, "the watcher's PING")
                    with setup.sentinel_admin(0) as sentinel:
                        sentinel.execute_command("SENTINEL", "FAILOVER", setup.service)
                    started = await until(
                        events,
                        lambda e: isinstance(e, StateChanged) and e.cause is Cause.FAILOVER,
                        bound=4,
                    )
                    assert "+try-failover" in started.detail, started.detail
                    assert proxy.commands[b"PING"] == pings + 1  # still waiting for its PONG
                finally:
                    proxy.release_requests()
    finally:
        setup.close()
