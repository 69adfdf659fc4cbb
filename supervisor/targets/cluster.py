"""Supervising a Redis Cluster: every node checked, topology followed, commands recovered.

``ClusterSupervisor`` owns a ``redis.asyncio.cluster.RedisCluster`` (``sup.client``).
One task checks every node each round (a PING with a reply deadline on the
supervisor's own connection per node), reads ``CLUSTER NODES`` to follow the
topology, and publishes ``NodeStateChanged`` and ``TopologyChanged`` events.
Commands for the slots of a primary found down wait at a gate (``SlotGate``)
for its failover, or fail fast; the other slots are not held.

These redis-py 8.1 behaviours are mended here, at their own depth:
- after a connection error redis-py re-reads the topology and then sends
  ``COMMAND`` to its default node, outside its retry loop; when that node is
  the dead primary, commands for healthy shards fail. The command table does
  not change with the topology, so it is read once, from any node that
  answers; and the default node is moved off any node a health check found down.
- after an error on a node, redis-py closes that node's free connections one
  after another with an await between, so a command may take one and have it
  closed under it (``_Node``); and it hands out a pooled connection the server
  closed while idle.
- to force a topology refresh (CLUSTERDOWN, an uncovered slot, repeated MOVED)
  redis-py calls ``aclose()``, which closes every node's sockets, in-flight
  commands of healthy shards included. Here the refresh is only requested;
  redis-py's refresh then recycles each connection once its command is done.
- redis-py's cluster retries re-send writes whose reply was lost. The client
  here is built without them; ``SupervisedRedisCluster`` follows the single
  target's rule (``supervisor.connection.resend``): it re-sends only what cannot be applied
  twice, after the next health round, within the deadline.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import AsyncGenerator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Self, final
from urllib.parse import urlsplit

import anyio
from anyio import AsyncContextManagerMixin
from redis._parsers import AsyncCommandsParser
from redis.asyncio.cluster import ClusterNode, NodesManager, RedisCluster
from redis.asyncio.connection import Connection, SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    ClusterDownError,
    MaxConnectionsError,
    RedisClusterException,
    RedisError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from supervisor.causes import Cause
from supervisor.config import SupervisorConfig
from supervisor.connection.backoff import Backoff
from supervisor.connection.commands import READ_ONLY, command_name
from supervisor.connection.gate import SlotGate
from supervisor.connection.losses import describe
from supervisor.connection.probe import Probe, ProbeFailed
from supervisor.connection.resend import Failure, failure_of, may_resend
from supervisor.errors import ConfigError, OutcomeUnknown, Unavailable, also_a
from supervisor.events import NodeStateChanged, TopologyChanged
from supervisor.state import ConnectionState
from supervisor.targets.observable import Observable
from supervisor.targets.sentinel import parse_address
from supervisor.targets.single import SupervisorStatistics

__all__ = ("ClusterNodeState", "ClusterSupervisor", "SupervisedRedisCluster")

_PROMOTION_POLL = 0.01
"""Seconds between two ``ROLE`` questions to the replicas of a primary that is down:
the first to answer ``master`` ends the wait of the commands held for its slots."""

_RECOVERABLE = (
    RedisConnectionError,
    RedisTimeoutError,
    ClusterDownError,
    TryAgainError,
    SlotNotCoveredError,
    RedisClusterException,
)


class _CommandsOnce(AsyncCommandsParser):
    """``COMMAND`` is read once, from any node that answers: the command table does
    not change with the topology, and redis-py's default node may be the dead one."""

    def __init__(self, client: RedisCluster) -> None:
        super().__init__()
        self._client = client

    async def initialize(self, node: Any = None) -> None:
        if getattr(self, "commands", None):
            return
        client = self._client
        candidates = [node or getattr(self, "node", None), client.get_default_node()]
        candidates += client.get_primaries() + client.get_replicas()
        failed: Exception | None = None
        for candidate in dict.fromkeys(c for c in candidates if c is not None):
            try:
                await super().initialize(candidate)
                return
            except (RedisConnectionError, RedisTimeoutError) as exc:
                failed = exc
        if failed is not None:
            raise failed
        await super().initialize(node)


