"""Redis Cluster: 3 primaries and 3 replicas started on loopback."""

from __future__ import annotations

import random

import anyio
import anyio.lowlevel
import pytest
from redis.exceptions import TimeoutError as RedisTimeoutError

from supervisor import (
    ClusterSupervisor,
    ConnectionState,
    NodeStateChanged,
    OutcomeUnknown,
    StateChanged,
    SupervisorConfig,
    SupervisorError,
    TopologyChanged,
    Unavailable,
)
from supervisor.connection.connections import SupervisedConnection, SupervisedSSLConnection
from supervisor.integrations.prometheus import Metrics
from supervisor.service.run import health_response
from supervisor.testing import ClusterSetup
from tests.helpers.busy import SPIN, calls, spins_for
from tests.helpers.events import state_is, until
from tests.helpers.loops import Tally, bounded, poll
from tests.helpers.proxy import FaultProxy

READY = ConnectionState.READY


@pytest.fixture(scope="module")
def cluster():
    c = ClusterSetup()
    yield c
    c.close()


@pytest.fixture(scope="module")
def held_cluster():
    """A cluster whose nodes wait 60 s before failing a silent peer over: a stopped
    primary stays the primary, so its slots stay unserved as long as a test needs."""
    c = ClusterSetup(node_timeout_ms=60_000, full_coverage=False)
    yield c
    c.close()


def _replica_caught_up(replication: dict) -> bool:  # type: ignore[type-arg]
    replica = replication.get("slave0")
    return isinstance(replica, dict) and replica.get("offset") == replication.get(
        "master_repl_offset"
    )


def keys_by_shard(cluster: ClusterSetup) -> dict[str, str]:
    """One hash-tagged key per primary: ``{kN}`` and ``{kN}:w`` live on the same shard."""
    found: dict[str, str] = {}
    for i in range(200):
        found.setdefault(cluster.primary_of(f"{{k{i}}}"), f"{{k{i}}}")
        if len(found) == 3:
            return found
    raise AssertionError("could not find a key for every shard")


async def test_a_full_node_pool_is_not_an_unknown_outcome(cluster):
    """With one connection per node, concurrent writes to one shard find the node's pool
    full (redis-py raises MaxConnectionsError before sending anything): each write goes
    again after the next health round, none is OutcomeUnknown, none is applied twice.
    The same rule (supervisor.connection.resend) decides it as for a single target."""
    config = SupervisorConfig(
        cluster_nodes=tuple(cluster.seeds),
        health_check_interval=0.2,
        health_check_timeout=0.2,
        max_connections=1,
    )
    key = "{full-pool}"
    async with ClusterSupervisor(config) as sup:
        await sup.wait_for(READY, timeout=10)
        await sup.client.delete(key)
        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(sup.client.incr, key)
        assert int(await sup.client.get(key)) == 8


async def test_a_round_checks_every_node_side_by_side(cluster):
    """Three stopped replicas (SIGSTOP): each check waits its full deadline (connect and
    reply, 2 s), yet a round takes one deadline, not three, so a command that waits for
    the next round (settled) is served within a command deadline that three checks in a
    row (6 s) would pass."""
    from supervisor import NodeStateChanged as Changed

    config = SupervisorConfig(
        cluster_nodes=tuple(cluster.seeds),
        health_check_interval=0.2,
        health_check_timeout=1.0,
        socket_connect_timeout=1.0,
    )
    admin = cluster.node(cluster.seeds[0]).admin()
    replicas = [
        line.split()[1].split("@")[0]
        for line in admin.execute_command("CLUSTER", "NODES").splitlines()
        if "slave" in line.split()[2]
    ]
    admin.close()
    assert len(replicas) == 3
    async with ClusterSupervisor(config) as sup, sup.subscribe() as events:
        await sup.wait_for(READY, timeout=10)
        try:
            for address in replicas:
                cluster.node(address).stop()
            down: set[str] = set()
            for _ in range(len(replicas)):
                event = await until(
                    events,
                    lambda e: isinstance(e, Changed) and e.current == "down" and e.node not in down,
                )
                down.add(event.node)
            assert down == set(replicas), down
            await sup.settled(anyio.current_time() + 5.5, "a round with three stopped nodes")
        finally:
            for address in replicas:
                cluster.node(address).cont()
        await until(events, lambda e: isinstance(e, Changed) and e.current == "up")


