"""Recovery after outages: ``sup.client`` against redis-py on its constructor defaults.

Both clients meet the same scenarios in the same run, on servers this script
starts on loopback, and one table prints the figures and their ratios:

- restart: SIGKILL under 20 GET loops, restart on the same port 1.5 s later;
  the first success after the server is ready (its log's "Ready to accept").
- cold: the app starts while nothing listens; Redis starts 1, 2, 4 and 8 s later;
  the first success after it is ready, and the app errors meanwhile.
- fleet: 100 processes behind a proxy that, for 2 s, accepts connections and
  resets them; connections the proxy accepted during the outage, and how long
  after it each process's first success came.
- maxclients: 10 GET loops; maxclients drops to 5 and every client is killed,
  so they must reconnect; app errors and rejected connections over 3 s.
- sentinel: the master (1 replica, 3 sentinels) is SIGKILLed under a write
  loop; the first acknowledged write on the new master after the kill.
- cluster: 3 primaries, 3 replicas; a reader on every shard and a writer on every
  other shard; one primary is SIGKILLed and the run goes on until its shard has
  served 2 s again: errors on healthy shards and on the failed one, the longest
  single command on a healthy shard, and s from the kill to the failed shard's
  first read.

    python bench/recovery.py                  # every scenario
    python bench/recovery.py restart cold     # some of them
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import redis.asyncio
import structlog
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from supervisor import ClusterSupervisor, Supervisor, SupervisorConfig
from supervisor.testing import BinaryServer, ClusterSetup, SentinelSetup

ROOT = str(Path(__file__).resolve().parents[1])
CLIENTS = ("redis-py", "supervisor")
BOUND = 60.0  # no wait in this script takes longer


@contextlib.asynccontextmanager
async def client_for(kind: str, url: str) -> AsyncIterator[redis.asyncio.Redis]:
    """redis-py as a new user writes it, or a supervisor on its defaults."""
    if kind == "redis-py":
        client = redis.asyncio.Redis.from_url(url)
        try:
            yield client
        finally:
            await client.aclose()
    else:
        async with Supervisor(SupervisorConfig(url=url)) as sup:
            yield sup.client


class Load:
    """Coroutines looping on one command; errors counted, first success after a mark."""

    def __init__(self, command: Callable[[], Awaitable[Any]], tasks: int) -> None:
        self._command = command
        self._tasks = tasks
        self.errors = 0
        self.mark_at = float("inf")
        self.first_ok: float | None = None
        self._after_mark = asyncio.Event()
        self._running: list[asyncio.Task[None]] = []
        self._stopping = False

    def start(self) -> None:
        self._running = [asyncio.create_task(self._loop()) for _ in range(self._tasks)]

    async def _loop(self) -> None:
        while not self._stopping:
            started = time.time()
            try:
                await self._command()
            except Exception:
                self.errors += 1
                await asyncio.sleep(0)
                continue
            if started >= self.mark_at and self.first_ok is None:
                self.first_ok = time.time()
                self._after_mark.set()

    def mark(self) -> None:
        """From now on, the next success that was sent after this moment is recorded."""
        self.mark_at = time.time()

    async def first_success(self) -> float:
        await asyncio.wait_for(self._after_mark.wait(), BOUND)
        assert self.first_ok is not None
        return self.first_ok

    async def stop(self) -> None:
        """Let each loop finish its command (cancelling redis-py mid-write can leave it
        waiting out its socket_timeout on Python 3.11), then cancel what is left."""
        self._stopping = True
        _, late = await asyncio.wait(self._running, timeout=BOUND)
        for task in late:
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)


_READY = re.compile(rb"(\d+ \w{3} \d{4} \d\d:\d\d:\d\d\.\d{3}) \* Ready to accept connections")


def ready_at(server: BinaryServer) -> float:
    """When the server last logged that it accepts connections (epoch seconds)."""
    log = (Path(server._dir) / "redis.log").read_bytes()
    stamps = _READY.findall(log)
    if not stamps:
        raise RuntimeError(f"redis-server on {server.port} never logged that it is ready")
    return datetime.strptime(stamps[-1].decode(), "%d %b %Y %H:%M:%S.%f").timestamp()


async def wait_ready(server: BinaryServer) -> float:
    for _ in range(int(BOUND / 0.01)):
        with contextlib.suppress(RuntimeError, FileNotFoundError):
            return ready_at(server)
        await asyncio.sleep(0.01)
    raise RuntimeError("the server never became ready")


# -- restart ---------------------------------------------------------------------------


async def restart(runs: int) -> dict[str, list[float]]:
    """ms from the restarted server's readiness to the first success, per run."""
    out: dict[str, list[float]] = {k: [] for k in CLIENTS}
    server = BinaryServer()
    server.start()
    try:
        for _ in range(runs):
            for kind in CLIENTS:
                async with client_for(kind, server.url) as client:
                    await client.set("k", "v")
                    load = Load(lambda c=client: c.get("k"), 20)  # type: ignore[misc]
                    load.start()
                    await asyncio.sleep(0.3)
                    server.kill()
                    load.mark()
                    await asyncio.sleep(1.5)
                    server.start(wait=False)
                    first = await load.first_success()
                    ready = await wait_ready(server)
                    out[kind].append((first - ready) * 1000)
                    await load.stop()
                    await client.set("k", "v")
    finally:
        server.close()
    return out


