"""Bounded loops for tests: every loop ends, and a loop that runs too long fails
the test saying what it waited for and what it saw."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator

import anyio

from supervisor import Supervisor
from tests.helpers.events import BOUND

__all__ = ("Tally", "bounded", "poll", "prober_attempts", "settle")


def bounded(what: str, *, count: int = 1_000_000, seconds: float = 60.0) -> Iterator[int]:
    """Rounds of a load loop (a reader, a writer): fails past ``count`` rounds or
    ``seconds``, so a loop whose stop never comes cannot hang the suite."""
    deadline = time.monotonic() + seconds
    for i in range(count):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still looping after {seconds:g} s ({i} rounds)")
        yield i
    raise AssertionError(f"{what}: still looping after {count} rounds")


class Tally:
    """A count that load tasks raise and the test waits on: ``await tally.reach(n, what)``."""

    def __init__(self) -> None:
        self.value = 0
        self._changed = anyio.Event()

    def add(self) -> None:
        self.value += 1
        self._changed.set()
        self._changed = anyio.Event()

    async def reach(self, target: int, what: str, bound: float = BOUND) -> None:
        with anyio.move_on_after(bound):
            for _ in range(max(0, target - self.value)):  # each wake-up is one add() at least
                if self.value >= target:
                    break
                await self._changed.wait()
            return
        raise AssertionError(f"waited {bound:g} s for {what}: reached {self.value} of {target}")


async def poll(
    condition: Callable[[], bool],
    what: str,
    seen: Callable[[], object] = lambda: None,
    bound: float = BOUND,
    every: float = 0.01,
) -> None:
    """Check a condition of the library's counters every ``every`` seconds (there is
    no event for it); fail past ``bound`` saying what was awaited and what was seen."""
    for _ in range(int(bound / every) + 1):
        if condition():
            return
        await anyio.sleep(every)
    raise AssertionError(f"waited {bound:g} s for {what}; seen: {seen()}")


async def prober_attempts(sup: Supervisor, more: int) -> int:
    """Wait until the prober has made ``more`` connection attempts from now on; return
    its count of attempts since the supervisor started."""
    before = sup.statistics().connect_attempts
    await poll(
        lambda: sup.statistics().connect_attempts >= before + more,
        f"{more} more connection attempts by the prober",
        lambda: sup.statistics().connect_attempts - before,
    )
    return sup.statistics().connect_attempts


async def settle(call: Callable[[], Awaitable[object]], into: list[object]) -> None:
    """Run a command in a task and keep what it ended with, its reply or its exception,
    for the test to assert on once the task group is done."""
    try:
        into.append(await call())
    except Exception as exc:
        into.append(exc)