async def test_connections_killed_under_load_never_surface_a_foreign_error(cluster):
    """CLIENT KILL of one connection at a time on a busy healthy node. redis-py then
    closes the node's free connections, each after an await, so another command could
    take one in between and find it closed under it: a raw AttributeError, or a lost
    reply for a command whose own connection was fine. Here reads never fail, no
    AttributeError escapes, and the counter says no INCR was applied twice."""
    config = SupervisorConfig(
        cluster_nodes=tuple(cluster.seeds),
        health_check_interval=0.2,
        health_check_timeout=0.5,
        socket_timeout=2.0,
    )
    key = "{kill-one}"
    address = cluster.primary_of(key)
    errors: list[BaseException] = []
    done = {"incr": Tally(), "get": Tally()}
    unknown = 0
    stop = anyio.Event()
    async with ClusterSupervisor(config) as sup:
        await sup.wait_for(READY, timeout=10)
        await sup.client.set(key, 0)

        async def worker(op: str) -> None:
            nonlocal unknown
            for _ in bounded(f"{op} worker"):
                if stop.is_set():  # each INCR ends counted: none is cut by a cancel
                    return
                try:
                    if op == "incr":
                        await sup.client.incr(key)
                    else:
                        await sup.client.get(key)
                    done[op].add()
                except OutcomeUnknown:
                    if op != "incr":
                        raise
                    unknown += 1  # its own connection was killed with the INCR in flight
                except Exception as exc:
                    errors.append(exc)

        admin = cluster.node(address).admin()
        try:
            async with anyio.create_task_group() as tg:
                for i in range(30):
                    tg.start_soon(worker, "incr" if i % 2 else "get")
                me = admin.client_id()
                for n in range(1, 41):
                    await done["get"].reach(n * 50, "reads between two kills")
                    ours = [
                        c["id"]
                        for c in admin.client_list()
                        if int(c["id"]) != me and c["name"] != "supervisor-probe"
                    ]
                    admin.client_kill_filter(_id=random.choice(ours))
                stop.set()
            incrs = done["incr"].value
            value = int(admin.get(key))
        finally:
            admin.close()
    assert [repr(e) for e in errors] == []
    assert incrs <= value <= incrs + unknown, (incrs, unknown, value)


async def test_connections_the_server_closed_while_idle_are_not_used(cluster):
    """Every node's idle ``timeout`` is 1 s and the app idles 2.5 s: the server closes
    the pooled connections, and the next writes go out on fresh ones instead of
    being lost on the closed ones (OutcomeUnknown)."""
    config = SupervisorConfig(
        cluster_nodes=tuple(cluster.seeds), health_check_interval=0.2, socket_timeout=2.0
    )
    shards = keys_by_shard(cluster)
    admins = [cluster.node(a).admin() for a in shards]
    try:
        async with ClusterSupervisor(config) as sup:
            await sup.wait_for(READY, timeout=10)
            for admin in admins:
                admin.config_set("timeout", 1)
            for key in shards.values():
                await sup.client.set(key, 1)
            with anyio.move_on_after(2.5):  # the app idles: this is the scenario, not a sync
                await anyio.sleep_forever()
            for key in shards.values():
                await sup.client.set(key, 2)
            made = [type(c) for n in sup.client.get_nodes() for c in n._connections]
            assert made and all(issubclass(t, SupervisedConnection) for t in made), made
    finally:
        for admin in admins:
            admin.config_set("timeout", 0)
            admin.close()


