"""``SupervisedRedis``: a real ``redis.asyncio.Redis`` whose failures are handled.

The happy path is redis-py's own; this class only adds a ``try``. When a
command fails on a broken connection, it is sent again after the supervisor
has restored the connection, but only if sending it twice cannot do harm:
it never left the client, the server refused it unexecuted (LOADING), or it
only reads. Anything else raises ``OutcomeUnknown``.
"""

from __future__ import annotations

from typing import Any

import anyio
from redis.asyncio import Redis
from redis.exceptions import BusyLoadingError, MaxConnectionsError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from supervisor.commands import READ_ONLY, command_name
from supervisor.errors import OutcomeUnknown, SupervisorError, Unavailable
from supervisor.losses import Loss, describe
from supervisor.pool import NotSent, SupervisedConnectionPool

__all__ = ("SupervisedRedis",)

_ATTEMPTS = 3
_NOT_OURS = (SupervisorError, MaxConnectionsError)
_NOT_APPLIED = (NotSent, BusyLoadingError)


class SupervisedRedis(Redis):
    """The client a ``Supervisor`` hands out as ``sup.client``."""

    def __init__(
        self, *, connection_pool: SupervisedConnectionPool, idempotent: frozenset[str]
    ) -> None:
        super().__init__(connection_pool=connection_pool)
        self._supervised_pool = connection_pool
        self._retryable = READ_ONLY | idempotent

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        try:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        except (RedisConnectionError, RedisTimeoutError) as exc:
            if isinstance(exc, _NOT_OURS):
                raise
            return await self._recover(args, options, exc)

    async def _recover(self, args: tuple[Any, ...], options: dict[str, Any], exc: Exception) -> Any:
        pool = self._supervised_pool
        watcher = pool._watcher
        name = command_name(args)
        deadline = anyio.current_time() + watcher.command_deadline
        for _ in range(_ATTEMPTS):
            watcher.connection_lost(Loss(describe(exc), None, command_failed=True))
            if not isinstance(exc, _NOT_APPLIED) and name not in self._retryable:
                raise OutcomeUnknown(name, describe(exc)) from exc
            await watcher.gate.wait_open(deadline)
            try:
                return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
            except (RedisConnectionError, RedisTimeoutError) as again:
                if isinstance(again, _NOT_OURS):
                    raise
                exc = again
        raise Unavailable(
            f"{name}: failed on {_ATTEMPTS} fresh connections in a row; last error: {describe(exc)}"
        ) from exc
