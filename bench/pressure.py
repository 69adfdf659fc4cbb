"""Under pressure: ``sup.client`` against redis-py 8 in the same run, one table.

- burst: 200 tasks x 20 GETs on 10 connections, 1,000 x 10 on 100: seconds against
  redis-py's ``BlockingConnectionPool``, and commands that failed (the supervisor with
  ``command_deadline=1``); both with ``socket_timeout`` None (redis-py's default) and
  5 s (the supervisor's: redis-py then arms a timer around each read and write); the
  medians of 5 interleaved rounds.
- outage: nothing listens on the port for ``--outage`` seconds while 0, 100 and 1,000
  commands wait: CPU of this process (% of a core) over the outage, then ms from the
  server's readiness (its log) to the first command served.
- lane: the server is stopped and 30,000 SETs of 1 kB are sent at once: peak memory
  allocated (tracemalloc) on the pool path and with ``auto_pipeline``.
- maxclients: with ``auto_pipeline``, the shared connection is killed while the server
  is full: commands served of 20, and connections the server rejected per prober attempt.
- stall: SIGSTOP at 20 points spread across a health round (defaults: 1 s interval,
  0.5 s timeout): the worst and median seconds from the stop to UNHEALTHY.

    python bench/pressure.py                  # every scenario
    python bench/pressure.py burst stall      # some of them
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import itertools
import resource
import statistics
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis.asyncio
from redis.asyncio import BlockingConnectionPool

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recovery import ready_at, wait_ready  # bench/ is the script's folder

from supervisor import ConnectionState, Supervisor, SupervisorConfig, Unavailable
from supervisor.testing import BinaryServer

Row = tuple[str, str, str, str]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _crowd(get: Callable[[], Awaitable[Any]], tasks: int, ops: int) -> tuple[float, int]:
    failed = 0

    async def worker() -> None:
        nonlocal failed
        for _ in range(ops):
            try:
                await get()
            except Exception:
                failed += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    return time.perf_counter() - started, failed


async def burst(url: str, rounds: int = 5) -> list[Row]:
    """Each setting in ``rounds`` interleaved rounds (redis-py, then the supervisor, then
    the other way round), so drift on the machine hits both alike: the median of each
    side, and the median of the per-round ratios."""
    rows: list[Row] = []
    for (tasks, ops, connections), socket_timeout in itertools.product(
        ((200, 20, 10), (1000, 10, 100)), (None, 5.0)
    ):
        pool = BlockingConnectionPool.from_url(
            url, max_connections=connections, timeout=60, socket_timeout=socket_timeout
        )
        plain = redis.asyncio.Redis(connection_pool=pool)
        await plain.ping()
        config = SupervisorConfig(
            url=url,
            max_connections=connections,
            command_deadline=1,
            max_waiters=2000,
            socket_timeout=socket_timeout,
        )
        theirs: list[float] = []
        ours: list[float] = []
        failed = 0
        async with Supervisor(config) as sup:
            await sup.wait_for(ConnectionState.READY, timeout=10)
            sides: list[tuple[list[float], Callable[[], Awaitable[Any]]]] = [
                (theirs, functools.partial(plain.get, "k")),
                (ours, functools.partial(sup.client.get, "k")),
            ]
            for i in range(rounds):
                for times, get in sides if i % 2 == 0 else reversed(sides):
                    took, lost = await _crowd(get, tasks, ops)
                    times.append(took)
                    failed += lost if times is ours else 0
        await plain.aclose()
        await pool.disconnect()
        ratio = statistics.median(o / t for o, t in zip(ours, theirs, strict=True))
        rows.append(
            (
                f"burst {tasks}x{ops} on {connections}, socket_timeout {socket_timeout}: s",
                f"{statistics.median(theirs):.2f}",
                f"{statistics.median(ours):.2f} ({failed} failed)",
                f"{ratio:.2f}",
            )
        )
    return rows


async def outage(seconds: float) -> list[Row]:
    rows: list[Row] = []
    for waiting in (0, 100, 1000):
        server = BinaryServer()
        try:
            config = SupervisorConfig(
                url=server.url, command_deadline=seconds + 30, max_waiters=2000
            )
            async with Supervisor(config) as sup:
                served: list[float] = []

                async def wait_for_it(sup: Supervisor = sup, served: list[float] = served) -> None:
                    await sup.client.get("k")
                    served.append(time.time())

                tasks = [asyncio.ensure_future(wait_for_it()) for _ in range(waiting)]
                await asyncio.sleep(0.5)
                cpu, wall = _cpu(), time.perf_counter()
                await asyncio.sleep(seconds)
                share = (_cpu() - cpu) / (time.perf_counter() - wall) * 100
                attempts = sup.statistics().connect_attempts
                server.start(wait=False)
                ready = await wait_ready(server)
                if tasks:
                    await asyncio.gather(*tasks)
                    first = min(served)
                else:
                    await sup.wait_for(ConnectionState.READY, timeout=10)
                    await sup.client.get("k")
                    first = time.time()
                first = max(first, ready)
            rows.append(
                (
                    f"outage {seconds:g} s, {waiting} waiting: CPU % | ms to first",
                    "-",
                    f"{share:.1f} % | {(first - ready_at(server)) * 1000:.1f} ms "
                    f"({attempts / (seconds + 0.5):.0f} attempts/s)",
                    "-",
                )
            )
        finally:
            server.close()
    return rows


async def lane() -> list[Row]:
    peaks = {}
    for auto in (False, True):
        server = BinaryServer()
        server.start()
        try:
            config = SupervisorConfig(url=server.url, auto_pipeline=auto, socket_timeout=30)
            async with Supervisor(config) as sup:
                await sup.wait_for(ConnectionState.READY, timeout=10)
                await sup.client.set("warm", "1")
                server.stop()
                value = "x" * 1000
                tracemalloc.start()
                tasks = [
                    asyncio.ensure_future(sup.client.set(f"k{i}", value)) for i in range(30_000)
                ]
                await asyncio.sleep(0.5)
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                refused = sum(
                    1 for t in tasks if t.done() and isinstance(t.exception(), Unavailable)
                )
                server.cont()
                await asyncio.gather(*tasks, return_exceptions=True)
                peaks[auto] = (peak / 1e6, refused)
        finally:
            server.cont()
            server.close()
    pool, auto = peaks[False], peaks[True]
    return [
        (
            "30,000 SETs, server stopped: MB peak (refused at once)",
            f"pool {pool[0]:.1f} ({pool[1]})",
            f"auto_pipeline {auto[0]:.1f} ({auto[1]})",
            f"{auto[0] / pool[0]:.2f}",
        )
    ]


async def maxclients() -> list[Row]:
    server = BinaryServer()
    server.start()
    admin = server.admin()
    try:
        config = SupervisorConfig(url=server.url, auto_pipeline=True)
        async with Supervisor(config) as sup:
            await sup.wait_for(ConnectionState.READY, timeout=10)
            await sup.client.get("k")
            await asyncio.gather(*(sup.client.blpop(["q"], 0.05) for _ in range(2)))
            for client in admin.client_list():
                if client["cmd"] == "get":
                    admin.client_kill_filter(_id=client["id"])
            admin.config_set("maxclients", int(admin.info("clients")["connected_clients"]))
            admin.config_resetstat()
            attempts = sup.statistics().connect_attempts
            results = await asyncio.gather(
                *(sup.client.get(f"c{i}") for i in range(20)), return_exceptions=True
            )
            await asyncio.sleep(3)
            attempts = sup.statistics().connect_attempts - attempts
            rejected = int(admin.info("stats")["rejected_connections"])
            admin.config_set("maxclients", 10000)
        served = sum(1 for r in results if not isinstance(r, BaseException))
        return [
            (
                "auto_pipeline, maxclients: served of 20 | rejected per attempt",
                "-",
                f"{served} | {rejected} rejected / {attempts} attempts",
                "-",
            )
        ]
    finally:
        admin.close()
        server.close()


async def stall(points: int) -> list[Row]:
    server = BinaryServer()
    server.start()
    seen: list[float] = []
    try:
        config = SupervisorConfig(url=server.url)
        async with Supervisor(config) as sup:
            await sup.wait_for(ConnectionState.READY, timeout=10)
            interval = config.health_check_interval
            for i in range(points):
                before = sup.statistics().health_checks
                while sup.statistics().health_checks == before:  # noqa: ASYNC110  (a counter)
                    await asyncio.sleep(0.001)
                await asyncio.sleep(interval * i / points)
                async with sup.subscribe() as events:
                    stopped = time.perf_counter()
                    server.stop()
                    async for event in events:
                        if getattr(event, "current", None) in (
                            ConnectionState.UNHEALTHY,
                            ConnectionState.RECONNECTING,
                        ):
                            seen.append(time.perf_counter() - stopped)
                            break
                    server.cont()
                await sup.wait_for(ConnectionState.READY, timeout=10)
        bound = config.health_check_interval + config.health_check_timeout
    finally:
        server.cont()
        server.close()
    return [
        (
            f"stall at {points} points of a round: worst | median s (bound {bound:g} s)",
            "-",
            f"{max(seen):.2f} | {statistics.median(seen):.2f}",
            "-",
        )
    ]


async def main(chosen: list[str], outage_seconds: float) -> None:
    rows: list[Row] = []
    if "burst" in chosen or "outage" in chosen:
        server = BinaryServer()
        server.start()
        try:
            if "burst" in chosen:
                rows += await burst(server.url)
        finally:
            server.close()
    if "outage" in chosen:
        rows += await outage(outage_seconds)
    if "lane" in chosen:
        rows += await lane()
    if "maxclients" in chosen:
        rows += await maxclients()
    if "stall" in chosen:
        rows += await stall(20)
    widths = [max(len(r[i]) for r in [("scenario", "redis-py", "supervisor", "ratio"), *rows])
              for i in range(4)]  # fmt: skip
    for r in [("scenario", "redis-py", "supervisor", "ratio"), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)))


SCENARIOS = ("burst", "outage", "lane", "maxclients", "stall")

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", choices=[*SCENARIOS, []], default=[])
    parser.add_argument("--outage", type=float, default=10.0, help="seconds refused")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(args.scenarios or list(SCENARIOS), args.outage))
