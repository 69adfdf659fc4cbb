"""``SupervisedRedis``: a real ``redis.asyncio.Redis`` whose failures are handled.

The happy path is redis-py's own; this class only adds a ``try``. What a
failure proves (``supervisor.connection.resend``) decides what follows: an error reply
stands as redis-py raised it; one that claims the target is loading or a
replica stands unless the supervisor's check confirms it; a command is sent
again only when that cannot apply a write twice: it never left the client,
the server refused it unexecuted, or it only reads. Anything else raises
``OutcomeUnknown``. Pipelines follow the same rule as a whole.

Built on a pool that is not a supervisor's (``from_url()``, ``from_pool()``),
it is plain redis-py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.client import NEVER_DECODE
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from supervisor.connection.autopipeline import Multiplexer, may_pipeline
from supervisor.connection.cache import ClientCache, ReadTimedOut
from supervisor.connection.cacheable import CACHEABLE
from supervisor.connection.commands import READ_ONLY, command_name, reads_only
from supervisor.connection.losses import Loss, Reported, Watcher, describe
from supervisor.connection.pool import NotSent, SupervisedConnectionPool
from supervisor.connection.quiet import ERRORS as quiet_errors
from supervisor.connection.quiet import app_error
from supervisor.connection.resend import (
    BLOCKING,
    Failure,
    blocking_timeout,
    claim_of,
    explained,
    failure_of,
    may_resend,
    needs_verdict,
    stands,
)
from supervisor.connection.schedule import Showed
from supervisor.errors import OutcomeUnknown, SupervisorError, Unavailable, also_a

__all__ = ("SupervisedPipeline", "SupervisedRedis")

_ATTEMPTS = 3
_NOT_OURS = (SupervisorError,)
_FAILURES = (RedisConnectionError, RedisTimeoutError, ReadOnlyError)
_FAILURES_BATCH = (RedisConnectionError, RedisTimeoutError)


class SupervisedRedis(Redis):
    """The client a ``Supervisor`` hands out as ``sup.client``.

    It takes redis-py's constructor arguments, so ``client()`` (a single
    connection) and ``pipeline()`` work as they do on ``redis.asyncio.Redis``.
    """

    def __init__(self, *, connection_pool: Any = None, **kwargs: Any) -> None:
        super().__init__(connection_pool=connection_pool, **kwargs)
        pool = self.connection_pool
        self._mux: Multiplexer | None = None
        self._watcher: Watcher | None = None
        self._retryable = READ_ONLY
        self._cache: ClientCache | None = None
        if isinstance(pool, SupervisedConnectionPool):
            self._watcher = pool._watcher
            self._retryable = READ_ONLY | pool.idempotent
            self._cache = pool.cache
            if self._cache is not None:
                self.execute_command = self._execute_cached  # type: ignore[method-assign]

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        send: Callable[..., Awaitable[Any]]
        if self._mux is not None and self.connection is None and may_pipeline(args[0], options):
            send = self._pipelined
        elif args[0] in BLOCKING:
            send = self._send_blocking
        else:
            send = super().execute_command
        if self._watcher is None:
            return await send(*args, **options)
        quiet = quiet_errors.set(True)  # redis-py records the error the app sees, once
        try:
            try:
                return await send(*args, **options)
            except _FAILURES as exc:
                if isinstance(exc, _NOT_OURS):
                    raise
                name = command_name(args)
                return await self._recover(
                    name, name in self._retryable, lambda: send(*args, **options), exc
                )
        except Exception as exc:
            await app_error(self.connection_pool.connection_kwargs, exc, 0)
            raise
        finally:
            quiet_errors.reset(quiet)

    _uncached = execute_command

    async def _execute_cached(self, *args: Any, **options: Any) -> Any:
        """``execute_command`` with ``client_cache``: cacheable reads go through the
        cache (not on a ``client()``, whose connection is the caller's), and what a
        write changed is dropped from it once the write is answered or failed."""
        cache = self._cache
        assert cache is not None
        name = command_name(args)
        if name in CACHEABLE and not self.single_connection_client and NEVER_DECODE not in options:
            try:
                return await cache.read(self, name, args, options, self._uncached)
            except ReadTimedOut as exc:  # judged as the pool's timeouts are
                return await self._recover(
                    name, True, lambda: self._uncached(*args, **options), exc
                )
        if reads_only(name, args):
            return await self._uncached(*args, **options)
        try:
            return await self._uncached(*args, **options)
        finally:
            cache.wrote(args)

    async def _pipelined(self, *args: Any, **options: Any) -> Any:
        mux = self._mux
        assert mux is not None
        return await mux.execute(self, args, options)

    async def _send_blocking(self, *args: Any, **options: Any) -> Any:
        """A blocking command waits its own timeout on top of ``socket_timeout``, so
        ``BLPOP(timeout=3)`` is not cut at a 1 s ``socket_timeout``."""
        waits = blocking_timeout(args)
        pool = self.connection_pool
        timeout = pool.connection_kwargs.get("socket_timeout")
        if waits is None or timeout is None:
            return await Redis.execute_command(self, *args, **options)
        await self.initialize()
        conn: Any = self.connection or await pool.get_connection()
        if self.single_connection_client:
            await self._single_conn_lock.acquire()
        try:
            conn.socket_timeout = None if waits == 0 else timeout + waits
            try:
                return await self._send_command_parse_response(conn, args[0], *args, **options)  # type: ignore[no-untyped-call]
            except (RedisConnectionError, RedisTimeoutError, OSError):
                await conn.disconnect()
                raise
            finally:
                conn.socket_timeout = timeout
        finally:
            if self.single_connection_client:
                self._single_conn_lock.release()
            if not self.connection:
                await pool.release(conn)

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        return SupervisedPipeline(self, transaction, shard_hint)

    async def _recover(
        self,
        name: str,
        retryable: bool,
        again: Callable[[], Awaitable[Any]],
        exc: Exception,
        *,
        batch: bool = False,
    ) -> Any:
        """Act on what the failure proves; re-send once the gate reopens if that cannot
        apply a write twice, up to ``_ATTEMPTS`` times within the command deadline."""
        watcher = self._watcher
        assert watcher is not None
        gate = watcher.gate
        deadline = anyio.current_time() + watcher.command_deadline
        timed_out = False
        for _ in range(_ATTEMPTS):
            failure = failure_of(exc)
            if stands(failure, timed_out):
                raise exc
            timed_out = timed_out or failure is Failure.TIMED_OUT
            generation = gate.generation
            error = describe(exc)
            if failure is Failure.CLAIM:
                watcher.reply_claims(claim_of(exc), error)
            elif not isinstance(exc, Reported):
                watcher.connection_lost(
                    Loss(
                        error,
                        None,
                        command_failed=True,
                        stalled=failure is Failure.TIMED_OUT,
                        turned_away=isinstance(exc, NotSent) and exc.showed is Showed.TURNED_AWAY,
                    )
                )
            if not may_resend(failure, retryable):
                cls = (
                    also_a(OutcomeUnknown, RedisTimeoutError)
                    if failure is Failure.TIMED_OUT
                    else None
                )
                raise (cls or OutcomeUnknown)(name, error) from exc
            try:
                await gate.wait_open(deadline)
                if anyio.current_time() >= deadline:
                    raise watcher.unavailable("command_deadline passed before it went again")
            except Unavailable as refused:
                if needs_verdict(failure):
                    seen = RedisTimeoutError if failure is Failure.TIMED_OUT else type(exc)
                    raise also_a(Unavailable, seen)(str(refused), cause=refused.cause) from exc
                raise refused from exc
            if not explained(failure, generation, gate.generation):
                raise exc
            if batch and not retryable and failure is Failure.CLAIM:
                # a confirmed LOADING proves the first command was refused, not the rest
                raise OutcomeUnknown(name, error) from exc
            try:
                return await again()
            except _FAILURES as failed:
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
        if self._client._watcher is None:
            return await super().execute(raise_on_error)
        quiet = quiet_errors.set(True)  # redis-py records the error the app sees, once
        stack = list(self.command_stack)
        try:
            return await self._execute(stack, raise_on_error)
        except Exception as exc:
            await app_error(self.connection_pool.connection_kwargs, exc, 0)
            raise
        finally:
            quiet_errors.reset(quiet)
            cache = self._client._cache
            if cache is not None:  # what the batch wrote, answered or not, is not served
                for args, _ in stack:
                    if not reads_only(command_name(args), args):
                        cache.wrote(args)

    async def _execute(self, stack: list[Any], raise_on_error: bool) -> list[Any]:
        watching = self.watching
        try:
            return await super().execute(raise_on_error)
        except _FAILURES_BATCH as exc:
            client = self._client
            if isinstance(exc, _NOT_OURS) or watching or not stack:
                raise
            names = [command_name(args) for args, _ in stack]
            label = ("MULTI " if self.is_transaction else "PIPELINE ") + " ".join(names)
            retryable = all(n in client._retryable for n in names)

            async def again() -> list[Any]:
                self.command_stack = list(stack)
                return await Pipeline.execute(self, raise_on_error)

            result: list[Any] = await client._recover(label, retryable, again, exc, batch=True)
            return result
