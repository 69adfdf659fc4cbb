"""Pub/sub on a Cluster through slot moves, failovers and kills: ``supervisor`` against
redis-py 8's ``ClusterPubSub``, both subscribed to the same shard channel in the same run.

Scenarios (a fresh 3x2 cluster of ``supervisor.testing``):

- migrate: the channel's slot moved in place (IMPORTING, MIGRATING, ``SETSLOT NODE``
  on the new owner, the old one, the rest); the signal is the old owner's
  ``SETSLOT NODE`` (it unsubscribes the channel).
- failover: ``CLUSTER FAILOVER`` on the owner's replica; the signal is the replica
  saying it is the master.
- kill: SIGKILL of the owner; the signal is its replica saying it is the master.
- subscribe: 10,000 shard channels over 3 primaries, until every one is confirmed.

A publisher (a plain ``RedisCluster``, which has its own recovery after a failover)
sends one numbered message every ~2 ms with ``SPUBLISH``. For each client: messages
published, delivered, missed outside a reported window (redis-py reports none, so
every miss counts), and seconds from the signal to the first message published after
it and delivered; for the supervisor also when its ``Resubscribed`` marker confirmed
the channel on the new owner, after the signal (migrate) or after the health round
that saw the failover (its ``TopologyChanged``).

    python bench/cluster_pubsub.py                 # every scenario
    python bench/cluster_pubsub.py migrate kill    # some of them
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import Callable
from pathlib import Path

from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from supervisor import ClusterSupervisor, Resubscribed, SupervisorConfig, TopologyChanged
from supervisor.testing import ClusterSetup

CHANNEL = "bench-channel"
AFTER = 4.0
"""Seconds the publisher goes on after the signal."""


class Tally:
    def __init__(self) -> None:
        self.got: dict[str, float] = {}
        self.windows: list[tuple[float, float]] = []
        self.confirmed_at: list[float] = []
        self.errors = 0

    def first_after(self, sent: dict[str, tuple[float, float]], signal: float) -> float | None:
        times = [self.got[p] for p, (t0, _) in sent.items() if t0 >= signal and p in self.got]
        return min(times) - signal if times else None

    def missed(self, sent: dict[str, tuple[float, float]]) -> int:
        return sum(
            1
            for p, (t0, t1) in sent.items()
            if p not in self.got and not any(t0 <= up and t1 >= down for down, up in self.windows)
        )


async def _rounds(sup: ClusterSupervisor, seen: list[float]) -> None:
    async with sup.subscribe() as events:
        async for event in events:
            if isinstance(event, TopologyChanged):
                seen.append(time.time())


async def _ours(sup: ClusterSupervisor, tally: Tally, ready: asyncio.Event) -> None:
    async with sup.pubsub() as ps:
        await ps.ssubscribe(CHANNEL)
        ready.set()
        async for item in ps:
            if isinstance(item, Resubscribed):
                tally.windows.append((item.down_at, item.up_at))
                tally.confirmed_at.append(item.up_at)
            else:
                tally.got[item.data.decode()] = time.time()


async def _theirs(seed: str, tally: Tally, ready: asyncio.Event) -> None:
    host, port = seed.rsplit(":", 1)
    client = RedisCluster(host=host, port=int(port))
    ps = client.pubsub()
    try:
        await ps.ssubscribe(CHANNEL)
        ready.set()
        while True:
            try:
                msg = await ps.get_sharded_message(ignore_subscribe_messages=True, timeout=0.05)
            except Exception:
                tally.errors += 1
                await asyncio.sleep(0.05)
                continue
            if msg is not None and msg["type"] == "smessage":
                tally.got[msg["data"].decode()] = time.time()
    finally:
        with contextlib.suppress(Exception):
            await ps.aclose()
        await client.aclose()


async def _publish(
    client: RedisCluster, sent: dict[str, tuple[float, float]], stop: asyncio.Event
) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        t0 = time.time()
        try:
            await client.spublish(CHANNEL, str(n))
            sent[str(n)] = (t0, time.time())
        except Exception:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.002)


def _until_master(cluster: ClusterSetup, address: str, bound: float = 30) -> None:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception), cluster.node(address).admin() as r:
            if r.execute_command("ROLE")[0] == "master":
                return
        time.sleep(0.005)
    raise RuntimeError(f"{address} was not promoted within {bound} s")


def _fault(name: str, cluster: ClusterSetup) -> Callable[[], float]:
    owner = cluster.primary_of(CHANNEL)

    def migrate() -> float:
        dest = next(a for a in cluster.primaries() if a != owner)
        cluster.move_slot(key_slot(CHANNEL.encode()), dest)
        return time.time()

    def failover() -> float:
        cluster.failover(owner)
        return time.time()

    def kill() -> float:
        replica = cluster.replica_of(owner)
        cluster.node(owner).kill()
        _until_master(cluster, replica)
        return time.time()

    return {"migrate": migrate, "failover": failover, "kill": kill}[name]


async def scenario(name: str) -> list[str]:
    cluster = ClusterSetup()
    try:
        config = SupervisorConfig(
            cluster_nodes=tuple(cluster.seeds),
            health_check_interval=0.5,
            health_check_timeout=0.5,
            command_deadline=20,
        )
        ours, theirs, sent = Tally(), Tally(), {}
        publisher = RedisCluster(host="127.0.0.1", port=cluster.nodes[0].port)
        async with ClusterSupervisor(config) as sup:
            r1, r2, stop = asyncio.Event(), asyncio.Event(), asyncio.Event()
            rounds: list[float] = []
            tasks = [
                asyncio.create_task(_rounds(sup, rounds)),
                asyncio.create_task(_ours(sup, ours, r1)),
                asyncio.create_task(_theirs(cluster.seeds[1], theirs, r2)),
            ]
            await asyncio.wait_for(asyncio.gather(r1.wait(), r2.wait()), 30)
            pub = asyncio.create_task(_publish(publisher, sent, stop))
            await asyncio.sleep(1)
            signal = await asyncio.to_thread(_fault(name, cluster))
            await asyncio.sleep(AFTER)
            stop.set()
            await pub
            await asyncio.sleep(1)  # the last messages cross the cluster bus
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await publisher.aclose()
        rows = []
        seen = min((t for t in rounds if t >= signal - 1), default=None)
        for who, tally in (("supervisor", ours), ("redis-py ClusterPubSub", theirs)):
            back = tally.first_after(sent, signal)
            after_round = ""
            if who == "supervisor" and tally.confirmed_at:
                since = seen if seen is not None and name != "migrate" else signal
                back_at = max(tally.confirmed_at) - since
                what = "the signal" if name == "migrate" else "the round that saw it"
                when = "after" if back_at >= 0 else "before"
                after_round = f"; subscribed again {abs(back_at):.3f} s {when} {what}"
            rows.append(
                f"| {name} | {who} | {len(sent)} | {sum(p in tally.got for p in sent)} | "
                f"{tally.missed(sent)} | {len(tally.windows)} | "
                f"{'never' if back is None else f'{back:.3f} s'}{after_round} |"
            )
        return rows
    finally:
        cluster.close()


async def subscribe_many(count: int = 10_000) -> list[str]:
    cluster = ClusterSetup()
    names = [f"many-{i}" for i in range(count)]
    try:
        config = SupervisorConfig(cluster_nodes=tuple(cluster.seeds), command_deadline=60)
        async with ClusterSupervisor(config) as sup, sup.pubsub() as ps:
            started = time.perf_counter()
            await ps.ssubscribe(*names)
            ours = time.perf_counter() - started
        client = RedisCluster(host="127.0.0.1", port=cluster.nodes[0].port)
        ps2 = client.pubsub()
        started = time.perf_counter()
        await ps2.ssubscribe(*names)
        confirmed = 0
        deadline = time.monotonic() + 120
        while confirmed < count and time.monotonic() < deadline:
            msg = await ps2.get_sharded_message(timeout=0.1)
            if msg is not None and msg["type"] == "ssubscribe":
                confirmed += 1
        theirs = time.perf_counter() - started
        await ps2.aclose()
        await client.aclose()
        return [
            f"| subscribe {count:,} shard channels | supervisor {ours:.3f} s | redis-py "
            f"{theirs:.3f} s ({confirmed:,} confirmed) | ratio {ours / theirs:.2f}x |"
        ]
    finally:
        cluster.close()


async def main(chosen: list[str]) -> None:
    print(
        "| scenario | client | published | delivered | missed outside a window | windows "
        "| first delivery after the signal |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in ("migrate", "failover", "kill"):
        if name in chosen:
            for row in await scenario(name):
                print(row, flush=True)
    if "subscribe" in chosen:
        print()
        for row in await subscribe_many():
            print(row, flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "scenarios", nargs="*", default=["migrate", "failover", "kill", "subscribe"]
    )
    asyncio.run(main(parser.parse_args().scenarios))