class _Node(ClusterNode):
    """A ``ClusterNode`` that never closes a connection another command just took."""

    __slots__ = ()

    async def disconnect_free_connections(self) -> None:
        """redis-py closes a snapshot of the free connections, each one after an
        await, so a command may take one of them in between and find it closed under
        it (a raw ``AttributeError``, or a lost reply on a healthy node). Here each
        connection is closed only while it is still free, without yielding between
        the check and the close."""
        for connection in tuple(self._free):
            if connection in self._free:
                await connection.disconnect(nowait=True)

    async def disconnect_if_needed(self, connection: Connection) -> None:
        """Also drop a connection the server closed while it sat in the pool (an idle
        ``timeout``, ``CLIENT KILL``): a command sent on it would be lost unsent."""
        if connection.is_connected and not connection.should_reconnect():
            try:
                if not await connection.can_read():
                    return
            except RedisConnectionError:
                pass
            connection.mark_for_reconnect()
        await super().disconnect_if_needed(connection)


class _Nodes(NodesManager):
    """Every node redis-py learns of (topology refresh, redirect) becomes a ``_Node``."""

    __slots__ = ()

    def set_nodes(
        self, old: dict[str, ClusterNode], new: dict[str, ClusterNode], remove_old: bool = False
    ) -> None:
        for node in new.values():
            if type(node) is ClusterNode:
                node.__class__ = _Node
        super().set_nodes(old, new, remove_old)


