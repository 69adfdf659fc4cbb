"""When the prober tries again: the wait follows what the last attempt showed.

- ``REFUSED``: nothing listens (the host answered the connect with a reset, or the
  socket file is missing). That costs the server nothing, and it is how a
  restarting server looks until it binds its port, so the next attempt comes
  after ``refused_interval`` (jittered): a restart is over within a few
  milliseconds of the server accepting. Refused for longer than
  ``REFUSED_FAST_FOR``, the server is down rather than restarting: the wait
  becomes ``REFUSED_SLOW`` (unless ``refused_interval`` is longer), so a long
  outage costs about 50 bare connects a second, and the first success comes
  within ``REFUSED_SLOW`` of the server accepting.
- ``TURNED_AWAY``: something accepted and then said no (``maxclients``,
  ``LOADING``, a reset or no reply during the handshake, a replica where a
  master is needed, no sentinel answer). Each attempt costs the server or
  the network, so the wait grows from ``backoff_base`` to ``backoff_cap``
  with jitter.
- ``AUTH`` and ``TLS``: waiting does not fix a password, a certificate or a scheme
  that does not match the port; ``auth_retry_interval``.

Evidence that the target may be back (a Sentinel announcement) cuts any
wait short: that is the caller's ``hint``, not part of the schedule.
"""

from __future__ import annotations

import enum
import random
import time

from supervisor.causes import Cause
from supervisor.connection.backoff import Backoff, Jitter

__all__ = ("REFUSED_FAST_FOR", "REFUSED_SLOW", "Schedule", "Showed", "showed_by")

REFUSED_FAST_FOR = 1.0
"""Seconds of refused attempts tried every ``refused_interval``: a restart's gap."""
REFUSED_SLOW = 0.02
"""The longest wait between refused attempts after that (the doorbell's period)."""


class Showed(enum.Enum):
    """What a failed connection attempt showed about the target."""

    REFUSED = "refused"
    TURNED_AWAY = "turned_away"
    AUTH = "auth"
    TLS = "tls"
    SETUP = "setup"


def showed_by(exc: BaseException, cause: Cause) -> Showed:
    """Classify a failed connect: redis-py raises its own ``ConnectionError`` inside the
    ``except OSError``, so the kernel's answer is in the exception's context."""
    if cause is Cause.AUTH:
        return Showed.AUTH
    if cause is Cause.TLS:
        return Showed.TLS
    if cause is Cause.SETUP:
        return Showed.SETUP
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            break
        if isinstance(seen, (ConnectionRefusedError, FileNotFoundError)):
            return Showed.REFUSED
        seen = seen.__cause__ or seen.__context__
    return Showed.REFUSED if "connection refused" in str(exc).lower() else Showed.TURNED_AWAY


_FINAL = frozenset({Showed.AUTH, Showed.TLS, Showed.SETUP})
"""What waiting does not fix: asked again only every ``auth_retry_interval``."""


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
        self._refused_since: float | None = None

    def next_delay(self, showed: Showed) -> float:
        """Count a failed attempt and return the wait before the next one."""
        self.attempts += 1
        if showed is Showed.REFUSED:
            now = time.monotonic()
            if self._refused_since is None:
                self._refused_since = now
            wait = self._refused
            if now - self._refused_since >= REFUSED_FAST_FOR:
                wait = max(wait, REFUSED_SLOW)
            return self._rng.uniform(wait / 2, wait)
        self._refused_since = None
        if showed in _FINAL:
            return self._auth
        return self._backoff.next_delay()

    @property
    def refused_slowly(self) -> bool:
        """Refused for longer than a restart's gap: the target is down."""
        since = self._refused_since
        return since is not None and time.monotonic() - since >= REFUSED_FAST_FOR

    def reset(self) -> None:
        """A connection worked: the next failure starts from the shortest wait."""
        self.attempts = 0
        self._refused_since = None
        self._backoff.reset()
