from __future__ import annotations

from collections.abc import Callable

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
