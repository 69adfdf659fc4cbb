from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from supervisor import Supervisor, SupervisorConfig
from tests.helpers.proxy import FaultProxy
from tests.helpers.servers import RedisServer, make_server

FAST = dict(
    health_check_interval=0.2,
    health_check_timeout=0.2,
    backoff_base=0.02,
    backoff_cap=0.2,
    command_deadline=10.0,
    socket_timeout=5.0,
    socket_connect_timeout=1.0,
)


@pytest.fixture(scope="session")
def shared_server() -> Iterator[RedisServer]:
    """One server for tests that do not break it."""
    server = make_server()
    yield server
    server.close()


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A server of the test's own, to kill, stop and reconfigure."""
    server = make_server()
    yield server
    server.close()


@pytest.fixture
async def proxy(server: RedisServer) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(server.port) as p:
        yield p


@pytest.fixture
def supervise() -> Callable[..., Any]:
    """``async with supervise(url, **overrides) as sup``: a supervisor with fast test timings."""

    @asynccontextmanager
    async def _supervise(url: str, **overrides: Any) -> AsyncIterator[Supervisor]:
        config = SupervisorConfig(url=url, **{**FAST, **overrides})
        async with Supervisor(config, rng=random.Random(7)) as sup:
            yield sup

    return _supervise
