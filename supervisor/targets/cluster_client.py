"""``SupervisedRedisCluster``: the ``RedisCluster`` of ``sup.client``, mended.

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
- redis-py's cluster builds every node's connections of its own class; here they are
  the pool's (``supervisor.connection.connections``), whose plain writes pay no timer
  and whose reads' deadlines the supervisor's ``ReadDeadlines`` task keeps.
- redis-py's cluster retries re-send writes whose reply was lost. The client
  here is built without them; ``SupervisedRedisCluster`` follows the single
  target's rule (``supervisor.connection.resend``): it re-sends only what cannot be applied
  twice, after the next health round, within the deadline.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any, Protocol, Self

import anyio
from redis._parsers import AsyncCommandsParser
from redis.asyncio.cluster import ClusterNode, NodesManager, RedisCluster
from redis.asyncio.connection import Connection
from redis.exceptions import (
    ClusterDownError,
    RedisClusterException,
    RedisError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from supervisor.config import SupervisorConfig
from supervisor.connection.autopipeline import may_pipeline
from supervisor.connection.commands import READ_ONLY, command_name
from supervisor.connection.connections import connection_class_for
from supervisor.connection.deadlines import ReadDeadlines
from supervisor.connection.gate import SlotGate
from supervisor.connection.losses import describe
from supervisor.connection.resend import Failure, explained, failure_of, may_resend, stands
from supervisor.errors import ConfigError, OutcomeUnknown, also_a
from supervisor.targets.cluster_lanes import ClusterLanes

__all__ = ("Owner", "SupervisedRedisCluster", "cluster_options")

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
            if not _dirty(connection):
                return
            connection.mark_for_reconnect()
        await super().disconnect_if_needed(connection)


def _dirty(connection: Connection) -> bool:
    """What redis-py's ``can_read()`` checks, without its two awaits on every command:
    the server closed the socket, or bytes nobody asked for wait in its buffers."""
    stream: Any = getattr(connection, "_reader", None)
    if stream is None:
        return False
    reader = getattr(connection._parser, "_reader", None)
    pending = getattr(reader, "has_data", None)
    return bool(stream.at_eof() or stream._buffer or (pending is not None and pending()))


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


class Owner(Protocol):
    """What the client needs from the ``ClusterSupervisor`` that made it."""

    gate: SlotGate

    @property
    def command_deadline(self) -> float: ...

    def command_failed(self, exc: BaseException, failure: Failure) -> None: ...

    async def settled(self, deadline: float, why: str) -> None: ...


class SupervisedRedisCluster(RedisCluster):
    """The ``RedisCluster`` a ``ClusterSupervisor`` hands out as ``sup.client``."""

    def __init__(
        self,
        *,
        owner: Owner,
        idempotent: frozenset[str],
        lanes: ClusterLanes | None = None,
        deadlines: ReadDeadlines | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        shared = self.connection_kwargs  # every node redis-py makes later is made of it
        shared["connection_class"] = connection_class_for(dict(shared), deadlines)
        for node in self.nodes_manager.startup_nodes.values():
            node.connection_class = shared["connection_class"]
        self._lanes = lanes
        self._one_key: frozenset[str] | None = None
        if lanes is not None:  # without lanes, redis-py's own method, no layer on top
            self._execute_command = self._execute_on_lanes  # type: ignore[method-assign]
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

    async def _execute_on_lanes(self, target_node: Any, *args: Any, **kwargs: Any) -> Any:
        """redis-py's ``_execute_command`` with ``auto_pipeline``: a plain command goes over
        its node's shared connection (``ClusterLanes``); the rest as redis-py sends them."""
        if may_pipeline(args[0], kwargs):
            return await self._lanes.execute(self, target_node, args, kwargs)  # type: ignore[union-attr]
        return await RedisCluster._execute_command(self, target_node, *args, **kwargs)

    async def _shutdown(self) -> None:
        """Close every node's connections. redis-py's ``aclose()`` closes nothing while
        a topology refresh is pending (``_initialize``), which is often the case here."""
        if self._lanes is not None:
            self._lanes.aclose()
        self._supervised = False
        self._initialize = False
        await self.aclose()

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if self._gate.closed:
            await self._admit(args, kwargs, anyio.current_time() + self._owner.command_deadline)
        try:
            node = self._lane_node(args, kwargs) if self._lanes is not None else None
            if node is not None:
                return await self._lanes.execute(self, node, args, kwargs)  # type: ignore[union-attr]
            return await super().execute_command(*args, **kwargs)
        except _RECOVERABLE as exc:
            if failure_of(exc) is Failure.ANSWER:
                raise
            return await self._recover(args, kwargs, exc)

    def _lane_node(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """With ``auto_pipeline``, the primary of a one-key command's slot, read off the
        slot table as redis-py reads it but without its general routing (a command
        table lookup and a policy per command: most of a GET's cost); None for
        anything else, which redis-py routes (then ``_execute_command``)."""
        one_key = self._one_key
        if one_key is None:
            table = getattr(self.commands_parser, "commands", None)
            if not table:
                return None
            one_key = self._one_key = frozenset(
                name.upper()
                for name, c in table.items()
                if isinstance(c, dict)
                and c.get("first_key_pos") == 1
                and c.get("last_key_pos") == 1
                and "movablekeys" not in c.get("flags", ())
            )
        name = args[0]
        if (
            name not in one_key
            or len(args) < 2
            or self._initialize
            or self.read_from_replicas
            or "target_nodes" in kwargs
            or not may_pipeline(name, kwargs)
        ):
            return None
        owners = self.nodes_manager.slots_cache.get(self.keyslot(args[1]))
        return owners[0] if owners else None

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
        """The single target's rule (``resend``: ``may_resend``, ``stands``, ``explained``);
        the wait is for a health round that starts after the failure, and then for the
        command's slots to be served, within the command deadline."""
        name = command_name(args)
        deadline = anyio.current_time() + self._owner.command_deadline
        timed_out = False
        while True:
            failure = failure_of(exc)
            if stands(failure, timed_out):
                raise exc
            timed_out = timed_out or failure is Failure.TIMED_OUT
            generation = self._gate.generation
            self._owner.command_failed(exc, failure)
            if not may_resend(failure, name in self._retryable):
                cls = (
                    also_a(OutcomeUnknown, type(exc))
                    if failure is Failure.TIMED_OUT
                    else OutcomeUnknown
                )
                raise cls(name, describe(exc)) from exc
            await self._owner.settled(deadline, describe(exc))
            if self._gate.closed:
                await self._admit(args, kwargs, deadline)
            if not explained(failure, generation, self._gate.generation):
                raise exc
            try:
                return await super().execute_command(*args, **kwargs)
            except _RECOVERABLE as again:
                exc = again


def cluster_options(config: SupervisorConfig, exclude: Iterable[str]) -> dict[str, Any]:
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
