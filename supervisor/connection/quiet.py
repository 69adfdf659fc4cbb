"""redis-py's own metrics count what the application did, not what the supervisor did for it.

redis-py 8.1 records an error (``redis.client.errors``) for every failed connect and every
command attempt that raises, and a close (``redis.client.connection.closed``) for every
disconnect. The supervisor connects, checks and re-sends on the application's behalf:
its background tasks are quiet (nothing of theirs is recorded), and a command is recorded
once, as redis-py records it, when its error reaches the application, not per attempt.
The filter is installed once, around redis-py's two recorders; outside a quiet context
it calls them unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import redis.asyncio.client
import redis.asyncio.cluster
import redis.asyncio.connection

__all__ = ("ERRORS", "EVERYTHING", "app_error", "install", "quiet_task")

EVERYTHING: ContextVar[bool] = ContextVar("supervisor_quiet", default=False)
"""Set for the rest of a supervisor's background task: it records nothing in redis-py's."""
ERRORS: ContextVar[bool] = ContextVar("supervisor_quiet_errors", default=False)
"""Set around one supervised command: its attempts' errors wait for ``app_error``."""

Recorder = Callable[..., Awaitable[None]]
_ORIGINAL: dict[str, Recorder] = {}
_MODULES = (redis.asyncio.connection, redis.asyncio.client, redis.asyncio.cluster)


def install() -> None:
    """Wrap redis-py's recorders once (idempotent)."""
    for module in _MODULES:
        for name, silenced_by in (
            ("record_error_count", (EVERYTHING, ERRORS)),
            ("record_connection_closed", (EVERYTHING,)),
        ):
            original = getattr(module, name, None)
            if original is None or getattr(original, "_supervisor_quiet", False):
                continue
            _ORIGINAL.setdefault(name, original)
            setattr(module, name, _filtered(original, silenced_by))


def _filtered(original: Recorder, silenced_by: tuple[ContextVar[bool], ...]) -> Recorder:
    async def record(*args: Any, **kwargs: Any) -> None:
        for var in silenced_by:
            if var.get():
                return
        await original(*args, **kwargs)

    record._supervisor_quiet = True  # type: ignore[attr-defined]
    return record


def quiet_task() -> None:
    """Make the calling task quiet for the rest of its life (tasks it starts inherit it)."""
    EVERYTHING.set(True)


async def app_error(connection_kwargs: dict[str, Any], exc: BaseException, attempts: int) -> None:
    """Record the error a supervised command raised to the application, once, as redis-py's
    ``execute_command`` does."""
    record = _ORIGINAL.get("record_error_count")
    if record is None or not isinstance(exc, Exception) or EVERYTHING.get():
        return
    host, port = connection_kwargs.get("host"), connection_kwargs.get("port")
    await record(
        server_address=host,
        server_port=port,
        network_peer_address=host,
        network_peer_port=port,
        error_type=exc,
        retry_attempts=attempts,
        is_internal=False,
    )