# -- cold start ------------------------------------------------------------------------


async def cold(downtimes: tuple[float, ...]) -> dict[str, list[tuple[float, int]]]:
    """(ms from readiness to the first success, app errors) per down-time."""
    out: dict[str, list[tuple[float, int]]] = {k: [] for k in CLIENTS}
    for down in downtimes:
        for kind in CLIENTS:
            server = BinaryServer()
            try:
                async with client_for(kind, server.url) as client:
                    load = Load(lambda c=client: c.get("k"), 10)  # type: ignore[misc]
                    load.mark()
                    load.start()
                    await asyncio.sleep(down)
                    server.start(wait=False)
                    first = await load.first_success()
                    ready = await wait_ready(server)
                    await load.stop()
                    out[kind].append(((first - ready) * 1000, load.errors))
            finally:
                server.close()
    return out


# -- a fleet of processes behind a resetting proxy --------------------------------------


class ResettingProxy:
    """Forwards to Redis; during an outage it accepts every connection and resets it
    (what a load balancer or service proxy does when its backend is gone)."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.outage = False
        self.accepted_in_outage = 0
        self._links: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> ResettingProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._links):
            _reset(writer)

    def begin_outage(self) -> None:
        self.outage = True
        for writer in list(self._links):
            _reset(writer)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.outage:
            self.accepted_in_outage += 1
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            _reset(writer)
            return
        self._links |= {writer, up_writer}
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in (writer, up_writer):
                self._links.discard(w)
                _reset(w)


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    while data := await src.read(65536):
        dst.write(data)
        await dst.drain()
    _reset(dst)


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
    writer.transport.abort()


async def worker(kind: str, url: str) -> None:
    """One process of the fleet: GET every 100 ms; prints ``ready``, ``error NAME`` for
    each error the app sees, and ``ok T`` for a success after a failure or after a
    command that waited (a gap of over 0.2 s), until killed."""

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    async with client_for(kind, url) as client:
        failing = False
        last_ok: float | None = None
        while True:
            try:
                await client.get("k")
            except Exception as exc:
                say(f"error {type(exc).__name__}")
                failing = True
            else:
                now = time.time()
                if last_ok is None:
                    say("ready")
                elif failing or now - last_ok > 0.2:
                    say(f"ok {now}")
                failing, last_ok = False, now
            await asyncio.sleep(0.1)


async def fleet(processes: int, outage: float) -> dict[str, tuple[int, float, float, int, int]]:
    """(accepted during the outage, median and worst s back after it, processes back,
    app errors) per client."""
    out = {}
    server = BinaryServer()
    server.start()
    try:
        for kind in CLIENTS:
            async with proxy_process(server.port) as proxy:
                out[kind] = await _fleet_run(kind, proxy, processes, outage)
    finally:
        server.close()
    return out


class ProxyControl:
    """The proxy runs in its own process, so this script's work never slows it."""

    def __init__(self, child: asyncio.subprocess.Process, port: int) -> None:
        self._child = child
        self.port = port

    async def _say(self, word: str) -> str:
        assert self._child.stdin is not None and self._child.stdout is not None
        self._child.stdin.write(word.encode() + b"\n")
        await self._child.stdin.drain()
        return (await self._child.stdout.readline()).decode().strip()

    async def begin_outage(self) -> None:
        await self._say("begin")

    async def end_outage(self) -> int:
        """End it; return how many connections were accepted during it."""
        return int(await self._say("end"))


