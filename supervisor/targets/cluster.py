"""Supervising a Redis Cluster: every node checked, topology followed, commands recovered.

``ClusterSupervisor`` owns a ``redis.asyncio.cluster.RedisCluster`` (``sup.client``).
One task checks every node each round (a PING with a reply deadline on the
supervisor's own connection per node), reads ``CLUSTER NODES`` to follow the
topology, and publishes ``NodeStateChanged`` and ``TopologyChanged`` events.
Commands for the slots of a primary found down wait at a gate (``SlotGate``)
for its failover, or fail fast; the other slots are not held.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Self, final
from urllib.parse import urlsplit

import anyio
from anyio import AsyncContextManagerMixin
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    MaxConnectionsError,
)

from supervisor.causes import Cause
from supervisor.config import SupervisorConfig
from supervisor.connection.backoff import Backoff
from supervisor.connection.deadlines import ReadDeadlines
from supervisor.connection.gate import SlotGate
from supervisor.connection.quiet import install as install_quiet
from supervisor.connection.quiet import quiet_task
from supervisor.connection.resend import Failure
from supervisor.errors import Unavailable
from supervisor.events import TopologyChanged
from supervisor.state import ConnectionState
from supervisor.targets.cluster_client import SupervisedRedisCluster, cluster_options
from supervisor.targets.cluster_lanes import ClusterLanes
from supervisor.targets.cluster_nodes import ClusterNodes
from supervisor.targets.cluster_pubsub import ClusterPubSub
from supervisor.targets.cluster_routes import ClusterRoutes
from supervisor.targets.cluster_topology import ClusterNodeState, Row, slot_ranges
from supervisor.targets.observable import Observable
from supervisor.targets.sentinel import parse_address
from supervisor.targets.statistics import SupervisorStatistics

__all__ = ("ClusterNodeState", "ClusterSupervisor")

_PROMOTION_POLL = 0.01
"""Seconds between two ``ROLE`` questions to the replicas of a primary that is down:
the first to answer ``master`` ends the wait of the commands held for its slots."""


@final
class ClusterSupervisor(Observable, AsyncContextManagerMixin):
    """Supervise a Redis Cluster: ``async with ClusterSupervisor(config) as sup``.

    ``config.cluster_nodes`` lists seed nodes. States: READY while every primary
    answers; UNHEALTHY while some slots have no reachable primary (a failover is
    under way); RECONNECTING while no node answers; CLOSED after the block.
    """

    def __init__(self, config: SupervisorConfig) -> None:
        if not config.cluster_nodes:
            raise ValueError("ClusterSupervisor needs config.cluster_nodes")
        super().__init__(config.target, event_buffer=config.event_buffer)
        install_quiet()
        self.config = config
        self.gate = SlotGate(
            max_waiters=config.max_waiters, fail_fast=config.offline == "fail_fast"
        )
        self._backoff = Backoff(
            config.backoff_base, config.backoff_cap, jitter=config.backoff_jitter
        )
        self._losses: dict[str, int] = {}
        self._outages: dict[str, int] = {}
        kwargs = config.connection_kwargs()
        kwargs.pop("connection_class", None)
        node_kwargs = {k: v for k, v in kwargs.items() if k not in ("host", "port", "db")}
        # a check's replies have the check's deadline (health_check_timeout), as the
        # single target's probe: a busy node that answers within it is up
        node_kwargs["socket_timeout"] = None
        auth = {k: kwargs[k] for k in ("username", "password") if kwargs.get(k)}
        # rediss://: TLS on every connection, the client's and the probes' alike
        self._tls = urlsplit(config.url).scheme == "rediss"
        tls = {k: v for k, v in kwargs.items() if k.startswith("ssl_")} if self._tls else {}
        self._deadlines = ReadDeadlines(config.socket_timeout) if config.socket_timeout else None
        self.client = SupervisedRedisCluster(
            **cluster_options(config, exclude=tls.keys()),
            owner=self,
            deadlines=self._deadlines,
            idempotent=frozenset(config.idempotent_commands),
            lanes=ClusterLanes(max_waiters=config.max_waiters, retry_after=config.backoff_base)
            if config.auto_pipeline
            else None,
            startup_nodes=[ClusterNode(*parse_address(a)) for a in config.cluster_nodes],
            ssl=self._tls,
            **tls,
            retry=Retry(NoBackoff(), 0),
            max_connections=config.max_connections,
            socket_timeout=config.socket_timeout,
            socket_connect_timeout=config.socket_connect_timeout,
            client_name=config.client_name or None,
            decode_responses=config.decode_responses,
            **auth,
        )
        self._nodes = ClusterNodes(
            list(config.cluster_nodes),
            node_kwargs,
            tls=self._tls,
            timeout=config.health_check_timeout,
            connect_timeout=config.socket_connect_timeout,
            publish=self._publish,
        )
        self._successors: list[str] = []
        """Replicas of primaries that are down, watched for their promotion."""
        self._topology: tuple[tuple[str, str], ...] | None = None
        self._routes = ClusterRoutes(
            config,
            self._nodes,
            node_kwargs,
            tls=self._tls,
            publish=self._publish,
            wake_round=self.wake_round,
        )
        self._rounds_started = 0
        self._rounds_done = 0
        self._round_done: anyio.Event | None = None
        self._wake: anyio.Event | None = None
        self._entered = False

    # -- what the application reads ----------------------------------------------------

    @property
    def command_deadline(self) -> float:
        return self.config.command_deadline

    @property
    def nodes(self) -> dict[str, ClusterNodeState]:
        """Every known node, by ``host:port``."""
        return dict(self._nodes.states)

    def statistics(self) -> SupervisorStatistics:
        latencies = self._nodes.latencies
        failures = self._nodes.connect_failures
        return SupervisorStatistics(
            state=self._state,
            generation=self.gate.generation,
            connect_attempts=sum(failures.values()),
            connect_attempts_by_cause=dict(failures),
            connections_lost=sum(self._losses.values()),
            connections_lost_by_cause=dict(self._losses),
            outages_by_cause=dict(self._outages),
            health_checks=self._rounds_done,
            pubsub_out_of_sync=self._routes.out_of_sync,
            health_latency=max(latencies) if latencies else None,
            waiters=self.gate.waiters,
            subscribers=len(self._hub),
            dropped_events=self._hub.dropped,
            sentinels_watched=0,
        )

    def pubsub(self) -> ClusterPubSub:
        """``async with sup.pubsub() as ps``: shard channels follow their slot's owner,
        classic ones stay on one node, keyspace ones are on every primary; a gap is a
        ``Resubscribed`` marker (also published to subscribers) before what follows."""
        return ClusterPubSub(self._routes)

    def wake_round(self) -> None:
        """Run the next health round now (a pub/sub handle saw the topology move)."""
        if self._wake is not None:
            self._wake.set()

    def command_failed(self, exc: BaseException, failure: Failure) -> None:
        """Count a connection a command lost (not a full node pool, not a refusal)."""
        if failure in (Failure.LOST, Failure.TIMED_OUT) or (
            failure is Failure.NOT_SENT and not isinstance(exc, MaxConnectionsError)
        ):
            cause = Cause.NETWORK.value
            self._losses[cause] = self._losses.get(cause, 0) + 1
        if self._wake is not None:
            self._wake.set()

    async def settled(self, deadline: float, why: str) -> None:
        """Wait for a health round that starts after this call (it moves the default
        node off dead nodes and learns the topology); ``Unavailable`` at the deadline."""
        target = self._rounds_started + 1
        if self._wake is not None:
            self._wake.set()
        while self._rounds_done < target:
            if self._state is ConnectionState.CLOSED:
                raise Unavailable(f"Redis Cluster {self.target}: the supervisor is closed")
            if self._round_done is None:
                self._round_done = anyio.Event()
            remaining = deadline - anyio.current_time()
            if remaining <= 0:
                raise Unavailable(
                    f"Redis Cluster {self.target} is {self._state.value}: {self._detail} "
                    f"(command_deadline passed; last error: {why})",
                    cause=self._cause,
                )
            with anyio.move_on_after(remaining):
                await self._round_done.wait()

    # -- lifecycle ----------------------------------------------------------------------

    @asynccontextmanager
    async def __asynccontextmanager__(self) -> AsyncGenerator[Self]:
        if self._entered:
            raise RuntimeError("a ClusterSupervisor can be entered only once")
        self._entered = True
        self._wake = anyio.Event()
        try:
            async with anyio.create_task_group() as tg:
                self._routes.tg = tg
                tg.start_soon(self._run)
                if self._deadlines is not None:
                    tg.start_soon(self._deadlines.run)
                try:
                    yield self
                finally:
                    self._routes.tg = None
                    tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                self._transition(ConnectionState.CLOSED, None, "supervisor stopped")
                self._hub.close()
                await self._nodes.close()
                await self.client._shutdown()

    async def _run(self) -> None:
        quiet_task()  # the supervisor's checks are not the app's, in redis-py's metrics
        while True:
            self._rounds_started += 1
            await self._round()
            self._rounds_done += 1
            if self._round_done is not None:
                self._round_done.set()
                self._round_done = None
            wake = self._wake
            assert wake is not None
            with anyio.move_on_after(self._pause()):
                await self._watch_successors(wake)
            self._wake = anyio.Event()

    def _pause(self) -> float:
        """Every ``health_check_interval`` while READY; otherwise as the single target's
        prober: growing, jittered, never in lockstep."""
        interval = self.config.health_check_interval
        if self._state is ConnectionState.READY:
            self._backoff.reset()
            return interval
        return min(self._backoff.next_delay(), interval)

    async def _watch_successors(self, wake: anyio.Event) -> None:
        """Until ``wake``, or until a replica of a primary that is down says it is the
        master: its promotion ends the wait of the commands held for those slots, so
        the next round runs at once instead of after the pause. One ``ROLE`` per
        replica every ``_PROMOTION_POLL``; nothing to watch while READY."""
        while not wake.is_set():
            if await self._nodes.promoted_among(self._successors):
                return
            with anyio.move_on_after(_PROMOTION_POLL if self._successors else math.inf):
                await wake.wait()

    async def _round(self) -> None:
        started = time.time()
        changed = await self._check_round()
        # the handles learn the new owners with the nodes' new states, at the round's end
        self._routes.after_round(self._topology if changed else None, started)

    async def _check_round(self) -> bool:
        """One round; True when the topology changed (or was read for the first time)."""
        rows = await self._nodes.read_topology()
        if rows is None:
            self._successors = []
            self._transition(
                ConnectionState.RECONNECTING,
                Cause.NETWORK,
                f"no cluster node answers (tried {', '.join(self._nodes.known)}; "
                f"last: {self._nodes.unanswered})",
            )
            return False
        changed = self._follow_topology(rows)
        await self._nodes.forget_departed(rows)
        # every node side by side: a round takes one check's deadline, not one per node
        checked: dict[str, tuple[bool, str]] = {}

        async def check(address: str) -> None:
            checked[address] = await self._nodes.check(address)

        async with anyio.create_task_group() as tg:
            for row in rows:
                tg.start_soon(check, row.address)
        down: list[str] = []
        held: list[tuple[int, int]] = []
        down_ids: set[str] = set()
        for row in rows:
            up, detail = checked[row.address]
            if row.failed:
                up, detail = False, "the cluster marks it failed (fail flag)"
            self._nodes.record(row, up, detail)
            if row.role == "primary" and row.slots and not up:
                down.append(f"{row.address} ({row.slots})")
                held.extend(slot_ranges(row.slots))
                down_ids.add(row.node_id)
        self._successors = [
            r.address
            for r in rows
            if r.role == "replica" and r.primary_id in down_ids and checked[r.address][0]
        ]
        self._move_default_node()
        if down:
            self._transition(
                ConnectionState.UNHEALTHY,
                Cause.NETWORK,
                "primary down, its slots wait for a failover: " + ", ".join(down),
                tuple(held),
            )
        else:
            self._transition(
                ConnectionState.READY,
                None,
                f"{sum(r.role == 'primary' and bool(r.slots) for r in rows)} primaries answer",
            )
        return changed

    def _transition(
        self,
        new: ConnectionState,
        cause: Cause | None,
        detail: str,
        held: tuple[tuple[int, int], ...] = (),
    ) -> None:
        """Change the state (``Observable._set_state``) and let the gate follow it."""
        was_held = self.gate.closed
        previous, was = self._state, self._cause
        self._set_state(new, cause, detail)
        if new is ConnectionState.READY and previous is ConnectionState.RECONNECTING:
            outage = (was or Cause.NETWORK).value
            self._outages[outage] = self._outages.get(outage, 0) + 1
        if new is ConnectionState.READY:
            self.gate.set((), new_generation=was_held or self.gate.generation == 0)
        else:
            self.gate.set(
                held,
                everything=new is ConnectionState.RECONNECTING,
                refusing=new is ConnectionState.CLOSED,
                refusal=self._refusal,
            )

    def _refusal(self, why: str) -> Unavailable:
        return Unavailable(
            f"Redis Cluster {self.target} is {self._state.value}: {self._detail} ({why})",
            cause=self._cause,
        )

    def _follow_topology(self, rows: list[Row]) -> bool:
        topology = tuple(
            sorted((r.address, r.slots) for r in rows if r.role == "primary" and r.slots)
        )
        previous, self._topology = self._topology, topology
        if previous == topology:
            return False
        if previous is None:
            return True
        self.client.refresh_from(self._nodes.source)
        before = dict(previous)
        changes = [
            f"{address} now serves {slots}"
            + (
                f" (was {', '.join(a for a, s in before.items() if s == slots)})"
                if address not in before
                else ""
            )
            for address, slots in topology
            if before.get(address) != slots
        ]
        self._publish(
            TopologyChanged,
            primaries=tuple(a for a, _ in topology),
            detail="; ".join(changes) or "primaries changed",
        )
        return True

    def _move_default_node(self) -> None:
        """Keep redis-py's default node (keyless commands, COMMAND) on a node that answers."""
        current = self.client.get_default_node()
        states = self._nodes.states
        if current is None or current.name not in states or states[current.name].up:
            return
        for node in self.client.get_primaries():
            state = states.get(node.name)
            if state is not None and state.up:
                self.client.set_default_node(node)
                return
