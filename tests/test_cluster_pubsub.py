"""Pub/sub on a real cluster through slot moves, failovers, kills and new nodes: every
message published outside a reported window is delivered once (tests/helpers/ledger.py)."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import pytest
from redis.crc import key_slot
from redis.exceptions import NoPermissionError

from supervisor import Cause, ClusterSupervisor, ConnectionState, Resubscribed, SupervisorConfig
from supervisor.targets.cluster_pubsub import ClusterPubSub
from supervisor.testing import ClusterSetup
from tests.helpers.ledger import Ledger
from tests.helpers.loops import bounded, poll

KEYSPACE = "__keyspace@0__:ks:*"


NOTIFY = ("--notify-keyspace-events", "K$")
"""Restarted and added nodes keep it: a CONFIG SET would be gone after a restart."""


@pytest.fixture(scope="module")
def cluster():
    """For the tests that move slots, fail over by hand, add and remove nodes: a node
    timeout long enough that a busy machine (three suites side by side) never makes
    the cluster fail a node over on its own in the middle of another test."""
    setup = ClusterSetup(*NOTIFY, node_timeout_ms=5000)
    try:
        yield setup
    finally:
        setup.close()


@pytest.fixture
def failing():
    """A cluster of the test's own, for a kill, a stop or a node added: its failover (1 s
    node timeout), the restarted node's new role and the added node touch no other test."""
    setup = ClusterSetup(*NOTIFY)
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


def owners(cluster: ClusterSetup) -> list[str]:
    """The owner of every slot, as the first node says."""
    table = [""] * 16384
    with cluster.nodes[0].admin() as r:
        for start, end, primary, *_ in r.execute_command("CLUSTER", "SLOTS"):
            table[start : end + 1] = [f"{primary[0]}:{primary[1]}"] * (end - start + 1)
    return table


def shard_channels(cluster: ClusterSetup, per_primary: int = 2) -> dict[str, list[str]]:
    """Channel names, ``per_primary`` on each primary that serves slots."""
    table = owners(cluster)
    out: dict[str, list[str]] = {a: [] for a in set(table)}
    for i in bounded("picking shard channels", count=1_000_000):
        name = f"shard-{i}"
        group = out[table[key_slot(name.encode())]]
        if len(group) < per_primary:
            group.append(name)
        if all(len(v) >= per_primary for v in out.values()):
            return out
    raise AssertionError("unreachable")


@dataclass
class Run:
    sup: ClusterSupervisor
    ps: ClusterPubSub
    ledger: Ledger
    shards: dict[str, list[str]]
    classic: str
    """A classic channel of this run alone: PUBLISH crosses the cluster bus, so an
    earlier test's last messages may still reach a node after it ended."""
    sent: dict[str, int] = field(default_factory=dict)

    def channel_on(self, address: str) -> str:
        return self.shards[address][0]

    async def flowing(self, what: str) -> None:
        """Wait until a message published from now on arrives on every channel."""
        await poll(lambda: self.ps.in_sync, f"{what}: the handle in sync", self.ps.subscriptions)
        marks = dict(self.sent)
        for channel, n in marks.items():
            if channel == "keyspace":
                key = f"__keyspace@0__:ks:{n + 2}"
                await self.ledger.delivered(key, "set", f"{what}: keyspace notifications")
            else:
                await self.ledger.delivered(channel, str(n + 2), f"{what}: {channel} delivers")


@asynccontextmanager
async def running(cluster: ClusterSetup, *, keyspace: bool = True) -> AsyncIterator[Run]:
    """A supervisor, a handle subscribed to shard channels on every primary, a classic
    channel and a keyspace pattern, with a publisher per channel; checked at the end."""
    shards = shard_channels(cluster)
    async with ClusterSupervisor(_config(cluster)) as sup, sup.pubsub() as ps:
        await sup.wait_for(ConnectionState.READY, timeout=10)
        ledger = Ledger()
        run = Run(sup, ps, ledger, shards, f"classic-{uuid.uuid4().hex[:8]}")
        names = [n for group in shards.values() for n in group]
        await ps.ssubscribe(*names)
        await ps.subscribe(run.classic)
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

        async def keyspace_publisher() -> None:
            for n in bounded("keyspace publisher", seconds=120):
                if stop.is_set():
                    return
                run.sent["keyspace"] = n
                await ledger.publish(set_key, f"__keyspace@0__:ks:{n}", "set")

        async with anyio.create_task_group() as tg:
            tg.start_soon(ledger.consume, ps)
            async with anyio.create_task_group() as publishers:
                for name in names:
                    publishers.start_soon(publisher, name, sup.client.spublish)
                publishers.start_soon(publisher, run.classic, sup.client.publish)
                if keyspace:
                    publishers.start_soon(keyspace_publisher)
                await run.flowing("before the fault")
                yield run
                await run.flowing("after the fault")
                stop.set()
            await ledger.drained()
            await ps.aclose()
        counts = ledger.check()
        assert counts["delivered"] > 0, counts
    # leaving the supervisor closed every connection the handle opened, on every node
    await poll(
        lambda: not subscribers_left(cluster),
        "no pub/sub connection left",
        lambda: subscribers_left(cluster),
    )


