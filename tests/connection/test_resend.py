"""The one re-send rule both supervisors follow: what each failure proves."""

from __future__ import annotations

import pytest
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    ClusterDownError,
    MaxConnectionsError,
    NoPermissionError,
    ReadOnlyError,
    RedisClusterException,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from supervisor.connection.pool import NotSent
from supervisor.connection.resend import Failure, blocking_timeout, failure_of, may_resend
from supervisor.connection.schedule import Showed


@pytest.mark.parametrize(
    ("exc", "failure"),
    [
        (NotSent("refused", showed=Showed.REFUSED), Failure.NOT_SENT),
        (MaxConnectionsError("too many"), Failure.NOT_SENT),
        (RedisConnectionError("Error 111 connecting to 127.0.0.1:7000."), Failure.NOT_SENT),
        (RedisClusterException("Redis Cluster cannot be connected."), Failure.NOT_SENT),
        (ClusterDownError("CLUSTERDOWN"), Failure.REFUSED),
        (TryAgainError("TRYAGAIN"), Failure.REFUSED),
        (SlotNotCoveredError("slot 7 not covered"), Failure.REFUSED),
        (RedisConnectionError("Connection closed by server."), Failure.LOST),
        (RedisTimeoutError("Timeout reading from socket"), Failure.TIMED_OUT),
        (BusyLoadingError("LOADING"), Failure.CLAIM),
        (ReadOnlyError("READONLY"), Failure.CLAIM),
        (AuthenticationError("WRONGPASS"), Failure.ANSWER),
        (NoPermissionError("NOPERM"), Failure.ANSWER),
        (ResponseError("WRONGTYPE"), Failure.ANSWER),
        (RedisClusterException("No way to dispatch this command"), Failure.ANSWER),
    ],
)
def test_each_failure_is_what_it_proves(exc, failure):
    assert failure_of(exc) is failure


def test_only_what_cannot_apply_twice_is_resent():
    """Never sent, refused unexecuted or a confirmed claim: always; lost or timed out:
    only a read."""
    for failure in (Failure.NOT_SENT, Failure.REFUSED, Failure.CLAIM):
        assert may_resend(failure, retryable=False)
    for failure in (Failure.LOST, Failure.TIMED_OUT):
        assert not may_resend(failure, retryable=False)
        assert may_resend(failure, retryable=True)


@pytest.mark.parametrize(
    ("args", "seconds"),
    [
        (("BLPOP", "a", "b", 3), 3.0),
        (("BLMPOP", 2.5, 1, "a", "LEFT"), 2.5),
        (("WAIT", 1, 500), 0.5),
        (("XREAD", "BLOCK", 800, "STREAMS", "s", "$"), 0.8),
        (("XREAD", "COUNT", 1, "STREAMS", "s", "$"), None),
        (("GET", "k"), None),
        (("BLPOP", "a", "soon"), None),
    ],
)
def test_blocking_timeout_is_read_from_the_arguments(args, seconds):
    assert blocking_timeout(args) == seconds
