"""A small asyncio TCP relay between the supervisor and a real redis-server.

It injects the faults a real network has: ``blackhole()`` swallows traffic in
both directions while keeping sockets open, ``hold_replies()`` keeps the server's
replies back until ``release_replies()``, ``hold_requests()`` keeps the clients'
commands back (counted all the same) until ``release_requests()``, and ``cut_reply_after(command)``
forwards the next request that sends ``command`` (the name exactly, as the first
element of a RESP array) and closes that client connection when the server's
reply arrives, without passing the reply on.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import Counter
from types import TracebackType

_COMMAND = re.compile(rb"\*\d+\r\n\$\d+\r\n([A-Za-z]+)\r\n")
"""The name of each RESP command in a chunk of client data."""


class FaultProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.accepted = 0
        self.blackholed = False
        self.commands: Counter[bytes] = Counter()
        """Commands seen from clients, by name (upper-cased), blackholed ones too."""
        self._released = asyncio.Event()
        self._released.set()
        self._requests_released = asyncio.Event()
        self._requests_released.set()
        self.held = asyncio.Event()
        self._cut_pattern: re.Pattern[bytes] | None = None
        self._hold_pattern: re.Pattern[bytes] | None = None
        self._hold_one_pattern: re.Pattern[bytes] | None = None
        self._held_one: list[asyncio.Event] = []
        self.cut_done = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def __aenter__(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        await self._server.wait_closed()

    def blackhole(self, on: bool = True) -> None:
        self.blackholed = on

    def hold_replies(self) -> None:
        self.held.clear()
        self._released.clear()

    def release_replies(self) -> None:
        self._released.set()
        for held in self._held_one:
            held.set()
        self._held_one.clear()

    def hold_requests(self) -> None:
        self._requests_released.clear()

    def release_requests(self) -> None:
        self._requests_released.set()

    def cut_reply_after(self, command: bytes) -> None:
        """``b"GET"`` matches ``GET key`` but not ``CONFIG GET`` or ``GETEX``."""
        self.cut_done.clear()
        self._cut_pattern = _pattern(command)

    def hold_replies_from(self, command: bytes) -> None:
        """``hold_replies()`` from the moment a client sends ``command`` (matched as in
        ``cut_reply_after``: ``b"CONFIG"`` for ``CONFIG GET``), that command's reply
        included: a server stopped at that point of a conversation."""
        self.held.clear()
        self._hold_pattern = _pattern(command)

    def hold_replies_on(self, command: bytes) -> None:
        """Hold the replies of the one connection that next sends ``command`` (its reply
        included), while every other connection goes on, until ``release_replies()``."""
        self.held.clear()
        self._hold_one_pattern = _pattern(command)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            self._writers.discard(writer)
            return
        self._writers.add(up_writer)
        armed = asyncio.Event()
        mine = asyncio.Event()
        mine.set()
        tasks = [
            asyncio.ensure_future(
                self._pipe(reader, up_writer, writer, armed, mine, upstream=True)
            ),
            asyncio.ensure_future(
                self._pipe(up_reader, writer, writer, armed, mine, upstream=False)
            ),
        ]
        for task in tasks:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        for w in (writer, up_writer):
            w.close()
            self._writers.discard(w)

    async def _pipe(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        client: asyncio.StreamWriter,
        armed: asyncio.Event,
        mine: asyncio.Event,
        *,
        upstream: bool,
    ) -> None:
        while True:
            data = await src.read(65536)
            if not data:
                return
            if upstream:
                for name in _COMMAND.findall(data):
                    self.commands[name.upper()] += 1
            if self.blackholed:
                continue
            if upstream and self._cut_pattern is not None and self._cut_pattern.search(data):
                self._cut_pattern = None
                armed.set()
            elif upstream and self._hold_pattern is not None and self._hold_pattern.search(data):
                self._hold_pattern = None
                self._released.clear()
            elif (
                upstream
                and self._hold_one_pattern is not None
                and self._hold_one_pattern.search(data)
            ):
                self._hold_one_pattern = None
                mine.clear()
                self._held_one.append(mine)
            elif not upstream and armed.is_set():
                client.transport.abort()
                self.cut_done.set()
                return
            if not upstream and not self._released.is_set():
                self.held.set()
                await self._released.wait()
            if not upstream and not mine.is_set():
                self.held.set()
                await mine.wait()
            if upstream and not self._requests_released.is_set():
                await self._requests_released.wait()
            dst.write(data)
            await dst.drain()


def _pattern(command: bytes) -> re.Pattern[bytes]:
    return re.compile(rb"\*\d+\r\n\$\d+\r\n" + re.escape(command) + rb"\r\n", re.IGNORECASE)