async def test_a_read_slower_than_socket_timeout_on_one_shard_times_out_once(cluster):
    """A slow script on one shard outlives ``socket_timeout`` (kept by the supervisor's
    deadline task, not a timer per read): the server is busy, not lost, so the caller gets
    redis-py's TimeoutError, the script ran once, and the other shards answer."""
    shards = keys_by_shard(cluster)
    victim, key = next(iter(shards.items()))
    admin = cluster.node(victim).admin()
    try:
        spins = spins_for(admin, 800)
        config = SupervisorConfig(
            cluster_nodes=tuple(cluster.seeds),
            socket_timeout=0.2,
            health_check_timeout=3.0,  # the check after the timeout waits the script out
            health_check_interval=5.0,
        )
        async with ClusterSupervisor(config) as sup:
            await sup.wait_for(READY, timeout=10)
            admin.config_resetstat()
            with pytest.raises(RedisTimeoutError) as info:
                await sup.client.eval_ro(SPIN, 1, key, spins)
            assert not isinstance(info.value, SupervisorError)
            assert calls(admin, "eval_ro") == 1
            for other in shards.values():
                assert await sup.client.get(f"{other}:absent") is None
    finally:
        admin.close()


async def test_a_stopped_primarys_slots_fail_fast_and_the_rest_serve(held_cluster):
    """offline = "fail_fast": while a primary is stopped (SIGSTOP), commands for its
    slots fail at once with Unavailable naming it, never sent; the other shards serve
    as before; once it answers again, its slots serve too."""
    cluster = held_cluster
    config = SupervisorConfig(
        cluster_nodes=tuple(cluster.seeds),
        health_check_interval=0.2,
        health_check_timeout=0.3,
        offline="fail_fast",
    )
    shards = keys_by_shard(cluster)
    victim, held_key = next(iter(shards.items()))
    async with ClusterSupervisor(config) as sup, sup.subscribe() as events:
        await sup.wait_for(READY, timeout=10)
        for key in shards.values():
            await sup.client.set(key, "before")
        cluster.node(victim).stop()
        try:
            await until(events, state_is(ConnectionState.UNHEALTHY))
            with pytest.raises(Unavailable, match="fail_fast") as refused:
                await sup.client.set(held_key, "during")
            assert victim in str(refused.value)
            for key in shards.values():
                if key != held_key:
                    await sup.client.set(key, "during")
                    assert await sup.client.get(key) == b"during"
            assert sup.statistics().generation == 1
        finally:
            cluster.node(victim).cont()
        await until(events, state_is(READY))
        assert await sup.client.get(held_key) == b"before"
        assert sup.statistics().generation == 2
        assert sup.statistics().connections_lost == 0


async def test_commands_for_a_stopped_primary_wait_bounded_by_max_waiters(held_cluster):
    """offline = "wait": commands for a stopped primary's slots wait at the gate (no
    connection to it is tried); one over max_waiters fails at once; other shards serve
    meanwhile; the waiters are served once the primary answers again."""
    cluster = held_cluster
    config = SupervisorConfig(
        cluster_nodes=tuple(cluster.seeds),
        health_check_interval=0.2,
        health_check_timeout=0.3,
        max_waiters=3,
        command_deadline=30.0,
    )
    shards = keys_by_shard(cluster)
    victim, held_key = next(iter(shards.items()))
    served: list[bytes] = []
    async with ClusterSupervisor(config) as sup, sup.subscribe() as events:
        await sup.wait_for(READY, timeout=10)
        await sup.client.set(held_key, "kept")

        async def waiter() -> None:
            served.append(await sup.client.get(held_key))

        cluster.node(victim).stop()
        try:
            await until(events, state_is(ConnectionState.UNHEALTHY))
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(waiter)
                await poll(
                    lambda: sup.statistics().waiters == 3,
                    "3 commands waiting at the gate",
                    lambda: sup.statistics().waiters,
                )
                with pytest.raises(Unavailable, match="max_waiters"):
                    await sup.client.get(held_key)
                for key in shards.values():
                    if key != held_key:
                        await sup.client.set(key, "meanwhile")
                assert served == []
                cluster.node(victim).cont()
        finally:
            cluster.node(victim).cont()
    assert served == [b"kept"] * 3


