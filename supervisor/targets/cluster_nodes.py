"""A cluster's nodes as its supervisor checks them: one probe each, and what each answered.

``CLUSTER NODES`` is read from the first node that answers (a replica just promoted
first, then the node asked last time, so the view does not flip between a node that
knows of a failover and one that does not yet); each node answers a PING on its own
probe; a change of a node's state is one ``NodeStateChanged`` event.
"""

from __future__ import annotations

import time
from typing import Any

from redis.asyncio.connection import Connection, SSLConnection
from redis.exceptions import RedisError

from supervisor.causes import Cause
from supervisor.connection import replies
from supervisor.connection.probe import Probe, ProbeFailed
from supervisor.events import NodeStateChanged
from supervisor.targets.cluster_topology import ClusterNodeState, Row, parse_nodes
from supervisor.targets.context import Publish
from supervisor.targets.sentinel import parse_address

__all__ = ("ClusterNodes",)


class ClusterNodes:
    def __init__(
        self,
        seeds: list[str],
        node_kwargs: dict[str, Any],
        *,
        tls: bool,
        timeout: float,
        connect_timeout: float,
        publish: Publish,
    ) -> None:
        self._node_kwargs = node_kwargs
        self._tls = tls
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._publish = publish
        self.known = list(seeds)
        self.unanswered = ""
        """What the last node asked for ``CLUSTER NODES`` did instead of answering."""
        self.promoted: str | None = None
        """A replica that just said it is the master: asked first next time."""
        self.source: str | None = None
        self.states: dict[str, ClusterNodeState] = {}
        self.connect_failures: dict[str, int] = {}
        self._probes: dict[str, Probe] = {}

    @property
    def latencies(self) -> list[float]:
        return [p.latency for p in self._probes.values() if p.latency is not None]

    async def read_topology(self) -> list[Row] | None:
        """``CLUSTER NODES`` from the first node that answers; None when none does."""
        first = [a for a in (self.promoted, self.source) if a is not None]
        self.promoted = None
        up = [a for a, n in self.states.items() if n.up]
        for address in dict.fromkeys([*first, *up, *self.known]):
            try:
                raw = await self._probe(address).call("CLUSTER", "NODES")
            except ProbeFailed as failure:
                self.unanswered = f"{failure.cause.value}: {failure.detail}"
                continue
            rows = parse_nodes(replies.text(raw))
            self.known = [r.address for r in rows]
            self.source = address
            return rows
        return None

    async def forget_departed(self, rows: list[Row]) -> None:
        """Nodes no longer in ``CLUSTER NODES`` (removed with ``CLUSTER FORGET``, or
        replaced) leave ``nodes``, ``/health`` and ``/metrics``; their probes close."""
        present = {r.address for r in rows}
        for address in [a for a in self.states if a not in present]:
            del self.states[address]
        for address in [a for a in self._probes if a not in present]:
            await self._probes.pop(address).close()

    async def check(self, address: str) -> tuple[bool, str]:
        probe = self._probe(address)
        dialing = not probe.is_open
        try:
            latency = await probe.ping()
        except ProbeFailed as failure:
            if dialing:
                cause = failure.cause.value
                self.connect_failures[cause] = self.connect_failures.get(cause, 0) + 1
            return False, f"{failure.cause.value}: {failure.detail}"
        return True, f"PONG in {latency * 1000:.1f} ms"

    async def promoted_among(self, replicas: list[str]) -> bool:
        """Ask each replica already dialled for its ``ROLE``; True (and ``promoted``
        set) when one says it is the master: it knows first, others learn by gossip."""
        for address in replicas:
            probe = self._probes.get(address)
            if probe is None or not probe.is_open:
                continue  # never dialled from here: that is the rounds' work
            try:
                role = await probe.call("ROLE")
            except (ProbeFailed, RedisError):
                continue  # down too, or ROLE not allowed: the rounds still tell
            if role and role[0] in (b"master", "master"):
                self.promoted = address
                return True
        return False

    def record(self, row: Row, up: bool, detail: str) -> None:
        before = self.states.get(row.address)
        self.states[row.address] = ClusterNodeState(row.address, row.role, up, row.slots, detail)
        if before is not None and before.up == up:
            return
        if before is None and up:
            return
        self._publish(
            NodeStateChanged,
            node=row.address,
            role=row.role,
            previous="unknown" if before is None else ("up" if before.up else "down"),
            current="up" if up else "down",
            cause=None if up else Cause.NETWORK,
            detail=detail,
        )

    async def close(self) -> None:
        for probe in self._probes.values():
            await probe.close()

    def _probe(self, address: str) -> Probe:
        probe = self._probes.get(address)
        if probe is None:
            host, port = parse_address(address)
            probe = self._probes[address] = _NodeProbe(
                SSLConnection if self._tls else Connection,
                {**self._node_kwargs, "host": host, "port": port, "protocol": 2},
                timeout=self._timeout,
                connect_timeout=self._connect_timeout,
                idle_timeout=None,
            )
        return probe


class _NodeProbe(Probe):
    """A probe that reconnects by itself and reads no ``INFO``: one per cluster node."""

    async def ping(self) -> float:
        if not self.is_open:
            started = time.perf_counter()
            await self.connect()
            self.latency = time.perf_counter() - started
            return self.latency
        return await super().ping()

    async def call(self, *args: Any) -> Any:
        if not self.is_open:
            await self.connect()
        return await super().call(*args)
