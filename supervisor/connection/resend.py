"""What a failed command proves, and so whether it may be sent again.

Every failure on the command path is one of five kinds, told apart by what it
proves about the command:

- ``NOT_SENT``: no connection could be made (or the pool had none to give); the
  command never left the client.
- ``REFUSED``: a cluster refused it unexecuted (``CLUSTERDOWN``, ``TRYAGAIN``, a slot
  with no node): it may go again once the topology settles.
- ``LOST``: the connection broke after the command was sent; its reply is lost.
- ``TIMED_OUT``: no reply within ``socket_timeout``; the server may still be
  running the command, so only an outage found by the supervisor's own check
  explains it.
- ``CLAIM``: an error reply that says something about the whole target
  (``LOADING``, ``READONLY``): true after a restart or a failover, but any server
  can send it (``DEBUG ERROR``, a module, a replica that always was one). The
  supervisor checks it before the command acts on it.
- ``ANSWER``: any other error reply. The server answered; it stands as redis-py
  raised it.

``may_resend`` is the one rule both ``Supervisor`` and ``ClusterSupervisor`` follow.
The supervisor's check ends in a verdict the command can read off the gate: a
new generation means the check found an outage (the server stopped answering,
is loading, or became a replica), the same one means the target is as it was.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    ClusterDownError,
    MaxConnectionsError,
    ReadOnlyError,
    RedisClusterException,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from supervisor.causes import Cause
from supervisor.connection.pool import NotSent

__all__ = (
    "Failure",
    "blocking_timeout",
    "claim_of",
    "explained",
    "failure_of",
    "may_resend",
    "needs_verdict",
    "stands",
)


class Failure(Enum):
    NOT_SENT = "not sent"
    REFUSED = "refused"
    LOST = "lost"
    TIMED_OUT = "timed out"
    CLAIM = "claim"
    ANSWER = "answer"


_ANSWERS = (ResponseError, AuthenticationError, BusyLoadingError)
"""What redis-py's parsers raise for an error reply (``AuthenticationError`` and
``BusyLoadingError`` subclass ``ConnectionError``, yet the server sent them)."""


_REFUSED = (ClusterDownError, TryAgainError, SlotNotCoveredError)


def failure_of(exc: BaseException) -> Failure:
    if isinstance(exc, (NotSent, MaxConnectionsError)):
        return Failure.NOT_SENT
    if isinstance(exc, _REFUSED):
        return Failure.REFUSED
    if isinstance(exc, (RedisConnectionError, RedisClusterException)):
        # redis-py words a failed connect "Error ... connecting to host:port" (the
        # cluster client connects outside any pool of ours)
        text = str(exc)
        if "connecting to" in text or "cannot be connected" in text:
            return Failure.NOT_SENT
        if isinstance(exc, RedisClusterException):
            return Failure.ANSWER  # any other cluster exception is its own verdict
    if isinstance(exc, (BusyLoadingError, ReadOnlyError)):
        return Failure.CLAIM
    if isinstance(exc, _ANSWERS):
        return Failure.ANSWER
    if isinstance(exc, RedisTimeoutError):
        return Failure.TIMED_OUT
    return Failure.LOST


def may_resend(failure: Failure, retryable: bool) -> bool:
    """Whether sending the command again cannot apply it twice: it never left the
    client, the server refused it unexecuted (a confirmed claim, a cluster refusal), or
    it only reads (``retryable``). A read that timed out goes again only once the
    supervisor found an outage that explains the timeout."""
    return failure in (Failure.NOT_SENT, Failure.REFUSED, Failure.CLAIM) or retryable


def stands(failure: Failure, timed_out_before: bool) -> bool:
    """The error is the command's own, whatever the supervisor finds: an answer, or a
    second timeout of the same command (a slow command stays slow)."""
    return failure is Failure.ANSWER or (failure is Failure.TIMED_OUT and timed_out_before)


def needs_verdict(failure: Failure) -> bool:
    """A timeout or a claim: only the supervisor's check can tell an outage from the
    command's own slowness, or a true claim from any server's error reply."""
    return failure in (Failure.TIMED_OUT, Failure.CLAIM)


def explained(failure: Failure, generation: int, now: int) -> bool:
    """Whether the command may go again once the check after its failure is done: a
    failure that needs a verdict only when the check found an outage (the gate's
    ``generation`` went from ``generation`` to ``now``); a check that found the target
    as it was leaves the error the command's own."""
    return not needs_verdict(failure) or now != generation


def claim_of(exc: BaseException) -> Cause:
    """The target-wide state an error reply claims."""
    return Cause.READONLY if isinstance(exc, ReadOnlyError) else Cause.LOADING


def _last(args: tuple[Any, ...]) -> float:
    return float(args[-1])


def _first(args: tuple[Any, ...]) -> float:
    return float(args[1])


def _last_ms(args: tuple[Any, ...]) -> float:
    return float(args[-1]) / 1000


def _block_option(args: tuple[Any, ...]) -> float:
    for i, arg in enumerate(args[:-1]):
        word = arg.decode("latin-1") if isinstance(arg, bytes) else arg
        if isinstance(word, str) and word.upper() == "BLOCK":
            return float(args[i + 1]) / 1000
    raise ValueError("no BLOCK option")


_BLOCKING = {
    "BLPOP": _last,
    "BRPOP": _last,
    "BRPOPLPUSH": _last,
    "BLMOVE": _last,
    "BZPOPMIN": _last,
    "BZPOPMAX": _last,
    "BLMPOP": _first,
    "BZMPOP": _first,
    "WAIT": _last_ms,
    "WAITAOF": _last_ms,
    "XREAD": _block_option,
    "XREADGROUP": _block_option,
}
BLOCKING = frozenset(_BLOCKING)
"""Commands that wait on the server by design, for their own timeout."""


def blocking_timeout(args: tuple[Any, ...]) -> float | None:
    """Seconds a blocking command waits on the server (0: forever); None when this
    call does not block (``XREAD`` without ``BLOCK``) or its timeout is unreadable."""
    read = _BLOCKING.get(str(args[0]).upper())
    if read is None:
        return None
    try:
        return max(0.0, read(args))
    except (ValueError, TypeError, IndexError):
        return None
