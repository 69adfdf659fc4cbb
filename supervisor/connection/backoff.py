"""Jittered exponential backoff between reconnect attempts.

Jitter keeps a fleet of processes that lost Redis at the same moment from
reconnecting in lockstep. ``equal``, ``full`` and ``decorrelated`` are from the
AWS architecture blog "Exponential Backoff And Jitter"; ``narrow`` keeps waits
close to their ceiling. The random source is injected so tests can seed it
instead of sleeping.
"""

from __future__ import annotations

import random
from typing import Literal

__all__ = ("Backoff", "Jitter")

Jitter = Literal["narrow", "equal", "full", "decorrelated"]


class Backoff:
    """Delays for successive attempts, between ``base`` and ``cap`` seconds.

    With ``x = min(cap, base * 2**attempt)``:
    ``narrow``: ``uniform(0.8 * x, x)``: every wait within a fifth of its ceiling, so
    ``cap`` bounds how late a process notices that the target is back while its
    attempts stay as few as that bound allows; a fifth still spreads a fleet apart.
    ``equal``: ``uniform(x / 2, x)``.
    ``full``: ``uniform(base, min(cap, base * 2**attempt))``.
    ``decorrelated``: ``min(cap, uniform(base, previous * 3))``.
    """

    def __init__(
        self,
        base: float,
        cap: float,
        *,
        jitter: Jitter = "narrow",
        rng: random.Random | None = None,
    ) -> None:
        if not 0 < base <= cap:
            raise ValueError(f"backoff needs 0 < base <= cap, got base={base} cap={cap}")
        self.base = base
        self.cap = cap
        self.jitter = jitter
        self._rng = rng or random.Random()
        self.attempt = 0
        self._previous = base

    def next_delay(self) -> float:
        """Return the delay before the next attempt and count the attempt."""
        high = min(self.cap, self.base * 2.0 ** min(self.attempt, 62))
        if self.jitter == "narrow":
            delay = self._rng.uniform(high * 0.8, high)
        elif self.jitter == "equal":
            delay = self._rng.uniform(high / 2, high)
        elif self.jitter == "full":
            delay = self._rng.uniform(self.base, high)
        else:
            delay = min(self.cap, self._rng.uniform(self.base, self._previous * 3.0))
        self._previous = delay
        self.attempt += 1
        return delay

    def reset(self) -> None:
        """Start again from ``base``: call it once a connection works."""
        self.attempt = 0
        self._previous = self.base