async def test_a_node_that_left_the_cluster_leaves_nodes_health_and_metrics(held_cluster):
    """A replica is shut down and every other node forgets it (CLUSTER FORGET): it
    leaves ``sup.nodes``, ``/health`` and ``/metrics`` instead of staying down there."""
    cluster = held_cluster
    config = SupervisorConfig(cluster_nodes=tuple(cluster.seeds), health_check_interval=0.2)
    async with ClusterSupervisor(config) as sup:
        await sup.wait_for(READY, timeout=10)
        await poll(
            lambda: any(n.role == "replica" for n in sup.nodes.values()),
            "a replica in sup.nodes",
            sup.nodes.values,
        )
        replica = next(a for a, n in sup.nodes.items() if n.role == "replica")
        with cluster.node(replica).admin() as admin:
            node_id = admin.execute_command("CLUSTER", "MYID")
        cluster.node(replica).kill()
        for node in cluster.nodes:
            if f"127.0.0.1:{node.port}" != replica:
                with node.admin() as admin:
                    admin.execute_command("CLUSTER", "FORGET", node_id)
        await poll(
            lambda: replica not in sup.nodes, f"{replica} to leave sup.nodes", sup.nodes.keys
        )
        _, body = health_response({"cache": sup})
        assert replica not in body["targets"]["cache"]["nodes"]
        assert replica not in Metrics({"cache": sup}).render().decode()


async def test_a_tls_cluster_is_supervised_over_tls_only():
    """Nodes that listen on TLS only (no plain port; bus and replication on TLS too):
    with a rediss:// url the health checks and the commands reach every node over
    TLS. A client that does not trust the nodes' CA is refused by the check, which
    names the certificate, and no command goes out in plain TCP."""
    setup = ClusterSetup(tls=True)
    try:
        assert setup.tls is not None
        url = "rediss://127.0.0.1:6379/0"
        trusted = SupervisorConfig(
            url=url,
            cluster_nodes=tuple(setup.seeds),
            redis_options={"ssl_ca_certs": setup.tls.ca},
            health_check_interval=0.2,
        )
        async with ClusterSupervisor(trusted) as sup:
            await sup.wait_for(READY, timeout=10)
            # READY needs the slots served; a replica's TLS check may still be under way
            await poll(
                lambda: len(sup.nodes) == 6 and all(n.up for n in sup.nodes.values()),
                "all 6 nodes checked over TLS",
                lambda: {a: n.up for a, n in sup.nodes.items()},
            )
            for key in keys_by_shard(setup).values():
                await sup.client.set(key, "over tls")
                assert await sup.client.get(key) == b"over tls"
            made = [type(c) for n in sup.client.get_nodes() for c in n._connections]
            assert made and all(issubclass(t, SupervisedSSLConnection) for t in made), made
        untrusted = SupervisorConfig(
            url=url,
            cluster_nodes=tuple(setup.seeds),
            health_check_interval=0.2,
            offline="fail_fast",
        )
        async with ClusterSupervisor(untrusted) as sup:
            await sup.wait_for(ConnectionState.RECONNECTING, timeout=10)
            assert "certificate verify failed" in sup.detail, sup.detail
            with pytest.raises(Unavailable, match="certificate verify failed"):
                await sup.client.get("never sent")
    finally:
        setup.close()


