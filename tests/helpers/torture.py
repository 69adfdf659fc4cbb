"""The staleness torture: versioned writes, cached reads, faults one after another,
and every read checked against the moment its value was overwritten.

A writer (plain redis-py, no cache) writes version ``v`` of a key and records when
the write was acknowledged to it. Readers read through the cache under test and
record when each read began and the version it returned. A read that began at
``t`` and returned ``v`` is stale by ``t - ack(v + 1)`` when version ``v + 1`` was
acknowledged before ``t``. Faults that lose data (a restart, FLUSHALL, SWAPDB,
eviction) leave keys nil for a while; a nil read is not checked.

Used by ``tests/test_cache_torture.py`` (the supervisor, in the suite) and by
``bench/staleness.py`` (the supervisor beside redis-py's own client-side cache).
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel
import redis.asyncio

from tests.helpers.loops import bounded

__all__ = ("Fault", "Run", "Torture", "measure")

Get = Callable[[str], Awaitable[Any]]


@dataclass
class Run:
    acks: dict[str, list[float]] = field(default_factory=dict)
    """``acks[key][v]``: when version ``v`` of ``key`` was acknowledged."""
    reads: list[tuple[str, float, int]] = field(default_factory=list)
    nil_reads: int = 0
    errors: list[str] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    fault_started: list[float] = field(default_factory=list)

    def during(self, moment: float) -> str:
        """The fault applied last before ``moment`` ("" before the first)."""
        name = ""
        for fault, started in zip(self.faults, self.fault_started, strict=True):
            if started > moment:
                break
            name = fault
        return name

    def staleness(self) -> list[tuple[float, float]]:
        """When each stale read began and how stale it was (seconds)."""
        stale = []
        acks = self.acks
        for key, began, version in self.reads:
            versions = acks[key]
            if version + 1 < len(versions) and versions[version + 1] < began:
                stale.append((began, began - versions[version + 1]))
        return stale


@dataclass
class Fault:
    name: str
    apply: Callable[[], Awaitable[None]]


@dataclass
class Torture:
    """``await torture.run(get, faults, recovered)``: writer and readers run the
    whole time; each fault is applied once the previous one is over."""

    write: Callable[[str, int], Awaitable[bool]]
    """Write a version; True once it is acknowledged (as the test defines it)."""
    keys: int = 300
    readers: int = 8
    bound: float = 60.0
    run_: Run = field(default_factory=Run)

    async def run(
        self, get: Get, faults: list[Fault], recovered: Callable[[], Awaitable[None]]
    ) -> Run:
        run = self.run_
        names = [f"torture:{i}" for i in range(self.keys)]
        for name in names:
            if not await self.write(name, 0):
                raise AssertionError(f"the first version of {name} was not acknowledged")
            run.acks[name] = [time.monotonic()]
        done = anyio.Event()
        with anyio.fail_after(self.bound):
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._write, names, done)
                for seed in range(self.readers):
                    tg.start_soon(self._read, get, names, done, random.Random(seed))
                try:
                    await recovered()
                    for fault in faults:
                        run.faults.append(fault.name)
                        run.fault_started.append(time.monotonic())
                        await fault.apply()
                        await recovered()
                finally:
                    done.set()
        return run

    async def _write(self, names: list[str], done: anyio.Event) -> None:
        acks = self.run_.acks
        for i in bounded("the torture's writer", seconds=self.bound + 5):
            if done.is_set():
                return
            name = names[i % len(names)]
            version = len(acks[name])
            try:
                acknowledged = await self.write(name, version)
            except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
                acknowledged = False
            if not acknowledged:
                await anyio.sleep(0.01)  # the fault's moment: the version may come again
                continue
            acks[name].append(time.monotonic())

    async def _read(
        self, get: Get, names: list[str], done: anyio.Event, rng: random.Random
    ) -> None:
        run = self.run_
        for _ in bounded("a torture reader", count=10**8, seconds=self.bound + 5):
            if done.is_set():
                return
            name = rng.choice(names)
            began = time.monotonic()
            try:
                value = await get(name)
            except Exception as exc:  # counted: the test says how many and which
                run.errors.append(f"{type(exc).__name__}: {exc}")
                await anyio.sleep(0.01)
                continue
            if value is None:
                run.nil_reads += 1
            else:
                run.reads.append((name, began, int(value)))
            await anyio.lowlevel.checkpoint()


def measure(run: Run, bound: float) -> dict[str, Any]:
    stale = [s for _, s in run.staleness()]
    by_fault: dict[str, list[float]] = {}
    for began, s in run.staleness():
        by_fault.setdefault(run.during(began), []).append(s)
    return {
        "worst_by_fault": {k: round(max(v), 4) for k, v in by_fault.items()},
        "over_bound_by_fault": {
            k: n for k, v in by_fault.items() if (n := sum(1 for s in v if s > bound))
        },
        "stale_samples": [
            (
                run.during(b),
                round(b - run.fault_started[run.faults.index(run.during(b))], 4),
                round(s, 4),
            )
            for b, s in run.staleness()[:8]
            if run.during(b)
        ],
        "reads": len(run.reads),
        "nil_reads": run.nil_reads,
        "writes": sum(len(v) - 1 for v in run.acks.values()),
        "stale_reads": len(stale),
        "worst_staleness_s": max(stale, default=0.0),
        "reads_staler_than_bound": sum(1 for s in stale if s > bound),
        "errors": len(run.errors),
        "faults": list(run.faults),
    }
