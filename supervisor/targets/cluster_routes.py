"""Where a cluster's pub/sub names can go: the slot owners and primaries as the last
health round saw them, connections to any node, and the handles that use them.

The ``ClusterSupervisor`` feeds it each round's topology and tells it when a round
ends; its pub/sub handles ask it, and run their tasks in the supervisor's task group
through it, so leaving the supervisor leaves none running.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import anyio
from anyio.abc import TaskGroup
from redis.asyncio.connection import AbstractConnection, Connection, SSLConnection

from supervisor.config import SupervisorConfig
from supervisor.connection import replies
from supervisor.connection.probe import drop
from supervisor.events import Resubscribed
from supervisor.targets.cluster_nodes import ClusterNodes
from supervisor.targets.cluster_topology import ClusterNodeState, slot_ranges
from supervisor.targets.context import Publish
from supervisor.targets.sentinel import parse_address

__all__ = ("ClusterRoutes", "Handle")

SLOTS = 16384


class Handle(Protocol):
    """A cluster pub/sub handle, as the routes see it."""

    @property
    def in_sync(self) -> bool: ...

    async def run(self) -> None: ...

    def after_round(self, topology_changed: bool) -> None: ...


class ClusterRoutes:
    def __init__(
        self,
        config: SupervisorConfig,
        nodes: ClusterNodes,
        node_kwargs: dict[str, Any],
        *,
        tls: bool,
        publish: Publish,
        wake_round: Callable[[], None],
    ) -> None:
        self.config = config
        self._nodes = nodes
        self._node_kwargs = node_kwargs
        self._tls = tls
        self._publish = publish
        self.wake_round = wake_round
        self._owners: list[str | None] = [None] * SLOTS
        self._handles: set[Handle] = set()
        self.tg: TaskGroup | None = None
        self._started = time.time()
        self.since = self._started
        """When the round before the last one read the topology: what the last one
        found new happened after it."""

    def follow(self, topology: tuple[tuple[str, str], ...]) -> None:
        """The primaries and the slots each serves, from a round's ``CLUSTER NODES``."""
        owners: list[str | None] = [None] * SLOTS
        for address, slots in topology:
            for low, high in slot_ranges(slots):
                owners[low : high + 1] = [address] * (high - low + 1)
        self._owners = owners

    def after_round(self, topology: tuple[tuple[str, str], ...] | None, started: float) -> None:
        """A round that read the topology at ``started`` ended; ``topology`` is what it
        read when that changed (the primaries and their slots), else None."""
        self.since, self._started = self._started, started
        if topology is not None:
            self.follow(topology)
        for handle in list(self._handles):
            handle.after_round(topology is not None)

    @property
    def out_of_sync(self) -> int:
        return sum(not h.in_sync for h in self._handles)

    # -- what a handle asks --------------------------------------------------------------

    def owner_of(self, slot: int) -> str | None:
        return self._owners[slot]

    def primaries(self) -> list[str]:
        """Primaries that answered the last health round."""
        return [a for a, n in self._nodes.states.items() if n.role == "primary" and n.up]

    def node(self, address: str) -> ClusterNodeState | None:
        return self._nodes.states.get(address)

    def node_connection(self, address: str) -> AbstractConnection:
        host, port = parse_address(address)
        kind = SSLConnection if self._tls else Connection
        return kind(**{**self._node_kwargs, "host": host, "port": port, "protocol": 2})

    async def seen_by(
        self, address: str, slots: set[int], deadline: float
    ) -> tuple[dict[int, str], str]:
        """The owner of each of ``slots`` and the primary the node follows (empty for a
        primary), as the node at ``address`` says (``CLUSTER SLOTS``, ``ROLE``): a node
        that just gave up a slot knows its new owner."""
        conn = self.node_connection(address)
        try:
            with anyio.fail_after(deadline):
                await conn.connect()
                await conn.send_command("CLUSTER", "SLOTS", check_health=False)
                ranges = await conn.read_response(disconnect_on_error=False)
                await conn.send_command("ROLE", check_health=False)
                role = await conn.read_response(disconnect_on_error=False)
        finally:
            await drop(conn)
        owners = {}
        for start, end, primary, *_ in ranges:
            owner = f"{replies.text(primary[0])}:{primary[1]}"
            owners.update({slot: owner for slot in slots if start <= slot <= end})
        following = ""
        if replies.text(role[0]) == "slave":
            following = f"{replies.text(role[1])}:{role[2]}"
        return owners, following

    def start(self, handle: Handle) -> None:
        if self.tg is None:
            raise RuntimeError(
                "pubsub() needs a running ClusterSupervisor: call it inside "
                "`async with ClusterSupervisor(config) as sup`"
            )
        self._handles.add(handle)
        self.tg.start_soon(self._run, handle)

    async def _run(self, handle: Handle) -> None:
        try:
            await handle.run()
        finally:
            self._handles.discard(handle)

    def publish_resubscribed(self, **fields: Any) -> Resubscribed:
        return self._publish(Resubscribed, **fields)
