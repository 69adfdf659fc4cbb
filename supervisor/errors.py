"""The exceptions an application sees from a supervised client.

Each one subclasses redis-py's ``ConnectionError`` where it stands for a
connection problem, so code written against plain ``redis.asyncio`` keeps
catching what it caught before.
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

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
            f"{command}: the connection was lost after the command was sent and "
            f"before its reply arrived ({reason}); it may or may not have been "
            "applied, so it was not retried. Read the value back to find out, or "
            "list the command in `idempotent_commands` if re-sending it is safe."
        )

    def __reduce__(self) -> tuple[type[OutcomeUnknown], tuple[str, str]]:
        """Rebuilt from its own arguments, so it crosses process boundaries (pickle)."""
        return type(self), (self.command, self.reason)


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
        return _unavailable, (str(self), self.cause)


def _unavailable(message: str, cause: Cause | None) -> Unavailable:
    return Unavailable(message, cause=cause)
