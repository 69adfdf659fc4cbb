"""ClusterLanes alone: a node whose lane cannot be opened costs one dial per period."""

from __future__ import annotations

from redis.asyncio.cluster import ClusterNode

from supervisor.targets.cluster_lanes import ClusterLanes
from supervisor.testing import free_port
from tests.helpers.proxy import FaultProxy


async def test_a_node_that_cannot_take_a_lane_is_not_dialed_per_command():
    """The proxy accepts and finds nothing behind it (a node gone): the first command's
    attempt fails, and the next hundred take the pool's path without dialing."""
    async with FaultProxy(free_port()) as proxy:
        lanes = ClusterLanes(max_waiters=10, retry_after=60.0)
        node = ClusterNode("127.0.0.1", proxy.port, socket_connect_timeout=1.0)
        assert await lanes._lane(node) is None
        assert proxy.accepted == 1
        for _ in range(100):
            assert await lanes._lane(node) is None
        assert proxy.accepted == 1
        lanes.aclose()
        await node.disconnect()
