"""The pool's connection classes: redis-py's, each carrying its generation and last use.

A connection from before an outage (an older generation) is never handed out as it is;
``last_used`` tells the idle refresh which to PING; ``dial`` marks one holding a dial slot.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)

__all__ = ("SupervisedConnection", "connection_class_for")


class _Tracked:
    generation: int = -1
    last_used: float = 0.0
    dial: bool = False
    """Handed out to be connected: it holds one of the pool's dial slots."""


class SupervisedConnection(_Tracked, Connection):
    pass


class SupervisedSSLConnection(_Tracked, SSLConnection):
    pass


class SupervisedUnixConnection(_Tracked, UnixDomainSocketConnection):
    pass


_TRACKED: dict[type[AbstractConnection], type[AbstractConnection]] = {
    Connection: SupervisedConnection,
    SSLConnection: SupervisedSSLConnection,
    UnixDomainSocketConnection: SupervisedUnixConnection,
}


def connection_class_for(kwargs: dict[str, Any]) -> type[AbstractConnection]:
    base: type[AbstractConnection] = kwargs.pop("connection_class", Connection)
    return _TRACKED.get(base, base)
