"""Cost that grows with the work: ``supervisor`` against redis-py 8 in the same run.

- channels: one handle subscribes to 1,000 / 10,000 / 50,000 channels in batches of
  1,000, until the server confirmed every one (redis-py: ``PubSub.subscribe`` of the
  same batches, then ``get_message`` until every confirmation is read). Then
  ``CLIENT KILL TYPE pubsub`` and the seconds until a message published on the last
  channel arrives (redis-py: a 3-try ``Retry`` resubscribes on its next read). For the
  supervisor: whether the ``Resubscribed`` marker, listing every channel, came first.
- messages: a pipelined publisher floods one channel with 100,000 messages; messages
  a second through one handle (redis-py: a ``get_message`` loop).
- run: ``python -m supervisor run`` with 1 / 20 / 100 targets whose ports refuse, and
  with 100 targets up (one server, 16 databases): CPU of that process, % of a core.

    python bench/scale.py                     # every scenario
    python bench/scale.py channels messages   # some of them
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from supervisor import Resubscribed, Supervisor, SupervisorConfig
from supervisor.targets.pubsub import Message
from supervisor.testing import BinaryServer, free_port

Row = tuple[str, str, str, str]
BATCH = 1000
BOUND = 120.0


def _ratio(theirs: float, ours: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs else "-"


async def _publish_until(admin: redis.asyncio.Redis, channel: str, got: asyncio.Event) -> None:
    while not got.is_set():
        await admin.publish(channel, "after")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(got.wait(), 0.005)


async def _redis_py_channels(url: str, names: list[str]) -> tuple[float, float]:
    client = redis.asyncio.Redis.from_url(url, retry=Retry(NoBackoff(), 3))
    admin = redis.asyncio.Redis.from_url(url)
    ps = client.pubsub()
    try:
        started = time.perf_counter()
        for i in range(0, len(names), BATCH):
            await ps.subscribe(*names[i : i + BATCH])
        confirmed = 0
        while confirmed < len(names):
            reply = await ps.get_message(timeout=BOUND)
            if reply is not None and reply["type"] == "subscribe":
                confirmed += 1
        subscribed = time.perf_counter() - started
        got = asyncio.Event()

        async def read() -> None:
            while True:
                message = await ps.get_message(ignore_subscribe_messages=True, timeout=0.05)
                if message is not None and message["channel"] == names[-1].encode():
                    got.set()
                    return

        killed = time.perf_counter()
        await admin.client_kill_filter(_type="pubsub")
        reader = asyncio.create_task(read())
        await asyncio.wait_for(_publish_until(admin, names[-1], got), BOUND)
        back = time.perf_counter() - killed
        await reader
        return subscribed, back
    finally:
        await ps.aclose()
        await client.aclose()
        await admin.aclose()


async def _our_channels(url: str, names: list[str]) -> tuple[float, float, bool]:
    admin = redis.asyncio.Redis.from_url(url)
    async with Supervisor(SupervisorConfig(url=url)) as sup, sup.pubsub() as ps:
        started = time.perf_counter()
        for i in range(0, len(names), BATCH):
            await ps.subscribe(*names[i : i + BATCH])
        subscribed = time.perf_counter() - started
        got = asyncio.Event()
        marker_first = False

        async def read() -> None:
            nonlocal marker_first
            async for item in ps:
                if isinstance(item, Resubscribed):
                    marker_first = len(item.channels) == len(names)
                elif isinstance(item, Message) and item.channel == names[-1].encode():
                    got.set()
                    return

        killed = time.perf_counter()
        await admin.client_kill_filter(_type="pubsub")
        reader = asyncio.create_task(read())
        await asyncio.wait_for(_publish_until(admin, names[-1], got), BOUND)
        back = time.perf_counter() - killed
        await reader
    await admin.aclose()
    return subscribed, back, marker_first


async def channels(url: str) -> list[Row]:
    rows: list[Row] = []
    for count in (1_000, 10_000, 50_000):
        names = [f"channel:{i}" for i in range(count)]
        their_sub, their_back = await _redis_py_channels(url, names)
        our_sub, our_back, first = await _our_channels(url, names)
        rows.append(
            (
                f"{count:,} channels: subscribe s",
                f"{their_sub:.3f}",
                f"{our_sub:.3f}",
                _ratio(their_sub, our_sub),
            )
        )
        marker = "Resubscribed first" if first else "NO marker first"
        rows.append(
            (
                f"{count:,} channels: CLIENT KILL to message s",
                f"{their_back:.3f}",
                f"{our_back:.3f} ({marker})",
                _ratio(their_back, our_back),
            )
        )
    return rows


async def _flood(url: str, channel: str, count: int) -> None:
    admin = redis.asyncio.Redis.from_url(url)
    for i in range(0, count, 1000):
        async with admin.pipeline(transaction=False) as pipe:
            for _ in range(min(1000, count - i)):
                pipe.publish(channel, "m" * 16)
            await pipe.execute()
    await admin.aclose()


async def messages(url: str, count: int = 100_000) -> list[Row]:
    client = redis.asyncio.Redis.from_url(url)
    ps = client.pubsub()
    await ps.subscribe("flood")
    await ps.get_message(timeout=5)
    flood = asyncio.create_task(_flood(url, "flood", count))
    started, got = time.perf_counter(), 0
    while got < count:
        if await ps.get_message(ignore_subscribe_messages=True, timeout=BOUND) is not None:
            got += 1
    theirs = count / (time.perf_counter() - started)
    await flood
    await ps.aclose()
    await client.aclose()
    async with Supervisor(SupervisorConfig(url=url)) as sup, sup.pubsub() as handle:
        await handle.subscribe("flood")
        flood = asyncio.create_task(_flood(url, "flood", count))
        started, got = time.perf_counter(), 0
        async for item in handle:
            if isinstance(item, Message):
                got += 1
                if got == count:
                    break
        ours = count / (time.perf_counter() - started)
        await flood
    return [(f"messages/s through one handle ({count:,})", f"{theirs:,.0f}", f"{ours:,.0f}",
             _ratio(theirs, ours))]  # fmt: skip


def _cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _run_cpu(urls: list[str], seconds: float) -> float:
    """% of a core the standalone process uses over ``seconds`` after a warm-up."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "service.toml"
        lines = ["[http]", "enabled = false", ""]
        for i, url in enumerate(urls):
            lines += [f"[targets.t{i}]", f'url = "{url}"', ""]
        path.write_text("\n".join(lines))
        proc = subprocess.Popen(
            [sys.executable, "-m", "supervisor", "run", "--config", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(3.0)  # start, first attempts, a restart's gap of fast refusals
            before, at = _cpu_of(proc.pid), time.monotonic()
            time.sleep(seconds)
            return (_cpu_of(proc.pid) - before) / (time.monotonic() - at) * 100
        finally:
            proc.terminate()
            proc.wait(30)


def run_targets(url: str, seconds: float = 10.0) -> list[Row]:
    rows: list[Row] = []
    for count in (1, 20, 100):
        refused = [f"redis://127.0.0.1:{free_port()}/0" for _ in range(count)]
        rows.append((f"run, {count} targets refusing: CPU %", "-",
                     f"{_run_cpu(refused, seconds):.1f} %", "-"))  # fmt: skip
    up = [f"{url.rsplit('/', 1)[0]}/{i % 16}" for i in range(100)]
    rows.append(("run, 100 targets up: CPU %", "-", f"{_run_cpu(up, seconds):.1f} %", "-"))
    return rows


async def main(chosen: list[str]) -> None:
    rows: list[Row] = []
    server = BinaryServer()
    server.start()
    try:
        if "channels" in chosen:
            rows += await channels(server.url)
        if "messages" in chosen:
            rows += await messages(server.url)
        if "run" in chosen:
            rows += run_targets(server.url)
    finally:
        server.close()
    head = ("scenario", "redis-py", "supervisor", "ratio")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    for r in [head, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)))


SCENARIOS = ("channels", "messages", "run")

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", choices=[*SCENARIOS, []], default=[])
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(args.scenarios or list(SCENARIOS)))
