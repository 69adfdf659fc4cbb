"""``python -m supervisor demo``: the seed's faults, one by one, on a throwaway Redis.

Starts its own ``redis-server`` (or a container where a Docker engine answers),
supervises it under a small load, injects each fault, and shows the events
with their causes, the errors the application saw, and the time to recover.
Everything it started is stopped when it ends.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio
from redis.exceptions import RedisError

from supervisor.config import SupervisorConfig
from supervisor.errors import OutcomeUnknown
from supervisor.events import Event, Resubscribed, ServerSampled, Snapshot, StateChanged
from supervisor.state import ConnectionState
from supervisor.targets.hub import Subscription
from supervisor.targets.pubsub import SupervisedPubSub
from supervisor.targets.single import Supervisor
from supervisor.testing import RedisServer, make_server

__all__ = ("demo_main",)


@dataclass
class Outcome:
    fault: str
    events: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    recovery: float | None = None
    expected_errors: bool = False
    """The fault cannot be survived (maxclients refuses every connection): errors are due."""

    @property
    def unexpected(self) -> list[str]:
        """Errors the supervisor should have prevented. OutcomeUnknown is never one: it
        reports a write in flight when the connection broke, which is not re-sent."""
        if self.expected_errors:
            return []
        return [e for e in self.errors if not e.startswith("OutcomeUnknown")]


@dataclass
class Load:
    """A small application: GETs and INCRs in a loop, recording what it sees."""

    sup: Supervisor
    errors: list[str] = field(default_factory=list)
    ops: int = 0

    async def run(self) -> None:
        while True:
            try:
                await self.sup.client.get("demo:key")
                await self.sup.client.incr("demo:counter")
                self.ops += 2
            except OutcomeUnknown as exc:
                self.errors.append(f"OutcomeUnknown({exc.command}): not re-sent")
            except RedisError as exc:
                self.errors.append(f"{type(exc).__name__}: {_brief(str(exc), 140)}")
            await anyio.sleep(0.01)


def _line(event: Event) -> str | None:
    if isinstance(event, (Snapshot, ServerSampled)):
        return None
    name = type(event).__name__
    if isinstance(event, StateChanged):
        what = f"{event.previous.value} -> {event.current.value}"
    else:
        what = ""
    cause = getattr(event, "cause", None)
    detail = _brief(event.detail, 110)
    return f"{name} {what} cause={cause.value if cause else None}: {detail}".replace("  ", " ")


def _brief(text: str, width: int) -> str:
    """At most ``width`` characters, cut between words (a cut word misleads: "refused"
    cut to "ref")."""
    return textwrap.shorten(text, width, placeholder=" …")


async def _fault(
    name: str,
    sup: Supervisor,
    events: Subscription,
    load: Load,
    inject: Callable[[], Awaitable[None]],
    *,
    expected_errors: bool = False,
) -> Outcome:
    outcome = Outcome(name, expected_errors=expected_errors)
    print(f"\n== {name}")
    while events.receive_nowait() is not None:
        pass
    errors_before = len(load.errors)
    started = time.monotonic()
    await inject()
    with anyio.fail_after(60):
        await sup.wait_for(ConnectionState.READY)
    outcome.recovery = time.monotonic() - started
    await anyio.sleep(0.3)
    while (event := events.receive_nowait()) is not None:
        if (line := _line(event)) is not None:
            outcome.events.append(line)
            print(f"   event: {line}")
    outcome.errors = load.errors[errors_before:]
    for error in outcome.errors[:5]:
        print(f"   app saw: {error}")
    if len(outcome.errors) > 5:
        print(f"   app saw {len(outcome.errors) - 5} more errors")
    print(f"   recovered after {outcome.recovery:.2f} s; app errors: {len(outcome.errors)}")
    return outcome


async def run_demo(server: RedisServer, *, quick: bool = False) -> list[Outcome]:
    admin = server.admin()
    idle = 1.5 if quick else 2.5
    config = SupervisorConfig(
        url=server.url,
        health_check_interval=0.3,
        health_check_timeout=0.3,
        backoff_base=0.05,
        backoff_cap=0.5,
        command_deadline=1.5,
        socket_connect_timeout=1.0,
    )
    outcomes = []
    async with Supervisor(config) as sup, sup.subscribe(max_buffer=1000) as events:
        await sup.wait_for(ConnectionState.READY, timeout=10)
        load = Load(sup)
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(load.run)

            async def idle_timeout() -> None:
                admin.config_set("timeout", 1)
                await anyio.sleep(idle)

            async def client_kill() -> None:
                admin.client_kill_filter(_type="normal", skipme=True)
                await anyio.sleep(0.5)

            async def restart() -> None:
                server.kill()
                await anyio.sleep(1.0)
                server.start()

            async def stall() -> None:
                server.stop()
                await anyio.sleep(2.0 if quick else 3.0)
                server.cont()

            async def maxclients() -> None:
                admin.config_set("maxclients", 1)
                admin.client_kill_filter(_type="normal", skipme=True)
                await anyio.sleep(2.0)
                admin.config_set("maxclients", 10000)

            outcomes.append(
                await _fault("idle timeout (CONFIG SET timeout 1)", sup, events, load, idle_timeout)
            )
            admin.config_set("timeout", 0)
            outcomes.append(await _fault("CLIENT KILL TYPE normal", sup, events, load, client_kill))
            outcomes.append(
                await _fault("restart (SIGKILL, start 1 s later)", sup, events, load, restart)
            )
            admin.close()
            admin = server.admin()
            outcomes.append(await _fault("stall (SIGSTOP, SIGCONT)", sup, events, load, stall))
            outcomes.append(
                await _fault(
                    "maxclients exhausted for 2 s",
                    sup,
                    events,
                    load,
                    maxclients,
                    expected_errors=True,
                )
            )
            outcomes.append(
                await _fault(
                    "slow pub/sub consumer (client-output-buffer-limit)",
                    sup,
                    events,
                    load,
                    lambda: _slow_consumer(sup, admin),
                )
            )
            tg.cancel_scope.cancel()
    admin.close()
    return outcomes


async def _slow_consumer(sup: Supervisor, admin: object) -> None:
    import redis

    assert isinstance(admin, redis.Redis)
    admin.config_set("client-output-buffer-limit", "pubsub 64kb 32kb 1")
    async with SupervisedPubSub(sup) as ps:
        await ps.subscribe("demo:feed")
        payload = "x" * 1024
        for _ in range(20000):
            if admin.publish("demo:feed", payload) == 0:
                break
            pubsub_clients = admin.client_list(_type="pubsub")
            if pubsub_clients and int(pubsub_clients[0]["omem"]) > 40000:
                await anyio.sleep(0.05)
        with anyio.fail_after(20):
            async for item in ps:
                if isinstance(item, Resubscribed):
                    break


def summary(outcomes: list[Outcome]) -> str:
    rows = [("fault", "causes seen", "app errors", "recovery")]
    for o in outcomes:
        causes = sorted(
            {part.split("cause=")[1].split(":")[0] for part in o.events if "cause=" in part}
            - {"None"}
        )
        unknown = sum(e.startswith("OutcomeUnknown") for e in o.errors)
        errors = str(len(o.errors))
        if o.expected_errors and o.errors:
            errors += " (expected)"
        elif unknown:
            errors += f" ({unknown} OutcomeUnknown)"
        recovery = f"{o.recovery:.2f} s" if o.recovery is not None else "-"
        rows.append((o.fault, ", ".join(causes) or "none", errors, recovery))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def demo_main(*, quick: bool = False) -> int:
    from supervisor.service.logconfig import configure_logging

    configure_logging(json=False, level=40)  # the demo prints its own lines
    server = make_server()
    print(f"started a throwaway redis-server at {server.url}")
    try:
        outcomes = anyio.run(lambda: run_demo(server, quick=quick))
    finally:
        server.close()
        print("stopped the throwaway redis-server")
    print("\n" + summary(outcomes))
    return 1 if any(o.unexpected for o in outcomes) else 0
