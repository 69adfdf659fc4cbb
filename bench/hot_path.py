"""GET throughput through ``sup.client`` against a plain ``redis.asyncio.Redis``.

Both clients run in the same process against the same server, in interleaved
rounds (raw, supervised, raw, ...), so drift on the machine hits both alike.
Prints, with 1 and with 50 concurrent tasks: ops/s for each and the ratio
supervised / raw (target >= 0.97), and the client CPU time per GET of each
(raw / supervised: the part of the wall-clock ratio that is ours, without the
noise of a redis-server sharing the machine's cores).

    python bench/hot_path.py                  # starts its own redis-server
    python bench/hot_path.py --url redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


async def round_ops(client: redis.asyncio.Redis, tasks: int, ops: int) -> tuple[float, float]:
    """(ops/s on the wall clock, client CPU microseconds per op) for one round."""
    per_task = ops // tasks

    async def worker() -> None:
        for _ in range(per_task):
            await client.get("bench:key")

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    done = per_task * tasks
    return done / (time.perf_counter() - started), (time.process_time() - cpu) / done * 1e6


Row = tuple[int, float, float, float, float, float, float]


async def measure(url: str, rounds: int, ops: int) -> list[Row]:
    raw = redis.asyncio.Redis.from_url(url)
    config = SupervisorConfig(url=url)
    results = []
    async with Supervisor(config) as sup:
        await sup.wait_for(ConnectionState.READY, timeout=10)
        await raw.set("bench:key", "x" * 64)
        for tasks in (1, 50):
            for client in (raw, sup.client):  # warm up both pools
                await round_ops(client, tasks, ops // 4)
            raw_runs: list[tuple[float, float]] = []
            sup_runs: list[tuple[float, float]] = []
            for i in range(rounds):
                pair = [(raw, raw_runs), (sup.client, sup_runs)]
                for client, runs in pair if i % 2 == 0 else reversed(pair):
                    runs.append(await round_ops(client, tasks, ops))
            # each round's two runs sit side by side in time: their ratio cancels drift
            ratio = statistics.median(s[0] / r[0] for s, r in zip(sup_runs, raw_runs, strict=True))
            raw_cpu = statistics.median(r[1] for r in raw_runs)
            sup_cpu = statistics.median(s[1] for s in sup_runs)
            results.append(
                (
                    tasks,
                    statistics.median(r[0] for r in raw_runs),
                    statistics.median(s[0] for s in sup_runs),
                    ratio,
                    raw_cpu,
                    sup_cpu,
                    raw_cpu / sup_cpu,
                )
            )
    await raw.aclose()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="Redis to use (default: start a redis-server)")
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--ops", type=int, default=5000, help="GETs per round")
    parser.add_argument(
        "--min-ratio", type=float, default=0.0, help="exit 1 when a ratio is below this"
    )
    args = parser.parse_args(argv)
    if args.url:
        results = asyncio.run(measure(args.url, args.rounds, args.ops))
    else:
        with own_server() as url:
            results = asyncio.run(measure(url, args.rounds, args.ops))
    print(
        f"{'tasks':>5} {'raw ops/s':>10} {'sup ops/s':>10} {'ratio':>6}  "
        f"{'raw cpu us/op':>13} {'sup cpu us/op':>13} {'cpu ratio':>9}"
    )
    for tasks, raw_rate, sup_rate, ratio, raw_cpu, sup_cpu, cpu_ratio in results:
        print(
            f"{tasks:>5} {raw_rate:>10.0f} {sup_rate:>10.0f} {ratio:>6.3f}  "
            f"{raw_cpu:>13.1f} {sup_cpu:>13.1f} {cpu_ratio:>9.3f}"
        )
    return 1 if any(r[3] < args.min_ratio for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
