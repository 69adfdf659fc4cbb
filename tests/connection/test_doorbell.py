"""The doorbell against real sockets: refusals counted for every watch on one timer, an
accepting port answered once, and nothing left armed when the last watch leaves."""

from __future__ import annotations

import asyncio
import socket

import anyio
import pytest

from supervisor.connection.doorbell import Doorbell, Watch
from tests.helpers.loops import poll


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Seen:
    def __init__(self) -> None:
        self.refused = 0
        self.answered = anyio.Event()

    def watch(self, port: int) -> Watch:
        return Watch(socket.AF_INET, ("127.0.0.1", port), 0.005, self._refused, self.answered.set)

    def _refused(self) -> None:
        self.refused += 1


async def test_refused_ports_are_knocked_together_and_an_accepting_one_is_answered():
    bell = Doorbell(asyncio.get_running_loop(), 0.005)
    ports = [_closed_port() for _ in range(20)]
    seen = [_Seen() for _ in ports]
    watches = [s.watch(p) for s, p in zip(seen, ports, strict=True)]
    for w in watches:
        bell.watch(w)
    await poll(
        lambda: all(s.refused >= 3 for s in seen),
        "3 refused knocks for each of 20 watches",
        lambda: [s.refused for s in seen],
    )
    assert not any(s.answered.is_set() for s in seen)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", ports[0]))
        listener.listen()
        with anyio.fail_after(5):
            await seen[0].answered.wait()
        assert bell.waiting == 19, "the answered watch leaves; the others stay"
        before = seen[1].refused
        await poll(lambda: seen[1].refused > before, "the others are still knocked")
    for w in watches[1:]:
        bell.leave(w)
    assert bell.waiting == 0
    assert bell._timer is None, "no timer stays armed once nobody waits"


async def test_the_period_grows_with_the_number_of_watches():
    bell = Doorbell(asyncio.get_running_loop(), 0.02)
    assert bell.period() == 0.02
    watches = [_Seen().watch(_closed_port()) for _ in range(100)]
    for w in watches:
        bell.watch(w)
    assert bell.period() == pytest.approx(0.05)
    for w in watches:
        bell.leave(w)
    assert bell._timer is None