async def test_auto_pipeline_routes_by_slot_one_lane_per_primary(cluster):
    """auto_pipeline on a cluster: 50 tasks' INCRs over every shard share one lane per
    primary, each caller gets its own reply; a stale slot table (MOVED) and a slot in
    migration (ASK: ASKING and the command in one write) are followed as redis-py
    follows them, without an error."""
    config = SupervisorConfig(cluster_nodes=tuple(cluster.seeds), auto_pipeline=True)
    async with ClusterSupervisor(config) as sup:
        await sup.wait_for(READY, timeout=10)
        client = sup.client
        await client.delete(*(f"ap:{i}" for i in range(50)))

        async def caller(i: int) -> None:
            for n in range(1, 51):
                assert await client.incr(f"ap:{i}") == n

        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(caller, i)
        assert [int(await client.get(f"ap:{i}")) for i in range(50)] == [50] * 50
        lanes = client._lanes._lanes  # type: ignore[union-attr]
        assert sorted(lanes) == sorted(n.name for n in client.get_primaries())

        manager = client.nodes_manager
        slot = client.keyslot("ap:7")
        right = manager.slots_cache[slot][0]
        wrong = next(n for n in client.get_primaries() if n.name != right.name)
        manager.slots_cache[slot] = [wrong]
        assert await client.get("ap:7") == b"50"  # MOVED, then the right node
        assert manager.slots_cache[slot][0].name == right.name

        key = "ap:ask:{moving}"
        slot = client.keyslot(key)
        source = cluster.primary_of(key)
        target = next(n.name for n in client.get_primaries() if n.name != source)
        with cluster.node(source).admin() as src, cluster.node(target).admin() as dst:
            src_id, dst_id = (
                src.execute_command("CLUSTER", "MYID"),
                dst.execute_command("CLUSTER", "MYID"),
            )
            dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
            src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
            try:
                assert await client.set(key, "v") is True  # absent on the source: ASK
                assert asking_get(dst, key) == "v"  # on the importing node, not the source
            finally:
                asking_delete(dst, key)
                for admin in (src, dst):
                    admin.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")


def asking_get(admin, key: str) -> str | None:  # type: ignore[no-untyped-def]
    """GET on the importing node, on one connection: ASKING, then the command."""
    with admin.client() as one:
        one.execute_command("ASKING")
        return one.get(key)


def asking_delete(admin, key: str) -> None:  # type: ignore[no-untyped-def]
    with admin.client() as one:
        one.execute_command("ASKING")
        one.delete(key)


def _announced_ports(cluster: ClusterSetup, address: str) -> set[int]:
    """The client port every live node gives in CLUSTER SLOTS for ``address``'s slots."""
    ports: dict[int, int] = {}
    with cluster.node(address).admin() as admin:
        myid = admin.execute_command("CLUSTER", "MYID")
    for node in cluster.nodes:
        with node.admin() as admin:
            for _start, _end, primary, *_ in admin.execute_command("CLUSTER", "SLOTS"):
                if primary[2] == myid:
                    ports[node.port] = int(primary[1])
    return set(ports.values())


