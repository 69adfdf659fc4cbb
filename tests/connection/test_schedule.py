"""The reconnect schedule follows what each attempt showed (seeded, no sleeps)."""

from __future__ import annotations

import random

from supervisor.causes import Cause
from supervisor.connection.schedule import Schedule, Showed, showed_by


def schedule(seed: int = 1) -> Schedule:
    return Schedule(
        refused_interval=0.02,
        backoff_base=0.2,
        backoff_cap=0.5,
        jitter="equal",
        auth_retry_interval=5.0,
        rng=random.Random(seed),
    )


def test_refused_attempts_never_grow():
    """Nothing listens: every wait stays within refused_interval, however many attempts."""
    s = schedule()
    delays = [s.next_delay(Showed.REFUSED) for _ in range(1000)]
    assert all(0.01 <= d <= 0.02 for d in delays)
    assert s.attempts == 1000


def test_turned_away_attempts_grow_to_the_cap_and_stay_near_it():
    """Accepted then refused: the wait grows from backoff_base and, with equal jitter,
    late waits stay within [cap / 2, cap]."""
    s = schedule()
    delays = [s.next_delay(Showed.TURNED_AWAY) for _ in range(50)]
    assert 0.1 <= delays[0] <= 0.2
    assert all(0.25 <= d <= 0.5 for d in delays[5:])


def test_refused_after_turned_away_is_fast_again():
    """A port that stops accepting (the server went down) is retried fast at once."""
    s = schedule()
    for _ in range(10):
        s.next_delay(Showed.TURNED_AWAY)
    assert s.next_delay(Showed.REFUSED) <= 0.02


def test_auth_waits_the_fixed_interval_and_reset_starts_over():
    s = schedule()
    assert s.next_delay(Showed.AUTH) == 5.0
    assert s.next_delay(Showed.TLS) == 5.0
    for _ in range(10):
        s.next_delay(Showed.TURNED_AWAY)
    s.reset()
    assert s.attempts == 0
    assert s.next_delay(Showed.TURNED_AWAY) <= 0.2


def test_classifies_the_kernel_answer_inside_redis_py_errors():
    """redis-py raises its ConnectionError inside ``except OSError``: the refusal is
    found in the context; anything else that failed after an accept is turned away."""

    def raised_inside(inner: BaseException) -> BaseException:
        try:
            try:
                raise inner
            except OSError:
                raise ConnectionError("Error 111 connecting to 127.0.0.1:1.") from None
        except ConnectionError as exc:
            exc.__context__ = inner
            return exc

    refused = raised_inside(ConnectionRefusedError(111, "Connection refused"))
    assert showed_by(refused, Cause.NETWORK) is Showed.REFUSED
    reset = raised_inside(ConnectionResetError(104, "Connection reset by peer"))
    assert showed_by(reset, Cause.NETWORK) is Showed.TURNED_AWAY
    full = ConnectionError("max number of clients reached")
    assert showed_by(full, Cause.MAXCLIENTS) is Showed.TURNED_AWAY
    assert showed_by(ConnectionError("WRONGPASS"), Cause.AUTH) is Showed.AUTH
    assert showed_by(ConnectionError("[SSL: WRONG_VERSION_NUMBER]"), Cause.TLS) is Showed.TLS
