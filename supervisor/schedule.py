"""When the prober tries again: the wait follows what the last attempt showed.

- ``REFUSED``: nothing listens (the host answered the connect with a reset, or the
  socket file is missing). That costs the server nothing, and it is how a
  restarting server looks until it binds its port, so the next attempt comes
  after ``refused_interval`` (jittered), without growing: the target is back
  within a few milliseconds of accepting.
- ``TURNED_AWAY``: something accepted and then said no (``maxclients``,
  ``LOADING``, a reset or no reply during the handshake, a replica where a
  master is needed, no sentinel answer). Each attempt costs the server or
  the network, so the wait grows from ``backoff_base`` to ``backoff_cap``
  with jitter.
- ``AUTH``: waiting does not fix a password; ``auth_retry_interval``.

Evidence that the target may be back (a Sentinel announcement) cuts any
wait short: that is the caller's ``hint``, not part of the schedule.
"""

from __future__ import annotations

import enum
import random

from supervisor.backoff import Backoff, Jitter
from supervisor.causes import Cause

__all__ = ("Schedule", "Showed", "showed_by")


class Showed(enum.Enum):
    """What a failed connection attempt showed about the target."""

    REFUSED = "refused"
    TURNED_AWAY = "turned_away"
    AUTH = "auth"


def showed_by(exc: BaseException, cause: Cause) -> Showed:
    """Classify a failed connect: redis-py raises its own ``ConnectionError`` inside the
    ``except OSError``, so the kernel's answer is in the exception's context."""
    if cause is Cause.AUTH:
        return Showed.AUTH
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            break
        if isinstance(seen, (ConnectionRefusedError, FileNotFoundError)):
            return Showed.REFUSED
        seen = seen.__cause__ or seen.__context__
    return Showed.REFUSED if "connection refused" in str(exc).lower() else Showed.TURNED_AWAY


class Schedule:
    """Delays between connection attempts, chosen by what each attempt showed."""

    def __init__(
        self,
        *,
        refused_interval: float,
        backoff_base: float,
        backoff_cap: float,
        jitter: Jitter,
        auth_retry_interval: float,
        rng: random.Random | None = None,
    ) -> None:
        self._rng = rng or random.Random()
        self._refused = refused_interval
        self._auth = auth_retry_interval
        self._backoff = Backoff(backoff_base, backoff_cap, jitter=jitter, rng=self._rng)
        self.attempts = 0
        """Failed attempts since the last success."""

    def next_delay(self, showed: Showed) -> float:
        """Count a failed attempt and return the wait before the next one."""
        self.attempts += 1
        if showed is Showed.REFUSED:
            return self._rng.uniform(self._refused / 2, self._refused)
        if showed is Showed.AUTH:
            return self._auth
        return self._backoff.next_delay()

    def reset(self) -> None:
        """A connection worked: the next failure starts from the shortest wait."""
        self.attempts = 0
        self._backoff.reset()
