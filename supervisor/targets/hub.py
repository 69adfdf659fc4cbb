"""Fan-out of events to subscribers, each behind its own bounded buffer.

Publishing is synchronous and never waits: a subscriber that does not read
loses its oldest events (and can count them), while the supervisor and the
other subscribers go on.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator

import anyio

from supervisor.events import Event

__all__ = ("Hub", "Subscription")


class Subscription(AsyncIterator[Event]):
    """An async iterator over the events of one subscriber.

    ``dropped`` counts events lost because the buffer was full. Iteration ends
    when the supervisor closes or the subscriber leaves ``subscribe()``.
    """

    def __init__(self, max_buffer: int) -> None:
        if max_buffer < 1:
            raise ValueError(f"max_buffer must be >= 1, got {max_buffer}")
        self._buffer: deque[Event] = deque(maxlen=max_buffer)
        self._ready = anyio.Event()
        self._closed = False
        self.dropped = 0

    def _put(self, event: Event) -> None:
        if len(self._buffer) == self._buffer.maxlen:
            self.dropped += 1
        self._buffer.append(event)
        self._ready.set()

    def _close(self) -> None:
        self._closed = True
        self._ready.set()

    def receive_nowait(self) -> Event | None:
        """Return the oldest buffered event, or None when there is none."""
        return self._buffer.popleft() if self._buffer else None

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        while not self._buffer:
            if self._closed:
                raise StopAsyncIteration
            await self._ready.wait()
            self._ready = anyio.Event()
        return self._buffer.popleft()


class Hub:
    """The set of live subscriptions of one supervisor."""

    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._subscriptions)

    def add(self, subscription: Subscription, first: Event) -> None:
        """Register a subscription and hand it ``first`` in the same step."""
        subscription._put(first)
        if self._closed:
            subscription._close()
        else:
            self._subscriptions.add(subscription)

    def remove(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)
        subscription._close()

    def publish(self, event: Event) -> None:
        for subscription in self._subscriptions:
            subscription._put(event)

    def close(self) -> None:
        """End every subscriber's iteration once it has read what it holds."""
        self._closed = True
        for subscription in self._subscriptions:
            subscription._close()
        self._subscriptions.clear()

    @property
    def dropped(self) -> int:
        return sum(s.dropped for s in self._subscriptions)