async def test_a_batch_cut_on_one_nodes_lane_resends_reads_never_doubles_a_write(cluster):
    """One primary announces a fault proxy's port, so every client reaches it through
    the proxy, which cuts that node's lane when INCRBY replies come back: the server
    applied the INCRs and their replies are lost. Each GET on that shard is sent again
    and returns its value, each INCR raises OutcomeUnknown and is never re-sent (the
    counter counts each at most once), and the other shards' callers see no error."""
    shards = keys_by_shard(cluster)
    victim = cluster.seeds[0]
    real_port = cluster.node(victim).port
    others = tuple(a for a in cluster.seeds if a != victim)
    async with FaultProxy(real_port) as proxy:
        with cluster.node(victim).admin() as admin:
            admin.config_set("cluster-announce-bus-port", real_port + 10000)
            admin.config_set("cluster-announce-port", proxy.port)
        try:
            await poll(
                lambda: _announced_ports(cluster, victim) == {proxy.port},
                f"every node to route {victim}'s slots to the proxy",
                lambda: _announced_ports(cluster, victim),
            )
            config = SupervisorConfig(
                cluster_nodes=others, auto_pipeline=True, command_deadline=20.0
            )
            async with ClusterSupervisor(config) as sup:
                await sup.wait_for(READY, timeout=10)
                client = sup.client
                for key in shards.values():
                    await client.set(f"{key}:n", 0)
                    for i in range(20):
                        await client.set(f"{key}:r{i}", i)
                assert proxy.commands[b"SET"] >= 21, "the victim's shard goes through the proxy"
                applied = dict.fromkeys(shards, 0)
                unknown = dict.fromkeys(shards, 0)
                errors: list[BaseException] = []
                reads: dict[tuple[str, int], bytes | None] = {}

                async def writer(address: str, key: str) -> None:
                    try:
                        await client.incr(f"{key}:n")
                        applied[address] += 1
                    except OutcomeUnknown:
                        unknown[address] += 1
                    except Exception as exc:  # any other error is recorded and fails
                        errors.append(exc)

                async def reader(address: str, key: str, i: int) -> None:
                    try:
                        reads[(address, i)] = await client.get(f"{key}:r{i}")
                    except Exception as exc:
                        errors.append(exc)

                proxy.cut_reply_after(b"INCRBY")
                async with anyio.create_task_group() as tg:
                    for address, key in shards.items():
                        for i in range(20):
                            tg.start_soon(reader, address, key, i)
                            tg.start_soon(writer, address, key)
                assert proxy.cut_done.is_set(), "the proxy cut the victim's lane"
                assert errors == []
                assert reads == {(a, i): str(i).encode() for a in shards for i in range(20)}
                for address, key in shards.items():
                    value = int(await client.get(f"{key}:n"))
                    total = applied[address] + unknown[address]
                    assert total == 20
                    assert applied[address] <= value <= total, (address, value, applied, unknown)
                    if address != victim:
                        assert unknown[address] == 0 and value == 20, address
                assert unknown[victim] >= 1
        finally:
            with cluster.node(victim).admin() as admin:
                admin.config_set("cluster-announce-port", 0)
                admin.config_set("cluster-announce-bus-port", 0)
            await poll(
                lambda: _announced_ports(cluster, victim) == {real_port},
                f"every node to route {victim}'s slots to its own port again",
                lambda: _announced_ports(cluster, victim),
            )


async def test_auto_pipelined_primary_killed_other_shards_never_fail():
    """The primary-kill test below with auto_pipeline, on a cluster of its own: a lost
    lane fails only its node's commands."""
    own = ClusterSetup()
    try:
        await _primary_killed(own, auto_pipeline=True)
    finally:
        own.close()


async def test_primary_killed_other_shards_never_fail(cluster):
    await _primary_killed(cluster, auto_pipeline=False)


