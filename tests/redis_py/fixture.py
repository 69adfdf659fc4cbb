"""redis-py's ``create_redis`` fixture, handing out ``sup.client`` instead.

``run.py`` appends an import of this module to redis-py's
``tests/test_asyncio/conftest.py``, so this ``create_redis`` replaces
redis-py's. Each client comes from its own ``Supervisor``, entered for the
test: a test's keyword arguments become config keys where the config has them
(``decode_responses``, ``max_connections``, ...) and ``redis_options``
otherwise, as an application moving from redis-py would set them.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest_asyncio
import redis.asyncio as redis
from redis.asyncio.connection import parse_url

from supervisor import Supervisor, SupervisorConfig

_CONFIG_KEYS = {
    "decode_responses",
    "max_connections",
    "client_name",
    "socket_timeout",
    "socket_connect_timeout",
}


def _config(url: str, kwargs: dict[str, Any]) -> SupervisorConfig:
    options = dict(kwargs)
    keys = {k: options.pop(k) for k in list(options) if k in _CONFIG_KEYS}
    # the auto-pipelined side (run.py), on every protocol the suite asks for (RESP3 unless
    # a test says otherwise, as redis-py 8 speaks)
    if os.environ.get("SUPERVISOR_AUTO_PIPELINE") == "1":
        keys["auto_pipeline"] = True
    return SupervisorConfig(url=url, redis_options=options, **keys)


async def _supervise(config: SupervisorConfig) -> tuple[Supervisor, Any]:
    """A supervisor run by a task of its own (a fixture's setup and teardown may run in
    different tasks, and a task group must be left by the task that entered it)."""
    started: asyncio.Future[Supervisor] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()

    async def run() -> None:
        async with Supervisor(config) as sup:
            started.set_result(sup)
            await stop.wait()

    task = asyncio.create_task(run())
    done, _ = await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
    if started not in done:
        task.result()  # raises what made the supervisor fail to start
    sup = started.result()

    async def close() -> None:
        stop.set()
        await task

    return sup, close


@pytest_asyncio.fixture(params=[(True,), (False,)], ids=["single", "pool"])
async def create_redis(request: Any) -> Any:
    (single_connection,) = request.param
    teardowns = []

    async def client_factory(
        url: str = request.config.getoption("--redis-url"),
        cls: type = redis.Redis,
        flushdb: bool = True,
        **kwargs: Any,
    ) -> Any:
        if "protocol" not in url and kwargs.get("protocol") is None:
            protocol = request.config.getoption("--protocol")
            if protocol:
                kwargs["protocol"] = protocol
        legacy = request.config.getoption("--legacy-responses")
        if "legacy_responses" not in kwargs and legacy and legacy != "default":
            kwargs["legacy_responses"] = legacy.lower() == "true"
        single = kwargs.pop("single_connection_client", False) or single_connection
        close = None
        if cls is redis.Redis:
            sup, close = await _supervise(_config(url, kwargs))
            client = sup.client
        else:  # a subclass the test brings (none in the standalone modules): as redis-py
            options = {**parse_url(url), **kwargs}
            client = cls(connection_pool=redis.ConnectionPool(**options))
        if single:
            client = client.client()
            await client.initialize()

        async def teardown() -> None:
            try:
                if flushdb and "username" not in kwargs:
                    try:
                        await client.flushdb()
                    except redis.ConnectionError:
                        await client.flushdb()  # a test disconnected the client
                await client.aclose()
                await client.connection_pool.disconnect()
            finally:
                if close is not None:
                    await close()

        teardowns.append(teardown)
        return client

    yield client_factory

    for teardown in teardowns:
        await teardown()
