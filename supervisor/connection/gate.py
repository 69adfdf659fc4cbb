"""Admission of commands: open while the target is usable, bounded waiting otherwise.

While the gate is not open, commands never dial Redis themselves: they wait
for the supervisor's single prober to reopen it (or fail at their deadline),
so a hundred waiting coroutines cost no connection attempt at all.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

import anyio

from supervisor.errors import Unavailable

__all__ = ("Admission", "Gate", "SlotGate")

Refusal = Callable[[str], Unavailable]


class Admission(enum.Enum):
    OPEN = "open"
    """Commands go straight through."""
    VERIFYING = "verifying"
    """A connection broke; every command waits for the check that follows."""
    DOWN = "down"
    """The target is not usable: commands wait (or fail at once with fail_fast)."""
    REFUSING = "refusing"
    """Waiting cannot help (a wrong password): commands fail at once."""


class _Waiting:
    """Bounded waiting for a change, the part both gates share: at most
    ``max_waiters`` at once, each until its deadline; cancellation is safe (the
    count is restored on every path).

    ``generation`` grows each time the gate reopens after an outage: the verdict a
    failed command reads off the gate (``resend.explained``).
    """

    def __init__(self, *, max_waiters: int, fail_fast: bool) -> None:
        self.generation = 0
        self.max_waiters = max_waiters
        self.fail_fast = fail_fast
        self._waiters = 0
        self._changed: anyio.Event | None = None
        self._refusal: Refusal = _default_refusal

    @property
    def waiters(self) -> int:
        return self._waiters

    def _wake(self, refusal: Refusal | None, *, changed: bool = True) -> None:
        """Keep the refusal for whoever fails next; wake the waiters only when what they
        wait for ``changed`` (a failed attempt that leaves the gate as it was wakes nobody)."""
        self._refusal = refusal or _default_refusal
        if changed and self._changed is not None:
            self._changed.set()
            self._changed = None

    def _check_refused(self) -> None:
        """Raise when waiting cannot help or is not wanted (fail_fast)."""

    async def _wait_until(self, done: Callable[[], bool], deadline: float) -> None:
        self._check_refused()
        if self._waiters >= self.max_waiters:
            raise self._refusal(f"{self._waiters} commands already wait (max_waiters)")
        self._waiters += 1
        try:
            while not done():
                if self._changed is None:
                    self._changed = anyio.Event()
                changed = self._changed
                remaining = deadline - anyio.current_time()
                if remaining <= 0:
                    raise self._refusal("command_deadline passed while waiting")
                with anyio.move_on_after(remaining):
                    await changed.wait()
                self._check_refused()
        finally:
            self._waiters -= 1


class Gate(_Waiting):
    """Lets commands through while open; makes them wait, bounded, otherwise.

    Connections made in an older ``generation`` are never handed out again.
    """

    def __init__(self, *, max_waiters: int, fail_fast: bool) -> None:
        super().__init__(max_waiters=max_waiters, fail_fast=fail_fast)
        self.is_open = False
        self.admission = Admission.DOWN

    def set(
        self, admission: Admission, refusal: Refusal | None = None, *, new_generation: bool = False
    ) -> None:
        """Change the admission; ``refusal(why)`` builds the error for refused commands."""
        if new_generation:
            self.generation += 1
        changed = admission is not self.admission
        self.admission = admission
        self.is_open = admission is Admission.OPEN
        self._wake(refusal, changed=changed)

    async def wait_open(self, deadline: float) -> None:
        """Return once the gate is open; raise ``Unavailable`` otherwise.

        ``deadline`` is on ``anyio.current_time()``'s clock. Cancellation is
        safe: the waiter count is restored on every path.
        """
        if not self.is_open:
            await self._wait_until(lambda: self.is_open, deadline)

    def _check_refused(self) -> None:
        if self.admission is Admission.REFUSING:
            raise self._refusal("waiting cannot help")
        if self.admission is Admission.DOWN and self.fail_fast:
            raise self._refusal("offline = 'fail_fast'")


def _default_refusal(why: str) -> Unavailable:
    return Unavailable(f"Redis is not available ({why})")


class SlotGate(_Waiting):
    """A cluster's admission, per hash slot: commands for the slots of a primary
    that is down wait for its failover (or fail at once with fail_fast); commands
    for every other slot go straight through. While no node answers at all, every
    command waits.

    ``closed`` is False while nothing is held back, so a healthy cluster's
    commands pay one attribute read.
    """

    def __init__(self, *, max_waiters: int, fail_fast: bool) -> None:
        super().__init__(max_waiters=max_waiters, fail_fast=fail_fast)
        self.closed = False
        self._everything = False
        self._refusing = False
        self._ranges: tuple[tuple[int, int], ...] = ()

    def set(
        self,
        ranges: tuple[tuple[int, int], ...],
        *,
        everything: bool = False,
        refusing: bool = False,
        refusal: Refusal | None = None,
        new_generation: bool = False,
    ) -> None:
        """Hold back ``ranges`` (inclusive slot ranges), or every command; refuse
        them at once when waiting cannot help (the supervisor is closed)."""
        if new_generation:
            self.generation += 1
        before = (self._ranges, self._everything, self._refusing)
        self._ranges = ranges
        self._everything = everything or refusing
        self._refusing = refusing
        self.closed = self._everything or bool(ranges)
        self._wake(refusal, changed=before != (ranges, self._everything, refusing))

    def holds(self, slot: int | None) -> bool:
        """Whether a command for ``slot`` (None: no slot of its own) is held back."""
        if self._everything:
            return True
        if slot is None:
            return False
        return any(low <= slot <= high for low, high in self._ranges)

    async def wait(self, slot: int | None, deadline: float) -> None:
        """Return once ``slot`` is served; raise ``Unavailable`` otherwise.
        Cancellation is safe: the waiter count is restored on every path."""
        if self.holds(slot):
            await self._wait_until(lambda: not self.holds(slot), deadline)

    def _check_refused(self) -> None:
        if self._refusing:
            raise self._refusal("waiting cannot help")
        if self.fail_fast:
            raise self._refusal("offline = 'fail_fast'")
