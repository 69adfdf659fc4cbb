"""``SupervisedRedis``: a real ``redis.asyncio.Redis`` whose failures are handled.

The happy path is redis-py's own; this class only adds a ``try``. When a
command fails on a broken connection, it is sent again after the supervisor
has restored the connection, but only if sending it twice cannot do harm:
it never left the client, the server refused it unexecuted (LOADING, or
READONLY after a failover), or it only reads. Anything else raises
``OutcomeUnknown``. Pipelines follow the same rule as a whole.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import BusyLoadingError, ReadOnlyError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from supervisor.causes import Cause
from supervisor.commands import READ_ONLY, command_name
from supervisor.errors import OutcomeUnknown, SupervisorError, Unavailable
from supervisor.losses import Loss, describe
from supervisor.pool import NotSent, SupervisedConnectionPool
from supervisor.schedule import Showed

__all__ = ("SupervisedPipeline", "SupervisedRedis")

_ATTEMPTS = 3
_NOT_OURS = (SupervisorError,)
_NOT_APPLIED = (NotSent, BusyLoadingError, ReadOnlyError)
_RECOVERABLE = (RedisConnectionError, RedisTimeoutError, ReadOnlyError)
_RECOVERABLE_BATCH = (RedisConnectionError, RedisTimeoutError)


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
        except _RECOVERABLE as exc:
            if isinstance(exc, _NOT_OURS):
                raise
            name = command_name(args)
            send: Callable[..., Awaitable[Any]] = super().execute_command
            return await self._recover(
                name, name in self._retryable, lambda: send(*args, **options), exc
            )

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        return SupervisedPipeline(self, transaction, shard_hint)

    async def _recover(
        self, name: str, retryable: bool, again: Callable[[], Awaitable[Any]], exc: Exception
    ) -> Any:
        """Report the failure; re-send once the gate reopens if that cannot apply a
        write twice, up to ``_ATTEMPTS`` times within the command deadline."""
        watcher = self._supervised_pool._watcher
        deadline = anyio.current_time() + watcher.command_deadline
        for _ in range(_ATTEMPTS):
            cause = Cause.READONLY if isinstance(exc, ReadOnlyError) else None
            stalled = isinstance(exc, RedisTimeoutError)
            turned_away = isinstance(exc, NotSent) and exc.showed is Showed.TURNED_AWAY
            loss = Loss(
                describe(exc),
                None,
                command_failed=True,
                cause=cause,
                stalled=stalled,
                turned_away=turned_away,
            )
            watcher.connection_lost(loss)
            if not isinstance(exc, _NOT_APPLIED) and not retryable:
                raise OutcomeUnknown(name, describe(exc)) from exc
            await watcher.gate.wait_open(deadline)
            try:
                return await again()
            except _RECOVERABLE as failed:
                if isinstance(failed, _NOT_OURS):
                    raise
                exc = failed
        raise Unavailable(
            f"{name}: failed on {_ATTEMPTS} fresh connections in a row; last error: {describe(exc)}"
        ) from exc


class SupervisedPipeline(Pipeline):
    """A pipeline (or MULTI/EXEC transaction) re-sent only when that is safe.

    Safe means: no connection could be made, or every queued command only
    reads. A pipeline under ``WATCH`` is never re-sent: its optimistic lock
    belongs to the lost connection.
    """

    def __init__(self, client: SupervisedRedis, transaction: bool, shard_hint: str | None) -> None:
        super().__init__(client.connection_pool, client.response_callbacks, transaction, shard_hint)
        self._client = client

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        stack = list(self.command_stack)
        watching = self.watching
        try:
            return await super().execute(raise_on_error)
        except _RECOVERABLE_BATCH as exc:
            if isinstance(exc, _NOT_OURS) or watching or not stack:
                raise
            names = [command_name(args) for args, _ in stack]
            label = ("MULTI " if self.is_transaction else "PIPELINE ") + " ".join(names)
            retryable = all(n in self._client._retryable for n in names)

            async def again() -> list[Any]:
                self.command_stack = list(stack)
                return await Pipeline.execute(self, raise_on_error)

            result: list[Any] = await self._client._recover(label, retryable, again, exc)
            return result
