"""``ClusterLanes``: auto-pipelining on a cluster, one shared connection per node.

A plain command goes to the node redis-py chose for its slot (``RedisCluster``'s own
routing, replicas included where reads go to them), over that node's ``Lane``
(``supervisor.connection.lane``): the commands of concurrent callers for one node
share its writes. The redirections are redis-py's: ``MOVED`` updates the slot table
and the command goes to the new owner (it was not executed, so it is not a re-send);
``ASK`` sends ``ASKING`` and the command together, adjacent in one write to the
importing node; ``TRYAGAIN`` waits 50 ms once half the attempts are used. A lost
lane fails only the commands written on it; the client's one re-send rule
(``SupervisedRedisCluster._recover``) decides what follows, and its re-send takes
redis-py's pooled path. Other nodes' lanes and callers are not touched. At most
``max_waiters`` commands are queued or in flight per lane; past that, and for a
while after a node's lane could not be opened, commands take the pool.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.client import EMPTY_RESPONSE
from redis.cluster import get_node_name
from redis.commands import READ_COMMANDS
from redis.exceptions import (
    AskError,
    ClusterError,
    MovedError,
    RedisError,
    ResponseError,
    TryAgainError,
)

from supervisor.connection.lane import Lane
from supervisor.connection.losses import Loss
from supervisor.connection.probe import drop

__all__ = ("ClusterLanes",)


class _Unreported:
    """A lane's loss surfaces as its commands' errors, which the client's re-send rule
    reports to the supervisor; an idle lane's loss needs no report."""

    def connection_lost(self, loss: Loss) -> None:
        pass


_UNREPORTED = _Unreported()


class ClusterLanes:
    def __init__(self, *, max_waiters: int, retry_after: float) -> None:
        """``retry_after``: seconds a node whose lane could not be opened takes the pool
        before another attempt, so a dead node costs one dial per period, not one per
        command."""
        self._max_waiters = max_waiters
        self._retry_after = retry_after
        self._failed: dict[str, float] = {}
        self._lanes: dict[str, Lane] = {}
        self._opening: dict[str, asyncio.Future[Lane | None]] = {}
        self._closed = False

    async def execute(
        self, client: Any, node: ClusterNode, args: tuple[Any, ...], options: dict[str, Any]
    ) -> Any:
        ttl = client.RedisClusterRequestTTL
        asking = False
        name = args[0]
        while ttl > 0:
            ttl -= 1
            lane = await self._lane(node)
            if lane is None or lane.load >= self._max_waiters:
                return await RedisCluster._execute_command(client, node, *args, **options)
            packed = lane.connection.pack_command(*args)
            if asking:
                asking_reply, future = lane.submit_all(
                    [lane.connection.pack_command("ASKING"), packed]
                )
                asking_reply.add_done_callback(_retrieved)
                asking = False
            else:
                future = lane.submit(packed)
            reply = await future
            if isinstance(reply, MovedError):
                await client.nodes_manager.move_slot(reply)
                slot = await client._determine_slot(*args)
                node = client.nodes_manager.get_node_from_slot(
                    slot,
                    client.read_from_replicas and name in READ_COMMANDS,
                    client.load_balancing_strategy if name in READ_COMMANDS else None,
                )
                continue
            if isinstance(reply, AskError):
                node = client.get_node(node_name=get_node_name(reply.host, reply.port))
                asking = True
                continue
            if isinstance(reply, TryAgainError):
                if ttl < client.RedisClusterRequestTTL / 2:
                    await asyncio.sleep(0.05)
                continue
            if isinstance(reply, Exception):
                if EMPTY_RESPONSE in options and isinstance(reply, ResponseError):
                    return options[EMPTY_RESPONSE]
                raise reply
            callback = client.response_callbacks.get(name)
            if callback is None:
                return reply
            kept = {k: v for k, v in options.items() if k not in (EMPTY_RESPONSE, "keys")}
            return callback(reply, **kept)
        raise ClusterError("TTL exhausted.")

    async def _lane(self, node: ClusterNode) -> Lane | None:
        """The node's open lane; one caller opens it, the others wait for it. None when
        it cannot be opened now (the pool's path then reports what is wrong)."""
        lane = self._lanes.get(node.name)
        if lane is not None and lane.open:
            return lane
        opening = self._opening.get(node.name)
        if opening is not None:
            return await asyncio.shield(opening)
        if self._closed or time.monotonic() < self._failed.get(node.name, 0.0):
            return None
        opening = self._opening[node.name] = asyncio.get_running_loop().create_future()
        lane = None
        try:
            lane = await self._open(node)
        finally:
            del self._opening[node.name]
            opening.set_result(lane)
        if lane is None:
            self._failed[node.name] = time.monotonic() + self._retry_after
            return None
        self._failed.pop(node.name, None)
        if self._closed:
            lane.close()
            return None
        self._lanes[node.name] = lane
        return lane

    async def _open(self, node: ClusterNode) -> Lane | None:
        connection: Any = node.connection_class(**node.connection_kwargs)
        try:
            await connection.connect()
        except (RedisError, OSError):
            await drop(connection)
            return None
        except BaseException:
            await drop(connection)
            raise
        return Lane(connection, 0, connection.socket_timeout, _UNREPORTED)

    def aclose(self) -> None:
        """Close every lane: their callers get the errors a lost connection gives."""
        self._closed = True
        for lane in self._lanes.values():
            lane.close()
        self._lanes.clear()


def _retrieved(future: asyncio.Future[Any]) -> None:
    """``ASKING``'s own answer is nobody's: an error on it is read, and dropped."""
    if not future.cancelled():
        future.exception()
