"""Subscriber buffers: bounded, oldest dropped and counted, never blocking."""

from __future__ import annotations

import anyio

from supervisor.causes import Cause
from supervisor.events import ConnectionLost, Snapshot
from supervisor.state import ConnectionState
from supervisor.targets.hub import Hub, Subscription


def lost(seq: int) -> ConnectionLost:
    return ConnectionLost(seq=seq, at=0.0, target="t", cause=Cause.UNKNOWN, detail="")


def snapshot() -> Snapshot:
    return Snapshot(seq=0, at=0.0, target="t", state=ConnectionState.READY, cause=None, detail="")


async def test_slow_subscriber_loses_oldest_and_counts():
    """A subscriber that never reads keeps the newest events and counts the dropped ones."""
    hub = Hub()
    slow, fast = Subscription(3), Subscription(100)
    hub.add(slow, snapshot())
    hub.add(fast, snapshot())
    for seq in range(1, 11):
        hub.publish(lost(seq))
    assert slow.dropped == 8
    assert [e.seq for e in [slow.receive_nowait() for _ in range(3)]] == [8, 9, 10]
    assert fast.dropped == 0
    received = [fast.receive_nowait() for _ in range(11)]
    assert [e.seq for e in received] == list(range(11))


async def test_publish_wakes_a_waiting_subscriber():
    """A subscriber blocked in its loop receives what is published next."""
    hub = Hub()
    sub = Subscription(10)
    hub.add(sub, snapshot())
    got = []
    async with anyio.create_task_group() as tg:

        async def consume():
            async for event in sub:
                got.append(event.seq)
                if event.seq == 2:
                    return

        tg.start_soon(consume)
        await anyio.wait_all_tasks_blocked()
        hub.publish(lost(1))
        hub.publish(lost(2))
    assert got == [0, 1, 2]


async def test_close_ends_iteration_and_remove_unsubscribes():
    """Closing the hub ends loops; a removed subscriber receives nothing more."""
    hub = Hub()
    a, b = Subscription(10), Subscription(10)
    hub.add(a, snapshot())
    hub.add(b, snapshot())
    hub.remove(b)
    hub.publish(lost(1))
    assert len(hub) == 1
    hub.close()
    assert [e.seq async for e in a] == [0, 1]
    assert [e.seq async for e in b] == [0]