@contextlib.asynccontextmanager
async def proxy_process(upstream: int) -> AsyncIterator[ProxyControl]:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--proxy",
        str(upstream),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    try:
        assert child.stdout is not None
        port = int((await asyncio.wait_for(child.stdout.readline(), BOUND)).decode())
        yield ProxyControl(child, port)
    finally:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        await child.wait()


async def serve_proxy(upstream: int) -> None:
    """``--proxy PORT``: print the port, then obey ``begin`` and ``end`` on stdin."""
    async with ResettingProxy(upstream) as proxy:
        print(proxy.port, flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            if line.strip() == b"begin":
                proxy.begin_outage()
                print("ok", flush=True)
            else:
                proxy.outage = False
                print(proxy.accepted_in_outage, flush=True)


async def _fleet_run(
    kind: str, proxy: ProxyControl, processes: int, outage: float
) -> tuple[int, float, float, int, int]:
    url = f"redis://127.0.0.1:{proxy.port}/0"
    env = {**os.environ, "PYTHONPATH": ROOT}
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--worker",
            kind,
            url,
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        for _ in range(processes)
    ]
    ready = asyncio.Event()
    n_ready = 0
    back: dict[int, float] = {}
    errors = 0
    outage_end = float("inf")

    async def read(i: int, child: asyncio.subprocess.Process) -> None:
        nonlocal n_ready, errors
        assert child.stdout is not None
        while line := await child.stdout.readline():
            word, _, rest = line.decode().strip().partition(" ")
            if word == "ready":
                n_ready += 1
                if n_ready == processes:
                    ready.set()
            elif word == "error":
                errors += 1
            elif word == "ok" and float(rest) >= outage_end and i not in back:
                back[i] = float(rest) - outage_end

    readers = [asyncio.create_task(read(i, c)) for i, c in enumerate(children)]
    try:
        await asyncio.wait_for(ready.wait(), 180)
        await asyncio.sleep(1.0)
        await proxy.begin_outage()
        await asyncio.sleep(outage)
        outage_end = time.time()
        accepted = await proxy.end_outage()
        for _ in range(200):
            if len(back) == processes:
                break
            await asyncio.sleep(0.05)
    finally:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGKILL)
        for child in children:
            await child.wait()
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    times = sorted(back.values()) or [float("nan")]
    return accepted, statistics.median(times), times[-1], len(back), errors


# -- maxclients --------------------------------------------------------------------------


async def maxclients(seconds: float) -> dict[str, tuple[int, int]]:
    """(app errors, rejected connections) per client over ``seconds`` after the kill."""
    out = {}
    for kind in CLIENTS:
        server = BinaryServer()
        server.start()
        admin = server.admin()
        try:
            async with client_for(kind, server.url) as client:
                load = Load(lambda c=client: c.get("k"), 10)  # type: ignore[misc]
                load.start()
                await asyncio.sleep(0.5)
                errors_before = load.errors
                rejected_before = int(admin.info("stats")["rejected_connections"])
                admin.config_set("maxclients", 5)
                admin.client_kill_filter(_type="normal", skipme=True)
                await asyncio.sleep(seconds)
                rejected = int(admin.info("stats")["rejected_connections"]) - rejected_before
                out[kind] = (load.errors - errors_before, rejected)
                await load.stop()
        finally:
            admin.close()
            server.close()
    return out


# -- sentinel ----------------------------------------------------------------------------


async def sentinel(runs: int) -> dict[str, list[float]]:
    """s from the master's SIGKILL to the first acknowledged write on the new master."""
    out: dict[str, list[float]] = {k: [] for k in CLIENTS}
    for _ in range(runs):
        for kind in CLIENTS:
            setup = SentinelSetup()
            try:
                out[kind].append(await _sentinel_run(kind, setup))
            finally:
                setup.close()
    return out


async def _sentinel_run(kind: str, setup: SentinelSetup) -> float:
    """The old master is dead, so the first write acknowledged after the kill was
    acknowledged by the new one."""
    async with contextlib.AsyncExitStack() as stack:
        if kind == "redis-py":
            sentinels = Sentinel([("127.0.0.1", s.port) for s in setup.sentinels])
            client = sentinels.master_for(setup.service)
            stack.push_async_callback(client.aclose)
        else:
            config = SupervisorConfig(sentinels=tuple(setup.addresses), service_name=setup.service)
            client = (await stack.enter_async_context(Supervisor(config))).client
        await client.set("w", "x")
        load = Load(lambda: client.set("w", "x"), 5)
        load.start()
        await asyncio.sleep(0.3)
        killed = time.time()
        setup.master.kill()
        load.mark()
        first = await load.first_success()
        await load.stop()
    return first - killed


