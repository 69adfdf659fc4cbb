"""One timer knocks for every target of a process that has been refused for a while.

A long refused outage is a bare non-blocking connect every ``REFUSED_SLOW``: cheap
for one target, yet each wake of a prober is a task step, a timer and a schedule.
With many targets down (a monitoring process for a fleet) those wakes are what the
process pays. The doorbell rings once per period for all of them: one loop callback
opens a socket per target, reads a refusal synchronously where the host answers at
once (loopback, the same host) or through ``add_writer`` otherwise, and wakes only
the prober whose target accepts. The period grows with the number of targets, so the
knocks stay within a fixed share of a core whatever their number.

The timer runs only while someone waits: the last prober to leave cancels it.
"""

from __future__ import annotations

import asyncio
import errno
import random
import socket
import weakref
from collections.abc import Callable
from typing import Any, ClassVar

__all__ = ("KNOCK_SHARE", "Doorbell", "Watch")

KNOCK_SHARE = 0.0005
"""Seconds of period per target waiting: 100 targets are knocked every 50 ms."""

_REFUSED = (errno.ECONNREFUSED, errno.ENOENT)


class Watch:
    """One prober's wait: ``refused`` is called for each refused knock, ``answered``
    once when something other than a refusal came back (the prober then tries)."""

    __slots__ = ("address", "answered", "due", "family", "interval", "refused", "sock")

    def __init__(
        self,
        family: int,
        address: Any,
        interval: float,
        refused: Callable[[], None],
        answered: Callable[[], None],
    ) -> None:
        self.family = family
        self.address = address
        self.interval = interval
        self.refused = refused
        self.answered = answered
        self.due = 0.0
        self.sock: socket.socket | None = None


class Doorbell:
    """The knocking of one event loop's refused targets (``for_loop``)."""

    _bells: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Doorbell]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, period: float) -> None:
        self._loop = loop
        self._period = period
        self._watches: dict[Watch, None] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._rng = random.Random()

    @classmethod
    def for_loop(cls, period: float) -> Doorbell:
        """The running loop's doorbell (``period``: the shortest wait between knocks)."""
        loop = asyncio.get_running_loop()
        bell = cls._bells.get(loop)
        if bell is None:
            bell = cls._bells[loop] = cls(loop, period)
        return bell

    @property
    def waiting(self) -> int:
        return len(self._watches)

    def period(self) -> float:
        return max(self._period, len(self._watches) * KNOCK_SHARE)

    def watch(self, watch: Watch) -> None:
        """Knock for ``watch`` from the next ring on, until ``leave``."""
        watch.due = self._loop.time() + watch.interval - self.period()
        self._watches[watch] = None
        if self._timer is None:
            self._arm()

    def leave(self, watch: Watch) -> None:
        self._settle(watch)
        self._watches.pop(watch, None)
        if not self._watches and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self) -> None:
        period = self.period()
        self._timer = self._loop.call_later(self._rng.uniform(0.8 * period, period), self._ring)

    def _ring(self) -> None:
        now = self._loop.time()
        for watch in list(self._watches):
            if watch.sock is not None:
                self._settle(watch)  # no answer within a period: the prober decides
                self._answered(watch)
            elif watch.due <= now:
                watch.due = now + watch.interval - self.period()
                self._knock(watch)
        if self._watches:
            self._arm()

    def _knock(self, watch: Watch) -> None:
        sock = socket.socket(watch.family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            code = sock.connect_ex(watch.address)
        except OSError as exc:
            code = exc.errno or errno.EIO
        if code == errno.EINPROGRESS:
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code == 0:
                watch.sock = sock
                self._loop.add_writer(sock.fileno(), self._connected, watch)
                return
        sock.close()
        if code in _REFUSED:
            watch.refused()
        else:
            self._answered(watch)

    def _connected(self, watch: Watch) -> None:
        sock = watch.sock
        if sock is None:
            return
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        self._settle(watch)
        if code in _REFUSED:
            watch.refused()
        else:
            self._answered(watch)

    def _settle(self, watch: Watch) -> None:
        sock, watch.sock = watch.sock, None
        if sock is not None:
            self._loop.remove_writer(sock.fileno())
            sock.close()

    def _answered(self, watch: Watch) -> None:
        if watch in self._watches:
            self.leave(watch)
            watch.answered()