async def _primary_killed(cluster: ClusterSetup, *, auto_pipeline: bool) -> None:
    """SIGKILL one primary under load: reads and writes on the other shards never fail,
    reads on the failed shard wait through the failover, the node is reported down, the
    replica's promotion arrives as a topology change, and all of it heals by itself."""
    config = SupervisorConfig(
        cluster_nodes=tuple(cluster.seeds),
        health_check_interval=0.2,
        health_check_timeout=0.2,
        socket_connect_timeout=0.5,
        socket_timeout=2.0,
        command_deadline=20.0,
        auto_pipeline=auto_pipeline,
    )
    shards = keys_by_shard(cluster)
    victim = cluster.seeds[0]
    async with ClusterSupervisor(config) as sup, sup.subscribe(max_buffer=1000) as events:
        await sup.wait_for(READY, timeout=10)
        assert all(n.up for n in sup.nodes.values())
        for address, key in shards.items():
            # replication is asynchronous: what the readers assert on must be on the
            # replica before its primary is killed
            with cluster.node(address).admin() as admin:
                admin.set(key, key)
                assert admin.wait(1, 5000) == 1, f"{address}'s replica did not acknowledge"
        errors: dict[str, list[BaseException]] = {address: [] for address in shards}
        reads = {address: Tally() for address in shards}

        async def reader(address: str, key: str) -> None:
            for _ in bounded(f"reader of {address}"):
                try:
                    value = await sup.client.get(key)
                    if value != key.encode():
                        raise AssertionError(f"GET {key} returned {value!r}")
                    reads[address].add()
                except Exception as exc:  # any error is recorded and fails the test
                    errors[address].append(exc)
                await anyio.lowlevel.checkpoint()

        async def writer(address: str, key: str) -> None:
            for n in bounded(f"writer of {address}"):
                try:
                    await sup.client.set(f"{key}:w", n)
                except Exception as exc:
                    errors[address].append(exc)
                await anyio.lowlevel.checkpoint()

        # an INCR per shard: acknowledged ones are never lost (those before the kill were
        # replicated first), and none is applied twice (a lost reply is OutcomeUnknown)
        acked = dict.fromkeys(shards, 0)
        unknown = dict.fromkeys(shards, 0)
        calls = dict.fromkeys(shards, 0)
        hold = anyio.Event()
        held = anyio.Event()
        for key in shards.values():
            await sup.client.delete(f"{key}:n")

        async def counter(address: str, key: str) -> None:
            for _ in bounded(f"counter of {address}"):
                if address == victim and not hold.is_set():
                    held.set()
                    await hold.wait()
                calls[address] += 1
                try:
                    await sup.client.incr(f"{key}:n")
                    acked[address] += 1
                except OutcomeUnknown:
                    unknown[address] += 1
                except Exception as exc:
                    errors[address].append(exc)
                await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as tg:
            for address, key in shards.items():
                tg.start_soon(reader, address, key)
                tg.start_soon(counter, address, key)
                if address != victim:
                    tg.start_soon(writer, address, key)
            with anyio.fail_after(10):
                await held.wait()
            with cluster.node(victim).admin() as admin:
                await poll(
                    lambda: _replica_caught_up(admin.info("replication")),
                    f"{victim}'s replica to have every acknowledged INCR",
                )
            cluster.node(victim).kill()
            hold.set()
            down = await until(
                events,
                lambda e: (
                    isinstance(e, NodeStateChanged) and e.node == victim and e.current == "down"
                ),
                bound=30,
            )
            assert down.role == "primary"
            unhealthy = await until(
                events,
                lambda e: isinstance(e, StateChanged) and e.current is ConnectionState.UNHEALTHY,
            )
            assert victim in unhealthy.detail
            moved = await until(events, lambda e: isinstance(e, TopologyChanged), bound=30)
            assert victim not in moved.primaries
            await until(
                events, lambda e: isinstance(e, StateChanged) and e.current is READY, bound=30
            )
            served = reads[victim].value  # the failed shard serves again, no restart
            await reads[victim].reach(served + 20, f"reads on {victim} after the failover")
            tg.cancel_scope.cancel()
            assert {a: [repr(e) for e in errs][:2] for a, errs in errors.items()} == {
                a: [] for a in shards
            }
        for address, key in shards.items():
            value = int(await sup.client.get(f"{key}:n") or 0)
            # the last call of each counter may have been cut by the test's own cancel
            assert acked[address] <= value <= calls[address], (address, value, acked, calls)
            if address != victim:
                assert unknown[address] == 0, address
        assert sup.nodes[victim].up is False
        status, body = health_response({"cache": sup})
        assert status == 200
        assert body["targets"]["cache"]["nodes"][victim]["up"] is False
        metrics = Metrics({"cache": sup}).render().decode()
        assert f'supervisor_node_up{{node="{victim}",role="primary",target="cache"}} 0.0' in metrics
