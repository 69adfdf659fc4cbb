"""Redis Cluster: 3 primaries and 3 replicas started on loopback."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from supervisor import (
    ClusterSupervisor,
    ConnectionState,
    NodeStateChanged,
    StateChanged,
    SupervisorConfig,
    TopologyChanged,
)
from supervisor.metrics import Metrics
from supervisor.service import health_response
from supervisor.testing import ClusterSetup
from tests.helpers.events import until
from tests.helpers.loops import Tally, bounded

READY = ConnectionState.READY


@pytest.fixture(scope="module")
def cluster():
    c = ClusterSetup()
    yield c
    c.close()


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
    The same rule (supervisor.resend) decides it as for a single target."""
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


async def test_primary_killed_other_shards_never_fail(cluster, tmp_path):
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

        async with anyio.create_task_group() as tg:
            for address, key in shards.items():
                tg.start_soon(reader, address, key)
                if address != victim:
                    tg.start_soon(writer, address, key)
            cluster.node(victim).kill()
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
            assert {a: [str(e) for e in errs] for a, errs in errors.items()} == {
                a: [] for a in shards
            }
        assert sup.nodes[victim].up is False
        status, body = health_response({"cache": sup})
        assert status == 200
        assert body["targets"]["cache"]["nodes"][victim]["up"] is False
        metrics = Metrics({"cache": sup}).render().decode()
        assert f'supervisor_node_up{{node="{victim}",role="primary",target="cache"}} 0.0' in metrics