class SupervisedRedisCluster(RedisCluster):
    """The ``RedisCluster`` a ``ClusterSupervisor`` hands out as ``sup.client``."""

    def __init__(
        self, *, owner: ClusterSupervisor, idempotent: frozenset[str], **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.nodes_manager.__class__ = _Nodes
        self.commands_parser = _CommandsOnce(self)
        self._owner = owner
        self._gate = owner.gate
        self._fresh_source: str | None = None
        self._retryable = READ_ONLY | idempotent
        self._supervised = True

    async def aclose(self) -> None:
        """While supervised: request a topology refresh, close nothing (see the module
        docstring); the supervisor closes the client for real when it exits."""
        if self._supervised:
            self._initialize = True
            return
        await super().aclose()

    def refresh_from(self, address: str | None) -> None:
        """Make the next command re-read the slots, asking ``address`` first: the node
        the supervisor's round just read a new topology from. redis-py asks its
        startup nodes in a random order, and one that has not heard of a failover yet
        (gossip takes a few ms) hands back the dead primary: the command would fail
        on it and wait for another round."""
        self._fresh_source = address
        self._initialize = True

    async def initialize(
        self,
        additional_startup_nodes_info: list[tuple[str, int]] | None = None,
        last_failed_node_name: str | None = None,
    ) -> Self:
        source, self._fresh_source = self._fresh_source, None
        manager = self.nodes_manager
        node = None
        if self._initialize and source is not None:
            node = manager.nodes_cache.get(source) or manager.startup_nodes.get(source)
        if node is None:
            await super().initialize(additional_startup_nodes_info, last_failed_node_name)
            return self
        seeds, manager.startup_nodes = manager.startup_nodes, {node.name: node}
        try:
            await super().initialize(additional_startup_nodes_info, last_failed_node_name)
        finally:
            kept = [*manager.startup_nodes.values(), *manager.nodes_cache.values()]
            if manager.startup_nodes.keys() == {node.name}:
                manager.startup_nodes = seeds  # no refresh happened: the seeds stay
            else:  # redis-py made every known node a startup node: close the old seeds
                for seed in seeds.values():
                    if all(seed is not k for k in kept):
                        await seed.disconnect()
        return self

    async def _shutdown(self) -> None:
        """Close every node's connections. redis-py's ``aclose()`` closes nothing while
        a topology refresh is pending (``_initialize``), which is often the case here."""
        self._supervised = False
        self._initialize = False
        await self.aclose()

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if self._gate.closed:
            await self._admit(args, kwargs, anyio.current_time() + self._owner.command_deadline)
        try:
            return await super().execute_command(*args, **kwargs)
        except _RECOVERABLE as exc:
            if failure_of(exc) is Failure.ANSWER:
                raise
            return await self._recover(args, kwargs, exc)

    async def _admit(self, args: tuple[Any, ...], kwargs: dict[str, Any], deadline: float) -> None:
        """Hold a command for a failed primary's slots until its failover is done."""
        gate = self._gate
        slot = None
        if (
            not gate.holds(None)
            and "target_nodes" not in kwargs
            and args[0] not in self.command_flags
        ):
            try:
                slot = await self._determine_slot(*args)
            except RedisError:
                slot = None  # no slot of its own (or none found): redis-py decides
        await gate.wait(slot, deadline)

    async def _recover(self, args: tuple[Any, ...], kwargs: dict[str, Any], exc: Exception) -> Any:
        """The single target's rule (``resend.may_resend``); the wait is for a health
        round that starts after the failure, and then for the command's slots to be
        served, within the command deadline."""
        name = command_name(args)
        deadline = anyio.current_time() + self._owner.command_deadline
        while True:
            failure = failure_of(exc)
            if failure is Failure.ANSWER:
                raise exc
            self._owner.command_failed(exc, failure)
            if not may_resend(failure, name in self._retryable):
                timed_out = failure is Failure.TIMED_OUT
                cls = also_a(OutcomeUnknown, type(exc)) if timed_out else OutcomeUnknown
                raise cls(name, describe(exc)) from exc
            await self._owner.settled(deadline, describe(exc))
            if self._gate.closed:
                await self._admit(args, kwargs, deadline)
            try:
                return await super().execute_command(*args, **kwargs)
            except _RECOVERABLE as again:
                exc = again


@dataclass(frozen=True, slots=True)
class ClusterNodeState:
    """What the supervisor knows of one node."""

    address: str
    role: str
    """``primary`` or ``replica``."""
    up: bool
    slots: str
    """Slot ranges it serves, e.g. ``0-5460``; empty for replicas."""
    detail: str


@dataclass(frozen=True, slots=True)
class _Row:
    address: str
    role: str
    failed: bool
    slots: str
    node_id: str = ""
    primary_id: str = ""
    """For a replica: the node id of its primary."""


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
        self.config = config
        self.gate = SlotGate(
            max_waiters=config.max_waiters, fail_fast=config.offline == "fail_fast"
        )
        self._backoff = Backoff(
            config.backoff_base, config.backoff_cap, jitter=config.backoff_jitter
        )
        self._generation = 0
        self._connect_failures: dict[str, int] = {}
        self._losses: dict[str, int] = {}
        kwargs = config.connection_kwargs()
        kwargs.pop("connection_class", None)
        self._node_kwargs = {k: v for k, v in kwargs.items() if k not in ("host", "port", "db")}
        auth = {k: kwargs[k] for k in ("username", "password") if kwargs.get(k)}
        # rediss://: TLS on every connection, the client's and the probes' alike
        self._tls = urlsplit(config.url).scheme == "rediss"
        tls = {k: v for k, v in kwargs.items() if k.startswith("ssl_")} if self._tls else {}
        self.client = SupervisedRedisCluster(
            **_cluster_options(config, exclude=tls.keys()),
            owner=self,
            idempotent=frozenset(config.idempotent_commands),
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
        self._known = list(config.cluster_nodes)
        self._unanswered = ""
        self._successors: list[str] = []
        """Replicas of primaries that are down, watched for their promotion."""
        self._promoted: str | None = None
        self._source: str | None = None
        self._probes: dict[str, Probe] = {}
        self._nodes: dict[str, ClusterNodeState] = {}
        self._topology: tuple[tuple[str, str], ...] | None = None
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
        return dict(self._nodes)

    def statistics(self) -> SupervisorStatistics:
        latencies = [p.latency for p in self._probes.values() if p.latency is not None]
        return SupervisorStatistics(
            state=self._state,
            generation=self._generation,
            connect_attempts=sum(self._connect_failures.values()),
            connect_attempts_by_cause=dict(self._connect_failures),
            connections_lost=sum(self._losses.values()),
            connections_lost_by_cause=dict(self._losses),
            health_checks=self._rounds_done,
            health_latency=max(latencies) if latencies else None,
            waiters=self.gate.waiters,
            subscribers=len(self._hub),
            dropped_events=self._hub.dropped,
            sentinels_watched=0,
        )

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
                tg.start_soon(self._run)
                try:
                    yield self
                finally:
                    tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                self._transition(ConnectionState.CLOSED, None, "supervisor stopped")
                self._hub.close()
                for probe in self._probes.values():
                    await probe.close()
                await self.client._shutdown()

    async def _run(self) -> None:
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
            for address in self._successors:
                probe = self._probes.get(address)
                if probe is None or not probe.is_open:
                    continue  # never dialled from here: that is the rounds' work
                try:
                    role = await probe.call("ROLE")
                except (ProbeFailed, RedisError):
                    continue  # down too, or ROLE not allowed: the rounds still tell
                if role and role[0] in (b"master", "master"):
                    self._promoted = address  # it knows first: others learn by gossip
                    return
            with anyio.move_on_after(_PROMOTION_POLL if self._successors else math.inf):
                await wake.wait()

    async def _round(self) -> None:
        rows = await self._read_topology()
        if rows is None:
            self._successors = []
            self._transition(
                ConnectionState.RECONNECTING,
                Cause.NETWORK,
                f"no cluster node answers (tried {', '.join(self._known)}; "
                f"last: {self._unanswered})",
            )
            return
        self._follow_topology(rows)
        await self._forget_departed(rows)
        # every node side by side: a round takes one check's deadline, not one per node
        checked: dict[str, tuple[bool, str]] = {}

        async def check(address: str) -> None:
            checked[address] = await self._check(address)

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
            self._record(row, up, detail)
            if row.role == "primary" and row.slots and not up:
                down.append(f"{row.address} ({row.slots})")
                held.extend(_slot_ranges(row.slots))
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

    def _transition(
        self,
        new: ConnectionState,
        cause: Cause | None,
        detail: str,
        held: tuple[tuple[int, int], ...] = (),
    ) -> None:
        """Change the state (``Observable._set_state``) and let the gate follow it."""
        was_held = self.gate.closed
        self._set_state(new, cause, detail)
        if new is ConnectionState.READY:
            if was_held or self._generation == 0:
                self._generation += 1
            self.gate.set(())
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

    async def _read_topology(self) -> list[_Row] | None:
        """``CLUSTER NODES`` from the first node that answers; None when none does
        (``_unanswered`` then says what the last one did). A replica just promoted is
        asked first (others learn of it by gossip, a few ms later), then the node asked
        last time: one source, so the view does not flip between a node that knows of
        a failover and one that does not yet."""
        first = [a for a in (self._promoted, self._source) if a is not None]
        self._promoted = None
        for address in dict.fromkeys([*first, *self._up_first(), *self._known]):
            try:
                raw = await self._probe(address).call("CLUSTER", "NODES")
            except ProbeFailed as failure:
                self._unanswered = f"{failure.cause.value}: {failure.detail}"
                continue
            rows = _parse_nodes(raw.decode() if isinstance(raw, bytes) else str(raw))
            self._known = [r.address for r in rows]
            self._source = address
            return rows
        return None

    async def _forget_departed(self, rows: list[_Row]) -> None:
        """Nodes no longer in ``CLUSTER NODES`` (removed with ``CLUSTER FORGET``, or
        replaced) leave ``nodes``, ``/health`` and ``/metrics``; their probes close."""
        present = {r.address for r in rows}
        for address in [a for a in self._nodes if a not in present]:
            del self._nodes[address]
        for address in [a for a in self._probes if a not in present]:
            await self._probes.pop(address).close()

    def _up_first(self) -> list[str]:
        return [a for a, n in self._nodes.items() if n.up]

    async def _check(self, address: str) -> tuple[bool, str]:
        probe = self._probe(address)
        dialing = not probe.is_open
        try:
            latency = await probe.ping()
        except ProbeFailed as failure:
            if dialing:
                cause = failure.cause.value
                self._connect_failures[cause] = self._connect_failures.get(cause, 0) + 1
            return False, f"{failure.cause.value}: {failure.detail}"
        return True, f"PONG in {latency * 1000:.1f} ms"

    def _probe(self, address: str) -> Probe:
        probe = self._probes.get(address)
        if probe is None:
            host, port = parse_address(address)
            probe = self._probes[address] = _NodeProbe(
                SSLConnection if self._tls else Connection,
                {**self._node_kwargs, "host": host, "port": port, "protocol": 2},
                timeout=self.config.health_check_timeout,
                connect_timeout=self.config.socket_connect_timeout,
                idle_timeout=None,
            )
        return probe

    def _record(self, row: _Row, up: bool, detail: str) -> None:
        before = self._nodes.get(row.address)
        self._nodes[row.address] = ClusterNodeState(row.address, row.role, up, row.slots, detail)
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

    def _follow_topology(self, rows: list[_Row]) -> None:
        topology = tuple(
            sorted((r.address, r.slots) for r in rows if r.role == "primary" and r.slots)
        )
        previous, self._topology = self._topology, topology
        if previous is None or previous == topology:
            return
        self.client.refresh_from(self._source)
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

    def _move_default_node(self) -> None:
        """Keep redis-py's default node (keyless commands, COMMAND) on a node that answers."""
        current = self.client.get_default_node()
        if (
            current is None
            or self._nodes.get(current.name, None) is None
            or self._nodes[current.name].up
        ):
            return
        for node in self.client.get_primaries():
            state = self._nodes.get(node.name)
            if state is not None and state.up:
                self.client.set_default_node(node)
                return


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


def _cluster_options(config: SupervisorConfig, exclude: Iterable[str]) -> dict[str, Any]:
    """``redis_options`` for the ``RedisCluster``; one it does not take is refused, not
    dropped (the node probes take them all)."""
    accepted = inspect.signature(RedisCluster.__init__).parameters
    excluded = set(exclude)
    options = {k: v for k, v in config.redis_options.items() if k not in excluded}
    for name in options:
        if name in _CLUSTER_OWNED:
            raise ConfigError(
                f"redis_options {name!r}: the supervisor sets it for a cluster (TLS comes "
                "from a rediss:// url, credentials from the url); remove it"
            )
        if name not in accepted:
            raise ConfigError(
                f"redis_options {name!r}: redis-py's RedisCluster does not take it, so it "
                "cannot apply to a cluster; remove it from redis_options"
            )
    return options


_CLUSTER_OWNED = frozenset(
    {"startup_nodes", "host", "port", "retry", "ssl", "username", "password", "client_name"}
)


def _slot_ranges(slots: str) -> list[tuple[int, int]]:
    """``"0-5460 5461"`` as inclusive ranges: ``[(0, 5460), (5461, 5461)]``."""
    ranges = []
    for part in slots.split():
        low, _, high = part.partition("-")
        ranges.append((int(low), int(high or low)))
    return ranges


def _parse_nodes(text: str) -> list[_Row]:
    rows = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        flags = set(fields[2].split(","))
        if "noaddr" in flags or "handshake" in flags:
            continue
        address = fields[1].split("@", 1)[0]
        slots = " ".join(f for f in fields[8:] if not f.startswith("["))
        role = "primary" if "master" in flags else "replica"
        rows.append(
            _Row(
                address,
                role,
                "fail" in flags,
                slots if role == "primary" else "",
                node_id=fields[0],
                primary_id=fields[3] if role == "replica" else "",
            )
        )
    return rows
