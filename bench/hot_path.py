"""GET throughput through ``sup.client`` against a plain ``redis.asyncio.Redis``.

Three clients run in the same process against the same server, in interleaved
rounds (raw, pooled, auto-pipelined, then the other way round), so drift on
the machine hits all alike: raw redis.asyncio, ``sup.client`` on its pool
(target >= 0.97 x raw) and ``sup.client`` with ``auto_pipeline = true``
(targets: >= 2.5 x raw at 50 tasks, >= 0.95 x at 1 task, p99 latency at 50
tasks no worse than raw's). valkey-glide runs too when it is installed.
Prints, with 1 and with 50 concurrent tasks: ops/s of each and its ratio to raw
(the median of the per-round ratios), p99 latency, and client CPU per GET (the
part of the wall clock that is the client's, without the noise of a
redis-server sharing the machine's cores).

    python bench/hot_path.py                  # starts its own redis-server
    python bench/hot_path.py --url redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis.asyncio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from supervisor import ConnectionState, Supervisor, SupervisorConfig
from supervisor.testing import make_server


@contextmanager
def own_server() -> Iterator[str]:
    server = make_server()
    try:
        yield server.url
    finally:
        server.close()


Run = tuple[float, float, float]
"""ops/s on the wall clock, p99 latency in ms, client CPU microseconds per op."""


async def round_ops(get: Callable[[str], Awaitable[Any]], tasks: int, ops: int) -> Run:
    per_task = ops // tasks
    latencies: list[float] = []
    clock = time.perf_counter

    async def worker() -> None:
        for _ in range(per_task):
            began = clock()
            await get("bench:key")
            latencies.append(clock() - began)

    started, cpu = clock(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    done = per_task * tasks
    p99 = statistics.quantiles(latencies, n=100)[98] * 1000
    return done / (clock() - started), p99, (time.process_time() - cpu) / done * 1e6


Row = tuple[int, str, float, float, float, float]
"""tasks, client, ops/s, ratio to raw, p99 ms, CPU us/op (medians over the rounds)."""


async def glide_client(url: str) -> Any:
    """valkey-glide, when installed (optional: ``pip install valkey-glide``)."""
    try:
        from glide import GlideClient, GlideClientConfiguration, NodeAddress
    except ImportError:
        return None
    address = url.split("//", 1)[1].split("/", 1)[0]
    host, port = address.rsplit(":", 1)
    config = GlideClientConfiguration([NodeAddress(host, int(port))])
    return await GlideClient.create(config)


async def glide_cluster_client(seeds: tuple[str, ...]) -> Any:
    """valkey-glide's cluster client, when installed."""
    try:
        from glide import GlideClusterClient, GlideClusterClientConfiguration, NodeAddress
    except ImportError:
        return None
    nodes = [NodeAddress(h, int(p)) for h, p in (s.rsplit(":", 1) for s in seeds)]
    return await GlideClusterClient.create(GlideClusterClientConfiguration(nodes))


async def measure(url: str, rounds: int, ops: int, protocol: int | None = None) -> list[Row]:
    """``protocol``: unset, redis-py 8's default (RESP3 on the wire, its RESP2-shaped
    replies); 2 or 3 given to every client alike."""
    options = {} if protocol is None else {"protocol": protocol}
    raw = redis.asyncio.Redis.from_url(url, **options)
    pooled = SupervisorConfig(url=url, redis_options=options)
    piped = SupervisorConfig(url=url, auto_pipeline=True, redis_options=options)
    async with Supervisor(pooled) as sup, Supervisor(piped) as auto:
        await sup.wait_for(ConnectionState.READY, timeout=10)
        await auto.wait_for(ConnectionState.READY, timeout=10)
        await raw.set("bench:key", "x" * 64)
        clients: dict[str, Callable[[str], Awaitable[Any]]] = {
            "raw redis.asyncio": raw.get,
            "sup.client pooled": sup.client.get,
            "sup.client auto_pipeline": auto.client.get,
        }
        glide = await glide_client(url)
        if glide is not None:
            clients["valkey-glide"] = glide.get
        results = await _rounds(clients, "raw redis.asyncio", rounds, ops)
        if glide is not None:
            await glide.close()
    await raw.aclose()
    return results


