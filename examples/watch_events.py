"""Supervise one Redis and print every event while a small load runs.

    python examples/watch_events.py [redis://127.0.0.1:6379/0]

Then break Redis in another shell (``redis-cli CLIENT KILL TYPE normal``,
``redis-cli CONFIG SET timeout 1``, restart it...) and watch the events and
their causes. Ctrl-C stops it.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import anyio
import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contextlib

from supervisor import Supervisor, SupervisorConfig


async def load(sup: Supervisor) -> None:
    """GET once every 100 ms, as an application would; errors are printed, not raised."""
    log = structlog.get_logger("app")
    while True:
        try:
            await sup.client.get("example:key")
        except Exception as exc:
            log.error("command_failed", error=repr(exc))
        await anyio.sleep(0.1)


async def main(url: str) -> None:
    async with Supervisor(SupervisorConfig(url=url)) as sup, sup.subscribe() as events:
        async with anyio.create_task_group() as tg:
            tg.start_soon(load, sup)
            log = structlog.get_logger("events")
            async for event in events:
                fields = {k: getattr(event, k) for k in event.__dataclass_fields__}
                fields = {k: getattr(v, "value", v) for k, v in fields.items()}
                log.info(type(event).__name__, **fields)


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/0"
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(target))
