"""The exceptions an application sees from a supervised client.

Each one subclasses redis-py's ``ConnectionError`` where it stands for a
connection problem, so code written against plain ``redis.asyncio`` keeps
catching what it caught before.
"""

from __future__ import annotations

from typing import Any, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from supervisor.causes import Cause

__all__ = ("ConfigError", "OutcomeUnknown", "SupervisorError", "Unavailable")


class SupervisorError(Exception):
    """Root of every exception raised by ``supervisor`` itself."""


class ConfigError(SupervisorError, ValueError):
    """A configuration value is missing, unknown or out of range.

    The message names the key (and the file, when there is one) and says
    what a valid value looks like.
    """


class OutcomeUnknown(SupervisorError, RedisConnectionError):
    """A non-idempotent command was sent but its reply was lost.

    The server may or may not have applied it; the supervisor does not
    re-send it, because that could apply the write twice. The application
    decides: read the value back, or re-send it if it knows that is safe.
    """

    def __init__(self, command: str, reason: str) -> None:
        self.command = command
        self.reason = reason
        super().__init__(
            f"{command}: the command was sent and its reply was lost ({reason}); "
            "it may or may not have been applied, so it was not retried. Read the "
            "value back to find out, or list the command in `idempotent_commands` "
            "if re-sending it is safe."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        """Rebuilt from its own arguments, so it crosses process boundaries (pickle)."""
        return _outcome_unknown, (self.command, self.reason, _also(type(self)))


class Unavailable(SupervisorError, RedisConnectionError):
    """Redis could not be used for this command, and waiting would not help.

    Raised when the command deadline passes during an outage, when
    ``offline = "fail_fast"`` is set, when too many commands already wait,
    or when the cause (a wrong password) cannot heal by waiting.
    """

    def __init__(self, message: str, *, cause: Cause | None = None) -> None:
        self.cause = cause
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return _unavailable, (str(self), self.cause, _also(type(self)))


_E = TypeVar("_E", bound=SupervisorError)


_BLENDS: dict[tuple[type, type], type] = {}


def also_a(cls: type[_E], redis_type: type[BaseException]) -> type[_E]:
    """``cls`` that is also ``redis_type``: what the supervisor concluded, raised as the
    type redis-py raised, so ``except ReadOnlyError`` or ``except TimeoutError`` still
    catches it (a write that timed out, a LOADING that outlasted the deadline)."""
    if issubclass(cls, redis_type) or not issubclass(redis_type, RedisError):
        return cls
    known = _BLENDS.get((cls, redis_type))
    if known is not None:
        return known
    blend = type(
        cls.__name__, (cls, redis_type), {"__module__": "supervisor", "_redis_type": redis_type}
    )
    blend.__qualname__ = f"{cls.__name__}[{redis_type.__name__}]"
    _BLENDS[cls, redis_type] = blend
    return blend


def _also(cls: type[SupervisorError]) -> type[RedisError] | None:
    """The redis-py type a blend (``also_a``) also is; None for the plain classes."""
    redis_type: type[RedisError] | None = cls.__dict__.get("_redis_type")
    return redis_type


def _outcome_unknown(
    command: str, reason: str, redis_type: type[RedisError] | None
) -> OutcomeUnknown:
    cls = also_a(OutcomeUnknown, redis_type) if redis_type else OutcomeUnknown
    return cls(command, reason)


def _unavailable(
    message: str, cause: Cause | None, redis_type: type[RedisError] | None = None
) -> Unavailable:
    cls = also_a(Unavailable, redis_type) if redis_type else Unavailable
    return cls(message, cause=cause)