async def measure_cluster(rounds: int, ops: int) -> list[Row]:
    """A 3-primary, 3-replica cluster: raw ``redis.asyncio.RedisCluster``,
    ``ClusterSupervisor`` pooled and auto-pipelined (and valkey-glide's cluster client
    when installed), GETs over keys of every shard."""
    import itertools

    from redis.asyncio.cluster import ClusterNode, RedisCluster

    from supervisor import ClusterSupervisor
    from supervisor.testing import ClusterSetup

    setup = ClusterSetup()
    try:
        seeds = tuple(setup.seeds)
        host, port = seeds[0].rsplit(":", 1)
        raw = RedisCluster(startup_nodes=[ClusterNode(host, int(port))])
        keys = [f"bench:{i}" for i in range(64)]
        for key in keys:
            await raw.set(key, "x" * 64)
        pooled = SupervisorConfig(cluster_nodes=seeds)
        piped = SupervisorConfig(cluster_nodes=seeds, auto_pipeline=True)
        async with ClusterSupervisor(pooled) as sup, ClusterSupervisor(piped) as auto:
            await sup.wait_for(ConnectionState.READY, timeout=10)
            await auto.wait_for(ConnectionState.READY, timeout=10)

            def spread(get: Callable[[str], Awaitable[Any]]) -> Callable[[str], Awaitable[Any]]:
                cycle = itertools.cycle(keys)
                return lambda _: get(next(cycle))

            clients = {
                "raw RedisCluster": spread(raw.get),
                "ClusterSupervisor pooled": spread(sup.client.get),
                "ClusterSupervisor auto_pipeline": spread(auto.client.get),
            }
            glide = await glide_cluster_client(seeds)
            if glide is not None:
                clients["valkey-glide cluster"] = spread(glide.get)
            results = await _rounds(clients, "raw RedisCluster", rounds, ops)
            if glide is not None:
                await glide.close()
        await raw.aclose()
        return results
    finally:
        setup.close()


async def _rounds(
    clients: dict[str, Callable[[str], Awaitable[Any]]], base_name: str, rounds: int, ops: int
) -> list[Row]:
    results: list[Row] = []
    for tasks in (1, 50):
        for get in clients.values():  # warm up every pool
            await round_ops(get, tasks, ops // 4)
        runs: dict[str, list[Run]] = {name: [] for name in clients}
        order = list(clients)
        for i in range(rounds):
            for name in order if i % 2 == 0 else reversed(order):
                runs[name].append(await round_ops(clients[name], tasks, ops))
        base = runs[base_name]
        for name, own in runs.items():
            # each round's runs sit side by side in time: their ratio cancels drift
            ratio = statistics.median(o[0] / r[0] for o, r in zip(own, base, strict=True))
            results.append(
                (
                    tasks,
                    name,
                    statistics.median(o[0] for o in own),
                    ratio,
                    statistics.median(o[1] for o in own),
                    statistics.median(o[2] for o in own),
                )
            )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="Redis to use (default: start a redis-server)")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--ops", type=int, default=5000, help="GETs per round")
    parser.add_argument(
        "--min-ratio", type=float, default=0.0, help="exit 1 when a ratio is below this"
    )
    parser.add_argument("--protocol", type=int, choices=(2, 3), help="RESP version of every client")
    parser.add_argument("--cluster", action="store_true", help="a 3x2 cluster it starts")
    args = parser.parse_args(argv)
    if args.cluster:
        results = asyncio.run(measure_cluster(args.rounds, args.ops))
    elif args.url:
        results = asyncio.run(measure(args.url, args.rounds, args.ops, args.protocol))
    else:
        with own_server() as url:
            results = asyncio.run(measure(url, args.rounds, args.ops, args.protocol))
    print(f"{'tasks':>5}  {'client':<31} {'ops/s':>8} {'x raw':>6} {'p99 ms':>7} {'cpu us/op':>9}")
    for tasks, name, rate, ratio, p99, cpu in results:
        print(f"{tasks:>5}  {name:<31} {rate:>8.0f} {ratio:>6.2f} {p99:>7.2f} {cpu:>9.1f}")
    return 1 if any(r[3] < args.min_ratio for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
