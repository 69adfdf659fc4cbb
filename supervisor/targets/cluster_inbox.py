"""What a cluster pub/sub handle's links have read and the application has not.

Messages are held up to a bound; past it the links stop reading, so the nodes hold
the rest (their output buffer limits apply, and a connection they close opens a
window). Markers are never held back: each one must come before the messages that
follow its gap.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import anyio

from supervisor.events import Resubscribed
from supervisor.targets.subscriptions import Message

__all__ = ("BUFFER", "Inbox")

BUFFER = 10_000
"""Messages a handle holds for the application."""


class Inbox:
    __slots__ = ("_arrived", "_bound", "_items", "_messages", "_waiting", "closed")

    def __init__(self, bound: int = BUFFER) -> None:
        self._bound = bound
        self._items: deque[Message | Resubscribed] = deque()
        self._messages = 0
        self._arrived = anyio.Event()
        self._waiting: deque[anyio.Event] = deque()
        """Links that wait for room, in line: one is let go per message read."""
        self.closed = False

    def message(self, reply: Any) -> None:
        """A RESP2 ``message``, ``smessage`` or ``pmessage`` reply."""
        kind = reply[0].decode() if isinstance(reply[0], bytes) else reply[0]
        if kind == "pmessage":
            self._items.append(Message(kind, reply[2], reply[3], pattern=reply[1]))
        else:
            self._items.append(Message(kind, reply[1], reply[2]))
        self._messages += 1
        self._arrived.set()

    def marker(self, item: Resubscribed) -> None:
        self._items.append(item)
        self._arrived.set()

    async def room(self) -> None:
        if self._messages >= self._bound and not self.closed:
            turn = anyio.Event()
            self._waiting.append(turn)
            await turn.wait()

    async def next(self) -> Message | Resubscribed:
        """The next item; ``StopAsyncIteration`` once closed and empty."""
        while not self._items:
            if self.closed:
                raise StopAsyncIteration
            if self._arrived.is_set():
                self._arrived = anyio.Event()
            await self._arrived.wait()
        item = self._items.popleft()
        if isinstance(item, Message):
            self._messages -= 1
            # one waiting link per free place: each reads one more message, then asks again
            for _ in range(min(len(self._waiting), self._bound - self._messages)):
                self._waiting.popleft().set()
        return item

    def close(self) -> None:
        self.closed = True
        self._arrived.set()
        while self._waiting:
            self._waiting.popleft().set()
