"""GET through the client-side cache against raw redis.asyncio and uncached ``sup.client``.

Three clients in one process, one server, interleaved rounds so that drift hits all
alike: raw ``redis.asyncio.Redis``, ``sup.client`` without a cache and ``sup.client``
with ``client_cache = true``. Two workloads, at 1 and at 50 concurrent tasks:

- hits: GETs over a hot set of 1,000 keys, read once before the rounds (targets: the
  cached client >= 20 x raw at 1 task);
- misses: every GET of a key not read before (targets: the cached client's misses
  cost <= 5 % over uncached ``sup.client``).

Then the hit ratio of a skewed read load (Zipf-like over 10,000 keys, a write for
every 100 reads), and memory per entry: ``tracemalloc`` over 10,000 entries of
100-byte values, beside the cache's own estimate (``statistics().cache.bytes``).

    python bench/cache.py                  # starts its own redis-server
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis.asyncio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from supervisor import ConnectionState, Supervisor, SupervisorConfig
from supervisor.testing import make_server

Get = Callable[[str], Awaitable[Any]]
HOT = [f"hot:{i}" for i in range(1000)]


async def ops_per_second(get: Get, keys: list[str], tasks: int) -> float:
    """Every key once, split among ``tasks`` tasks; each yields every 50 reads, as an
    application between requests does (and so the cache's proof keeps running)."""
    shares = [keys[i::tasks] for i in range(tasks)]

    async def worker(share: list[str]) -> None:
        for i, key in enumerate(share):
            await get(key)
            if i % 50 == 49:
                await asyncio.sleep(0)

    began = time.perf_counter()
    await asyncio.gather(*(worker(s) for s in shares))
    return len(keys) / (time.perf_counter() - began)


async def proven(sup: Supervisor) -> None:
    for _ in range(500):
        stats = sup.statistics().cache
        if stats is not None and stats.staleness is not None and stats.staleness < 0.05:
            return
        await asyncio.sleep(0.01)
    raise RuntimeError("the cache was never proven fresh")


async def compare(url: str, rounds: int, ops: int) -> dict[str, dict[int, dict[str, float]]]:
    raw = redis.asyncio.Redis.from_url(url)
    await raw.mset({k: "v" * 100 for k in HOT})
    base = dict(url=url, socket_timeout=5.0)
    results: dict[str, dict[int, dict[str, float]]] = {"hits": {}, "misses": {}}
    async with (
        Supervisor(SupervisorConfig(**base)) as plain,
        Supervisor(SupervisorConfig(**base, client_cache=True)) as cached,
    ):
        await plain.wait_for(ConnectionState.READY, timeout=10)
        await cached.wait_for(ConnectionState.READY, timeout=10)
        await proven(cached)
        for key in HOT:
            await cached.client.get(key)
        clients: dict[str, Get] = {
            "raw": raw.get,
            "sup": plain.client.get,
            "cached": cached.client.get,
        }
        serial = 0
        for tasks in (1, 50):
            for workload in ("hits", "misses"):
                per: dict[str, list[float]] = {name: [] for name in clients}
                for r in range(rounds):
                    order = list(clients) if r % 2 == 0 else list(reversed(clients))
                    for name in order:
                        if workload == "hits":
                            keys = [HOT[i % len(HOT)] for i in range(ops)]
                        else:
                            serial += 1
                            keys = [f"miss:{serial}:{i}" for i in range(ops)]
                        await proven(cached)
                        per[name].append(await ops_per_second(clients[name], keys, tasks))
                results[workload][tasks] = {n: statistics.median(v) for n, v in per.items()}
        stats = cached.statistics().cache
        assert stats is not None
        results["counters"] = {0: {"hits": stats.hits, "misses": stats.misses}}
    await raw.aclose()
    return results


async def hit_ratio(url: str, reads: int) -> float:
    rng = random.Random(7)
    keys = [f"zipf:{i}" for i in range(10_000)]
    weights = [1 / (i + 1) for i in range(len(keys))]
    async with Supervisor(SupervisorConfig(url=url, client_cache=True)) as sup:
        await proven(sup)
        before = sup.statistics().cache
        assert before is not None
        picks = rng.choices(keys, weights, k=reads)
        for i, key in enumerate(picks):
            if i % 100 == 99:
                await sup.client.set(key, i)
            else:
                await sup.client.get(key)
            if i % 50 == 49:
                await asyncio.sleep(0)
        after = sup.statistics().cache
        assert after is not None
        hits, misses = after.hits - before.hits, after.misses - before.misses
        return hits / (hits + misses)


async def memory_per_entry(url: str, entries: int) -> tuple[float, float]:
    raw = redis.asyncio.Redis.from_url(url)
    keys = [f"mem:{i}" for i in range(entries)]
    await raw.mset({k: "x" * 100 for k in keys})
    await raw.aclose()
    async with Supervisor(SupervisorConfig(url=url, client_cache=True)) as sup:
        await proven(sup)
        tracemalloc.start()
        start = tracemalloc.get_traced_memory()[0]
        for i in range(0, entries, 100):
            await sup.client.mget(keys[i : i + 100])
        traced = tracemalloc.get_traced_memory()[0] - start
        tracemalloc.stop()
        stats = sup.statistics().cache
        assert stats is not None and stats.entries == entries, stats
        return traced / entries, stats.bytes / entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="Redis to use (default: start a redis-server)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--ops", type=int, default=4000, help="GETs per round")
    args = parser.parse_args(argv)
    server = None if args.url else make_server()
    url = args.url or server.url  # type: ignore[union-attr]
    try:
        results = asyncio.run(compare(url, args.rounds, args.ops))
        ratio = asyncio.run(hit_ratio(url, 50_000))
        traced, estimated = asyncio.run(memory_per_entry(url, 10_000))
    finally:
        if server is not None:
            server.close()
    ok = True
    for workload in ("hits", "misses"):
        for tasks in (1, 50):
            row = results[workload][tasks]
            line = "  ".join(f"{n} {v:>9,.0f}/s" for n, v in row.items())
            vs_raw = row["cached"] / row["raw"]
            vs_sup = row["cached"] / row["sup"]
            print(
                f"{workload:6} {tasks:>2} tasks: {line}  cached/raw {vs_raw:.2f}x  "
                f"cached/sup {vs_sup:.2f}x"
            )
            if workload == "hits" and tasks == 1 and vs_raw < 20:
                ok = False
            if workload == "misses" and vs_sup < 0.95:
                ok = False
    print(f"hit ratio, skewed reads over 10,000 keys with 1 % writes: {ratio:.1%}")
    print(
        f"memory per entry (100-byte values): traced {traced:,.0f} B, estimated {estimated:,.0f} B"
    )
    missed = "TARGETS MISSED (hits >= 20x raw at 1 task, misses >= 0.95x sup)"
    print("targets met" if ok else missed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
