from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from supervisor import ConnectionState, Event, StateChanged, Subscription

BOUND = 15.0


async def until(
    events: Subscription, match: Callable[[Event], bool], bound: float = BOUND
) -> Event:
    """Read events until one matches; fail the test past ``bound`` seconds."""
    with anyio.fail_after(bound):
        async for event in events:
            if match(event):
                return event
    raise AssertionError("the subscription ended before the expected event")


def state_is(state: ConnectionState) -> Callable[[Event], bool]:
    return lambda e: isinstance(e, StateChanged) and e.current is state


class Recorder:
    """Every event of a supervisor, recorded by a task (``tg.start_soon(rec.record,
    events)``) and read after the fact."""

    def __init__(self) -> None:
        self.events: list[object] = []

    async def record(self, events: Subscription) -> None:
        async for event in events:
            self.events.append(event)

    def of(self, *kinds: type) -> list[object]:
        return [e for e in self.events if isinstance(e, kinds)]


async def health_rounds(sup: Any, more: int) -> None:
    """Wait until the supervisor has run ``more`` health rounds from now on."""
    from tests.helpers.loops import poll

    before = sup.statistics().health_checks
    await poll(lambda: sup.statistics().health_checks >= before + more, f"{more} health rounds")
