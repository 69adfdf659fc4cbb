"""Backoff delays, with a seeded random source instead of sleeps."""

from __future__ import annotations

import random

import pytest

from supervisor.connection.backoff import Backoff


class TestFullJitter:
    def test_delays_stay_between_base_and_the_growing_ceiling(self):
        """Attempt n waits uniform(base, min(cap, base * 2**n))."""
        backoff = Backoff(0.1, 5.0, jitter="full", rng=random.Random(1))
        for attempt in range(20):
            delay = backoff.next_delay()
            assert 0.1 <= delay <= min(5.0, 0.1 * 2**attempt)

    def test_same_seed_same_delays(self):
        """A seeded source makes the schedule reproducible."""
        a = Backoff(0.1, 5.0, rng=random.Random(42))
        b = Backoff(0.1, 5.0, rng=random.Random(42))
        assert [a.next_delay() for _ in range(10)] == [b.next_delay() for _ in range(10)]

    def test_reaches_the_cap_and_stays_under_it(self):
        """Late attempts are spread over [base, cap], never above cap."""
        backoff = Backoff(0.1, 2.0, jitter="full", rng=random.Random(3))
        delays = [backoff.next_delay() for _ in range(200)][10:]
        assert max(delays) <= 2.0
        assert max(delays) > 1.5

    def test_jitter_spreads_processes_apart(self):
        """Two processes with different seeds do not retry in lockstep."""
        a = Backoff(0.1, 5.0, rng=random.Random(1))
        b = Backoff(0.1, 5.0, rng=random.Random(2))
        assert [a.next_delay() for _ in range(5)] != [b.next_delay() for _ in range(5)]

    def test_reset_starts_again_from_base(self):
        """After a success the next delay is small again."""
        backoff = Backoff(0.1, 5.0, jitter="full", rng=random.Random(5))
        for _ in range(10):
            backoff.next_delay()
        backoff.reset()
        assert backoff.attempt == 0
        assert backoff.next_delay() == pytest.approx(0.1)


class TestDecorrelatedJitter:
    def test_delays_bounded_by_base_and_cap(self):
        """Each delay is in [base, cap] and at most three times the previous one."""
        backoff = Backoff(0.05, 1.0, jitter="decorrelated", rng=random.Random(9))
        previous = 0.05
        for _ in range(100):
            delay = backoff.next_delay()
            assert 0.05 <= delay <= 1.0
            assert delay <= previous * 3 + 1e-9
            previous = delay


def test_rejects_bad_bounds():
    """base must be positive and not above cap."""
    with pytest.raises(ValueError, match="base"):
        Backoff(0, 1)
    with pytest.raises(ValueError, match="base"):
        Backoff(2, 1)
