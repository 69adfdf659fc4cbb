"""Pub/sub on a real cluster through slot moves, failovers, kills and new nodes: every
message published outside a reported window is delivered once (tests/helpers/ledger.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import pytest

from supervisor import Cause, ClusterSupervisor, ConnectionState, Resubscribed, SupervisorConfig
from supervisor.targets.cluster_pubsub import ClusterPubSub
from supervisor.testing import ClusterSetup
from tests.helpers.ledger import Ledger
from tests.helpers.loops import bounded, poll

KEYSPACE = "__keyspace@0__:ks:*"


@pytest.fixture(scope="module")
def cluster():
    setup = ClusterSetup()
    try:
        yield setup
    finally:
        setup.close()


def _config(cluster: ClusterSetup) -> SupervisorConfig:
    return SupervisorConfig(
        cluster_nodes=tuple(cluster.seeds),
        health_check_interval=0.2,
        health_check_timeout=0.3,
        socket_connect_timeout=0.5,
        command_deadline=20.0,
    )


def shard_channels(cluster: ClusterSetup, per_primary: int = 2) -> dict[str, list[str]]:
    """Channel names, ``per_primary`` on each primary, each in its own slot."""
    out: dict[str, list[str]] = {a: [] for a in cluster.primaries()}
    for i in bounded("picking shard channels", count=10_000):
        name = f"shard-{i}"
        owner = cluster.primary_of(name)
        if len(out.get(owner, [per_primary])) < per_primary:
            out[owner].append(name)
        if all(len(v) >= per_primary for v in out.values()):
            return out
    raise AssertionError("unreachable")


@dataclass
class Run:
    sup: ClusterSupervisor
    ps: ClusterPubSub
    ledger: Ledger
    shards: dict[str, list[str]]
    sent: dict[str, int] = field(default_factory=dict)

    def channel_on(self, address: str) -> str:
        return self.shards[address][0]

    async def flowing(self, what: str) -> None:
        """Wait until a message published from now on arrives on every channel."""
        await poll(lambda: self.ps.in_sync, f"{what}: the handle in sync", self.ps.subscriptions)
        marks = dict(self.sent)
        for channel, n in marks.items():
            await self.ledger.delivered(channel, str(n + 2), f"{what}: {channel} delivers")


@asynccontextmanager
async def running(cluster: ClusterSetup, *, keyspace: bool = True) -> AsyncIterator[Run]:
    """A supervisor, a handle subscribed to shard channels on every primary, a classic
    channel and a keyspace pattern, with a publisher per channel; checked at the end."""
    for node in cluster.nodes:
        if node._proc is not None and node._proc.poll() is None:
            with node.admin() as r:
                r.config_set("notify-keyspace-events", "K$")
    shards = shard_channels(cluster)
    async with ClusterSupervisor(_config(cluster)) as sup, sup.pubsub() as ps:
        await sup.wait_for(ConnectionState.READY, timeout=10)
        ledger = Ledger()
        run = Run(sup, ps, ledger, shards)
        names = [n for group in shards.values() for n in group]
        await ps.ssubscribe(*names)
        await ps.subscribe("classic")
        if keyspace:
            await ps.psubscribe(KEYSPACE)
        stop = anyio.Event()

        async def publisher(channel: str, send: Callable[[str, str], Awaitable[object]]) -> None:
            for n in bounded(f"publisher of {channel}", seconds=120):
                if stop.is_set():
                    return
                run.sent[channel] = n
                await ledger.publish(send, channel, str(n))

        async def set_key(channel: str, payload: str) -> None:
            await sup.client.set(channel.removeprefix("__keyspace@0__:"), payload)

        async with anyio.create_task_group() as tg:
            tg.start_soon(ledger.consume, ps)
            async with anyio.create_task_group() as publishers:
                for name in names:
                    publishers.start_soon(publisher, name, sup.client.spublish)
                publishers.start_soon(publisher, "classic", sup.client.publish)
                await run.flowing("before the fault")
                yield run
                await run.flowing("after the fault")
                stop.set()
            await ledger.drained()
            await ps.aclose()
        counts = ledger.check()
        assert counts["delivered"] > 0, counts


def moved(cause: Cause, channel: str) -> Callable[[Resubscribed], bool]:
    return lambda m: m.cause is cause and channel in m.shard_channels


async def test_a_slot_moved_in_place_is_followed_with_a_window(cluster):
    """An empty slot moved with CLUSTER SETSLOT ... NODE: the old owner unsubscribes the
    channel, the handle subscribes on the new owner within a second, and says so."""
    async with running(cluster) as run:
        source = next(iter(run.shards))
        channel = run.channel_on(source)
        dest = next(a for a in cluster.primaries() if a != source)
        await anyio.to_thread.run_sync(cluster.move_slot, cluster.slot_of(channel), dest)
        marker = await run.ledger.marker(moved(Cause.SLOT_MIGRATED, channel), "a slot-moved marker")
        assert marker.node == dest
        assert marker.up_at - marker.down_at < 5, marker
        assert channel in run.ps.subscriptions()[dest]["confirmed"]["ssubscribe"]


async def test_a_slot_with_keys_moved_with_migrate_is_followed(cluster):
    async with running(cluster) as run:
        source = list(run.shards)[1]
        channel = run.channel_on(source)
        slot = cluster.slot_of(channel)
        with cluster.node(source).admin() as r:
            for i in range(50):
                r.set(f"{{{channel}}}:{i}", i)
        dest = next(a for a in cluster.primaries() if a != source)
        await anyio.to_thread.run_sync(cluster.move_slot, slot, dest)
        await run.ledger.marker(moved(Cause.SLOT_MIGRATED, channel), "a slot-moved marker")
        assert await run.sup.client.get(f"{{{channel}}}:7") == b"7"


async def test_a_manual_failover_is_followed(cluster):
    async with running(cluster) as run:
        primary = list(run.shards)[2]
        channel = run.channel_on(primary)
        promoted = await anyio.to_thread.run_sync(cluster.failover, primary)
        marker = await run.ledger.marker(moved(Cause.FAILOVER, channel), "a failover marker")
        assert marker.node == promoted
    await anyio.to_thread.run_sync(cluster.wait_ok)


async def test_a_killed_primary_is_followed_to_its_promoted_replica(cluster):
    async with running(cluster) as run:
        primary = next(iter(run.shards))
        channel = run.channel_on(primary)
        cluster.node(primary).kill()
        try:
            await run.ledger.marker(moved(Cause.FAILOVER, channel), "a failover marker", bound=30)
        finally:
            cluster.node(primary).start()
    await anyio.to_thread.run_sync(cluster.wait_ok)
