"""The cluster pub/sub inbox's bound: links past it wait in line, and reading lets as
many go as there are free places, so no link waits for a read that never comes."""

from __future__ import annotations

import anyio

from supervisor.targets.cluster_inbox import Inbox


async def test_links_past_the_bound_wait_and_reading_frees_them_in_line():
    box = Inbox(bound=2)
    released: list[int] = []

    async def link(i: int) -> None:
        box.message([b"message", b"c", str(i).encode()])
        await box.room()
        released.append(i)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for i in range(4):
                tg.start_soon(link, i)
                await anyio.wait_all_tasks_blocked()
            assert released == [0], "a link waits only past the bound"
            seen = []
            for expected in ([0], [0], [0, 1], [0, 1, 2, 3]):
                seen.append((await box.next()).data)
                await anyio.wait_all_tasks_blocked()
                assert released == expected, (seen, released)
    assert seen == [b"0", b"1", b"2", b"3"]


async def test_closing_frees_every_waiting_link():
    box = Inbox(bound=1)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for i in range(3):
                box.message([b"message", b"c", str(i).encode()])
                tg.start_soon(box.room)
            await anyio.wait_all_tasks_blocked()
            box.close()
