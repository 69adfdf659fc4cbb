"""``ReadDeadlines``: the ``socket_timeout`` of every pooled read, kept by one task.

redis-py arms an ``asyncio.timeout`` around each read: a timer handle pushed on the event
loop's heap and cancelled a moment later, so under load the heap holds a live handle and
many cancelled ones per command in flight. With 50 tasks on Python 3.11 that is about a
fifth of a GET's CPU. Here a read stamps its deadline on its connection, and one task,
owned by the supervisor's task group, looks at the connections every eighth of
``socket_timeout``: a read past its deadline has its transport aborted and raises
redis-py's ``TimeoutError``, at most an eighth of the timeout late. While the task is not
running (before the supervisor starts, after it stops), reads keep redis-py's own timer.

A read past its deadline first asks for the supervisor's verdict (``check()``) and
waits ``verdict_within`` for it. While the supervisor finds the server stalled
(``stalled()``: its health checks go unanswered, yet it holds its connections) the read
is held, up to ``hold`` seconds after it began: the server answers it when it resumes,
and cutting it would turn a stall into an error for a command the server runs anyway.
A server that answers the check is not stalled: the read was slow on its own and is cut.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, TypeVar
from weakref import WeakSet

import anyio

__all__ = ("ReadDeadlines", "Watched")

T = TypeVar("T")


class Watched(Protocol):
    read_due: float | None
    """When the read under way is late (``time.monotonic()``), or None: no read."""

    def expire_read(self) -> None: ...


class ReadDeadlines:
    def __init__(
        self,
        socket_timeout: float,
        *,
        hold: float = 0.0,
        stalled: Callable[[], bool] | None = None,
        check: Callable[[], None] | None = None,
        verdict_within: float = 0.0,
    ) -> None:
        self.every = max(socket_timeout / 8, 0.001)
        self._extra = max(hold - socket_timeout, 0.0)
        self._stalled = stalled
        self._check = check
        self._verdict_within = verdict_within + self.every
        self.running = False
        self._watched: WeakSet[Watched] = WeakSet()

    def bind(self, connection_class: type[T]) -> type[T]:
        """A subclass of ``connection_class`` whose connections this task watches: it
        reaches every connection made of it, whoever makes it (the pool, each cluster
        node)."""
        attrs = {"deadlines": self, "__module__": connection_class.__module__}
        return type(connection_class.__name__, (connection_class,), attrs)

    def watch(self, connection: Watched) -> None:
        self._watched.add(connection)

    async def run(self) -> None:
        """Until cancelled: the owner's task group runs it."""
        self.running = True
        try:
            while True:
                await anyio.sleep(self.every)
                now = time.monotonic()
                stalled = self._stalled is not None and self._extra > 0 and self._stalled()
                for connection in list(self._watched):
                    due = connection.read_due
                    if due is None or due > now:
                        continue
                    if stalled:
                        if now < due + self._extra:
                            continue
                    elif self._check is not None and now < due + self._verdict_within:
                        self._check()  # is it the server, or this read?
                        continue
                    connection.expire_read()
        finally:
            self.running = False