def replicated(run: Run, cluster: ClusterSetup, index: int = 0) -> str:
    """A primary of the run's channels that has a live replica (a failover needs one;
    earlier tests of the module move slots and kill nodes)."""
    covered = []
    for address in run.shards:
        try:
            cluster.replica_of(address)
        except LookupError:
            continue
        covered.append(address)
    assert covered, f"no primary with a live replica among {list(run.shards)}"
    return covered[index % len(covered)]


def replaced(cluster: ClusterSetup, address: str, bound: float = 30) -> None:
    """Until another node serves the slots of the primary at ``address`` (killed)."""
    replica = cluster.replica_of(address)
    for _ in bounded(f"{replica} promoted in place of {address}", count=3000, seconds=bound):
        if replica in cluster.primaries():
            return
        time.sleep(0.01)  # polls the replica's role: there is no event for it


def subscribers_left(cluster: ClusterSetup) -> dict[str, int]:
    """Pub/sub connections still open on each live node."""
    out = {}
    for node in cluster.nodes:
        if node._proc is None or node._proc.poll() is not None:
            continue
        with node.admin() as r:
            count = len(r.client_list(_type="pubsub"))
        if count:
            out[f"127.0.0.1:{node.port}"] = count
    return out


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
        primary = replicated(run, cluster, 2)
        channel = run.channel_on(primary)
        promoted = await anyio.to_thread.run_sync(cluster.failover, primary)
        marker = await run.ledger.marker(moved(Cause.FAILOVER, channel), "a failover marker")
        assert marker.node == promoted
    await anyio.to_thread.run_sync(cluster.wait_ok)


async def test_a_killed_primary_is_followed_to_its_promoted_replica(failing):
    cluster = failing
    async with running(cluster) as run:
        primary = replicated(run, cluster)
        channel = run.channel_on(primary)
        cluster.node(primary).kill()
        try:
            await run.ledger.marker(moved(Cause.FAILOVER, channel), "a failover marker", bound=30)
        finally:
            cluster.node(primary).start()
    await anyio.to_thread.run_sync(cluster.wait_ok)


async def test_the_node_of_the_classic_channels_killed_moves_them_with_a_window(failing):
    cluster = failing
    async with running(cluster) as run:
        holder = next(
            a
            for a, s in run.ps.subscriptions().items()
            if run.classic in s["confirmed"].get("subscribe", ())
        )
        cluster.node(holder).kill()
        try:
            marker = await run.ledger.marker(
                lambda m: run.classic in m.channels, "a marker for the classic channel", bound=30
            )
            assert marker.node != holder
            # its replica takes over before it comes back (else a failover may land later,
            # in another test)
            await anyio.to_thread.run_sync(replaced, cluster, holder)
        finally:
            cluster.node(holder).start()
    await anyio.to_thread.run_sync(cluster.wait_ok)


async def test_ten_thousand_shard_channels_resubscribe_after_a_kill(failing):
    cluster = failing
    names = [f"many-{i}" for i in range(10_000)]
    table = owners(cluster)
    victim = table[key_slot(names[0].encode())]
    on_victim = {n for n in names if table[key_slot(n.encode())] == victim}
    async with ClusterSupervisor(_config(cluster)) as sup, sup.pubsub() as ps:
        await sup.wait_for(ConnectionState.READY, timeout=10)
        ledger = Ledger()
        await ps.ssubscribe(*names)
        async with anyio.create_task_group() as tg:
            tg.start_soon(ledger.consume, ps)
            cluster.node(victim).kill()
            try:
                await poll(
                    lambda: on_victim <= {n for m in ledger.markers for n in m.shard_channels},
                    f"markers for the {len(on_victim):,} channels of the killed primary",
                    lambda: sum(len(m.shard_channels) for m in ledger.markers),
                    bound=30,
                )
                await poll(lambda: ps.in_sync, "the handle in sync", bound=10)
                promoted = {m.node for m in ledger.markers}
                assert len(promoted) == 1 and victim not in promoted, promoted
                for name in sorted(on_victim)[:50]:
                    await ledger.publish(sup.client.spublish, name, "after")
                    await ledger.delivered(name, "after", f"a message on {name} after the kill")
                assert all(m.cause is Cause.FAILOVER for m in ledger.markers), ledger.markers
            finally:
                cluster.node(victim).start()
            await ps.aclose()
        ledger.check()
    await anyio.to_thread.run_sync(cluster.wait_ok)