# -- cluster -----------------------------------------------------------------------------


ClusterFigures = tuple[int, int, float, float, float]
"""Errors on healthy shards, errors on the failed shard, the longest command on a
healthy shard (ms), s from the kill to the failed shard's first read, and ms from
the replica's promotion (its ROLE, polled every 2 ms) to that read: the part that
is the client's, without the failover's own varying length."""


async def cluster(runs: int) -> dict[str, list[ClusterFigures]]:
    out: dict[str, list[ClusterFigures]] = {k: [] for k in CLIENTS}
    for _ in range(runs):
        for kind in CLIENTS:
            setup = ClusterSetup()
            try:
                out[kind].append(await _cluster_run(kind, setup))
            finally:
                setup.close()
    return out


async def _cluster_run(kind: str, setup: ClusterSetup) -> ClusterFigures:
    keys: dict[str, str] = {}
    for i in range(200):
        keys.setdefault(setup.primary_of(f"{{k{i}}}"), f"{{k{i}}}")
    victim = setup.seeds[0]
    async with contextlib.AsyncExitStack() as stack:
        client: Any
        if kind == "redis-py":
            host, port = victim.split(":")
            client = RedisCluster(host=host, port=int(port))
            stack.push_async_callback(client.aclose)
        else:
            config = SupervisorConfig(cluster_nodes=tuple(setup.seeds))
            client = (await stack.enter_async_context(ClusterSupervisor(config))).client
        for key in keys.values():
            await client.set(key, "v")
        errors = {address: 0 for address in keys}
        longest = {address: 0.0 for address in keys}
        killed_at: float | None = None
        back_at: float | None = None
        stop = asyncio.Event()

        async def loop(address: str, command: Callable[[], Awaitable[Any]]) -> None:
            nonlocal back_at
            while not stop.is_set():
                started = time.monotonic()
                try:
                    await command()
                    # sent after kill() returned: only the new primary can answer it
                    if address == victim and back_at is None and started > (killed_at or 1e18):
                        back_at = time.monotonic()
                except Exception:
                    errors[address] += 1
                longest[address] = max(longest[address], time.monotonic() - started)
                await asyncio.sleep(0)

        tasks = []
        for address, key in keys.items():
            tasks.append(asyncio.create_task(loop(address, lambda k=key: client.get(k))))
            if address != victim:
                tasks.append(asyncio.create_task(loop(address, lambda k=key: client.set(k, "w"))))
        await asyncio.sleep(0.5)
        for address in longest:
            longest[address] = 0.0
        replica = _replica_of(setup, victim)
        promoted = asyncio.create_task(_promotion(replica))
        setup.node(victim).kill()
        killed_at = time.monotonic()
        for _ in range(int(BOUND / 0.05)):
            if back_at is not None and time.monotonic() - back_at > 2.0:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*tasks)
        promoted_at = await promoted
    healthy = [a for a in keys if a != victim]
    return (
        sum(errors[a] for a in healthy),
        errors[victim],
        max(longest[a] for a in healthy) * 1000,
        (back_at or float("nan")) - killed_at,
        ((back_at or float("nan")) - promoted_at) * 1000,
    )


def _replica_of(setup: ClusterSetup, primary: str) -> str:
    with setup.node(primary).admin() as admin:
        lines = admin.execute_command("CLUSTER", "NODES")
    rows = [
        line.split()
        for line in (lines.decode() if isinstance(lines, bytes) else lines).splitlines()
    ]
    primary_id = next(r[0] for r in rows if r[1].split("@")[0] == primary)
    return next(r[1].split("@")[0] for r in rows if len(r) > 3 and r[3] == primary_id)


async def _promotion(address: str) -> float:
    """When the replica at ``address`` first says it is a master."""
    host, port = address.split(":")
    client = redis.asyncio.Redis(host=host, port=int(port))
    try:
        for _ in range(int(BOUND / 0.002)):
            role = await client.execute_command("ROLE")
            if role[0] in (b"master", "master"):
                return time.monotonic()
            await asyncio.sleep(0.002)
    finally:
        await client.aclose()
    return float("nan")


