"""What a pub/sub handle is subscribed to, and which subscribe calls await an answer.

The server answers each name of a subscribe command in order, or refuses the command
as a whole (NOPERM) with one error reply; a command never answered (the connection was
lost) is answered by the next resubscription, which sends every name again.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import anyio
from redis.exceptions import ResponseError

__all__ = ("KINDS", "Message", "Sent", "Subscriptions")

KINDS = {"subscribe": "channels", "psubscribe": "patterns", "ssubscribe": "shard_channels"}
_UNSUBSCRIBE = {
    "subscribe": "UNSUBSCRIBE",
    "psubscribe": "PUNSUBSCRIBE",
    "ssubscribe": "SUNSUBSCRIBE",
}


@dataclass(frozen=True, slots=True)
class Message:
    """One published message. ``kind`` is ``message``, ``pmessage`` or ``smessage``;
    ``pattern`` is set for ``pmessage``. Types follow ``decode_responses``."""

    kind: str
    channel: Any
    data: Any
    pattern: Any = None


class Sent:
    """One subscribe command and its confirmations: a count, not a record per name, so
    50,000 channels cost one object."""

    __slots__ = ("done", "error", "kind", "names", "remaining")

    def __init__(self, kind: str, names: list[str]) -> None:
        self.kind = kind
        self.names = names
        self.remaining = len(names)
        self.done = anyio.Event()
        self.error: ResponseError | None = None


class Subscriptions:
    """The names of one handle by kind, with the commands sent and not yet answered."""

    __slots__ = ("_sent", "_unsent", "channels", "patterns", "shard_channels")

    def __init__(self) -> None:
        self.channels: set[str] = set()
        self.patterns: set[str] = set()
        self.shard_channels: set[str] = set()
        self._sent: deque[Sent] = deque()
        """Sent on the current connection and not yet answered, oldest first."""
        self._unsent: list[Sent] = []
        """Never answered (no connection, or it was lost): the resubscription answers them."""

    def names(self, kind: str) -> set[str]:
        names: set[str] = getattr(self, KINDS[kind])
        return names

    def everything(self) -> list[str]:
        return sorted(self.channels | self.patterns | self.shard_channels)

    def request(self, kind: str, new: tuple[str, ...]) -> Sent:
        """Add ``new`` names of ``kind``; the returned record is answered later."""
        self.names(kind).update(new)
        return Sent(kind, list(new))

    def wait_for_connection(self, sent: Sent) -> None:
        self._unsent.append(sent)

    def sending(self, sent: Sent) -> None:
        self._sent.append(sent)

    def confirmed(self) -> None:
        """The server confirmed one name: of the oldest command not yet answered."""
        if self._sent:
            sent = self._sent[0]
            sent.remaining -= 1
            if sent.remaining <= 0:
                self._sent.popleft()
                sent.done.set()

    def refuse(self, exc: ResponseError) -> None:
        """The server refused the oldest unanswered command (an ACL user may not read
        those channels): an error for that call, nothing more. Its names leave, so a
        reconnect does not ask again."""
        if not self._sent:
            return
        sent = self._sent.popleft()
        self.names(sent.kind).difference_update(sent.names)
        sent.error = exc
        sent.done.set()

    def connection_gone(self) -> None:
        self._unsent += self._sent
        self._sent.clear()

    def resubscription(self) -> list[Sent]:
        """One command per kind with every name: what a new connection sends."""
        return [Sent(kind, list(self.names(kind))) for kind in KINDS if self.names(kind)]

    def resubscribed(self, batch: list[Sent]) -> None:
        """Answer every call that waited for a connection with what ``batch`` got."""
        refused = {sent.kind: sent.error for sent in batch if sent.error is not None}
        for waiting in self._unsent:
            waiting.error = refused.get(waiting.kind)
            waiting.done.set()
        self._unsent.clear()

    def release(self) -> None:
        """The handle closed: nobody will answer the calls still waiting."""
        for sent in self._unsent:
            sent.done.set()
        self._unsent.clear()

    def unsubscribe_commands(self) -> list[tuple[str, list[str]]]:
        return [
            (_UNSUBSCRIBE[kind], sorted(self.names(kind))) for kind in KINDS if self.names(kind)
        ]