async def test_nodes_added_and_removed_are_followed(failing):
    """An empty primary that joins gets the keyspace patterns and leaves without a trace;
    a primary that joins and gets a slot carries its shard channel and its notifications."""
    cluster = failing
    async with running(cluster) as run:

        def keyspace_on(address: str) -> bool:
            confirmed = run.ps.subscriptions().get(address, {}).get("confirmed", {})
            return KEYSPACE in confirmed.get("psubscribe", ())

        empty = await anyio.to_thread.run_sync(cluster.add_node)
        await poll(lambda: keyspace_on(empty), f"the keyspace pattern on {empty}")
        await anyio.to_thread.run_sync(cluster.remove_node, empty)
        await poll(
            lambda: empty not in run.ps.subscriptions(),
            f"no name routed to {empty} after it left",
            run.ps.subscriptions,
        )
        added = await anyio.to_thread.run_sync(cluster.add_node)
        await poll(lambda: keyspace_on(added), f"the keyspace pattern on {added}")
        channel = run.channel_on(next(iter(run.shards)))
        await anyio.to_thread.run_sync(cluster.move_slot, cluster.slot_of(channel), added)
        marker = await run.ledger.marker(moved(Cause.SLOT_MIGRATED, channel), "a marker")
        assert marker.node == added
        key = f"ks:{{{channel}}}"
        await run.sup.client.set(key, 1)
        await run.ledger.delivered(
            f"__keyspace@0__:{key}", "set", "a notification from the new node"
        )


async def test_unsubscribes_across_slots_stop_delivery_and_leave_nothing_behind(cluster):
    """SUNSUBSCRIBE of channels in many slots goes one command per slot (one command
    across slots is CROSSSLOT); afterwards the nodes count no receiver for them."""
    shards = shard_channels(cluster, per_primary=4)
    names = [n for group in shards.values() for n in group]
    async with ClusterSupervisor(_config(cluster)) as sup, sup.pubsub() as ps:
        await sup.wait_for(ConnectionState.READY, timeout=10)
        await ps.ssubscribe(*names)
        await ps.subscribe("plain-a", "plain-b")
        assert await sup.client.spublish(names[0], "x") == 1
        gone, kept = names[: len(names) // 2 + 1], names[len(names) // 2 + 1 :]
        await ps.sunsubscribe(*gone)
        await ps.unsubscribe("plain-a")
        await poll(lambda: ps.in_sync, "the handle in sync after unsubscribing", ps.subscriptions)
        assert ps.shard_channels == set(kept) and ps.channels == {"plain-b"}
        for name in gone:
            receivers = await sup.client.spublish(name, "x")
            assert receivers == 0, f"{name} still has {receivers} receiver(s)"
        for name in kept:
            assert await sup.client.spublish(name, "x") == 1, name
        confirmed = {
            n for s in ps.subscriptions().values() for n in s["confirmed"].get("ssubscribe", ())
        }
        assert confirmed == set(kept)


async def test_a_refused_channel_is_an_error_for_that_call_and_the_rest_deliver(cluster):
    """An ACL user that may read only some channels (ACLs are per node: set on each)."""
    for node in cluster.nodes:
        if node._proc is not None and node._proc.poll() is None:
            with node.admin() as r:
                r.execute_command(
                    "ACL", "SETUSER", "reader", "on", ">pw", "~*", "resetchannels", "&ok-*", "+@all"
                )
    config = dataclasses.replace(_config(cluster), url="redis://reader:pw@127.0.0.1:6379/0")
    async with ClusterSupervisor(config) as sup, sup.pubsub() as ps:
        await sup.wait_for(ConnectionState.READY, timeout=10)
        await ps.ssubscribe("ok-1")
        with pytest.raises(NoPermissionError):
            await ps.ssubscribe("denied-1")
        assert ps.shard_channels == {"ok-1"}
        ledger = Ledger()
        async with anyio.create_task_group() as tg:
            tg.start_soon(ledger.consume, ps)
            await ledger.publish(sup.client.spublish, "ok-1", "hello")
            await ledger.delivered("ok-1", "hello", "a message on the allowed channel")
            await ps.aclose()
        ledger.check()


async def test_a_stopped_primary_is_noticed_by_its_ping_and_followed(failing):
    cluster = failing
    """SIGSTOP: the connection stays open and silent; the PING that gets no PONG within
    health_check_timeout moves the names, and the replica's promotion takes them."""
    async with running(cluster) as run:
        primary = replicated(run, cluster, 1)
        channel = run.channel_on(primary)
        cluster.node(primary).stop()
        try:
            marker = await run.ledger.marker(
                lambda m: channel in m.shard_channels, "a marker after the stop", bound=30
            )
            assert marker.node != primary and marker.cause is Cause.FAILOVER, marker
        finally:
            cluster.node(primary).cont()
    await anyio.to_thread.run_sync(cluster.wait_ok)