# -- the table ---------------------------------------------------------------------------


Row = tuple[str, str, str, str]


def row(name: str, theirs: float, ours: float, fmt: str = "{:.0f}", compare: bool = True) -> Row:
    """One table line: redis-py, the supervisor, and supervisor / redis-py."""
    q = f"{ours / theirs:.2f}" if compare and theirs else "-"
    return name, fmt.format(theirs), fmt.format(ours), q


async def main(chosen: list[str]) -> None:
    rows: list[Row] = []
    if "restart" in chosen:
        r = await restart(runs=7)
        med, worst = statistics.median, max
        rows.append(row("restart: ms from ready to first success, median", *map(med, r.values())))
        rows.append(row("restart: ms from ready to first success, worst", *map(worst, r.values())))
    if "cold" in chosen:
        c = await cold((1, 2, 4, 8))
        for label, pick in (("median", statistics.median), ("worst", max)):
            figures = (pick([ms for ms, _ in c[k]]) for k in CLIENTS)
            rows.append(
                row(f"cold start (1-8 s): ms from ready to first success, {label}", *figures)
            )
        errors = (sum(e for _, e in c[k]) for k in CLIENTS)
        rows.append(row("cold start: app errors", *errors, compare=False))
    if "fleet" in chosen:
        f = await fleet(processes=100, outage=2.0)
        rpy, sup = f["redis-py"], f["supervisor"]
        rows.append(row("fleet of 100, 2 s outage: connections accepted in it", rpy[0], sup[0]))
        rows.append(row("fleet: s back after the outage, median", rpy[1], sup[1], "{:.2f}"))
        rows.append(row("fleet: s back after the outage, worst", rpy[2], sup[2], "{:.2f}"))
        rows.append(row("fleet: processes back", rpy[3], sup[3], compare=False))
        rows.append(row("fleet: app errors", rpy[4], sup[4], compare=False))
    if "maxclients" in chosen:
        m = await maxclients(seconds=3.0)
        rpy2, sup2 = m["redis-py"], m["supervisor"]
        rows.append(row("maxclients 5 under load, 3 s: app errors", rpy2[0], sup2[0]))
        rows.append(row("maxclients: rejected connections", rpy2[1], sup2[1]))
    if "sentinel" in chosen:
        t = await sentinel(runs=3)
        figures = (statistics.median(t[k]) for k in CLIENTS)
        rows.append(
            row("sentinel master kill: s to first write on the new master", *figures, "{:.2f}")
        )
    if "cluster" in chosen:
        runs = await cluster(runs=5)
        labels = (
            ("cluster primary kill: errors on healthy shards, total of 5 runs", sum, "{:.0f}"),
            ("cluster: errors on the failed shard, total", sum, "{:.0f}"),
            ("cluster: longest command on a healthy shard, ms, worst", max, "{:.0f}"),
            ("cluster: s to the failed shard's first read, median", statistics.median, "{:.2f}"),
            ("cluster: ms from the promotion to that read, median", statistics.median, "{:.0f}"),
        )
        for i, (label, pick, fmt) in enumerate(labels):
            figures = (pick([figs[i] for figs in runs[k]]) for k in CLIENTS)
            rows.append(row(label, *figures, fmt, compare=i >= 2))
    width = max(len(r[0]) for r in rows)
    print(f"{'scenario'.ljust(width)}  {'redis-py':>10}  {'supervisor':>10}  {'ratio':>6}")
    for name, theirs, ours, q in rows:
        print(f"{name.ljust(width)}  {theirs:>10}  {ours:>10}  {q:>6}")
    if "cluster" in chosen:  # a failover's length varies from run to run: show each
        for kind in CLIENTS:
            each = ", ".join(f"{figs[4]:.0f}" for figs in runs[kind])
            print(f"cluster, ms from the promotion to the first read, per run, {kind}: {each}")


SCENARIOS = ("restart", "cold", "fleet", "maxclients", "sentinel", "cluster")

if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--proxy":
        asyncio.run(serve_proxy(int(sys.argv[2])))
        sys.exit(0)
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(worker(sys.argv[2], sys.argv[3]))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("scenarios", nargs="*", help=f"any of {', '.join(SCENARIOS)}")
    args = parser.parse_args()
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario {', '.join(sorted(unknown))}; choose from {SCENARIOS}")
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    asyncio.run(main(args.scenarios or list(SCENARIOS)))
