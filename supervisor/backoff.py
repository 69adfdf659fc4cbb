"""Jittered exponential backoff between reconnect attempts.

Jitter keeps a fleet of processes that lost Redis at the same moment from
reconnecting in lockstep. The three variants are from the AWS architecture blog
"Exponential Backoff And Jitter"; the random source is injected so tests
can seed it instead of sleeping.
"""

from __future__ import annotations

import random
from typing import Literal

__all__ = ("Backoff", "Jitter")

Jitter = Literal["equal", "full", "decorrelated"]


class Backoff:
    """Delays for successive attempts, between ``base`` and ``cap`` seconds.

    ``equal``: ``uniform(x / 2, x)`` with ``x = min(cap, base * 2**attempt)``: never
    shorter than half the ceiling, so late attempts stay close to ``cap`` apart.
    ``full``: ``uniform(base, min(cap, base * 2**attempt))``.
    ``decorrelated``: ``min(cap, uniform(base, previous * 3))``.
    """

    def __init__(
        self,
        base: float,
        cap: float,
        *,
        jitter: Jitter = "equal",
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
        if self.jitter == "equal":
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
