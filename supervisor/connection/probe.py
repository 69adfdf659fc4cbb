"""The supervisor's own connection: health checks with a reply deadline, and
the server facts (``INFO``, ``CONFIG GET timeout``) that attribution needs.

It is never a pooled connection, so a stalled check cannot hold up a
command, and a reply that arrives after its deadline cannot reach anyone:
the connection is dropped when the deadline passes.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import socket
import ssl
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, replace
from typing import Any

import anyio
from redis.asyncio.connection import AbstractConnection, SSLConnection
from redis.exceptions import RedisError, ResponseError

from supervisor.causes import Cause, Evidence, attribute
from supervisor.connection import replies, scheme
from supervisor.connection.losses import describe
from supervisor.connection.schedule import Showed, showed_by

__all__ = ("Probe", "ProbeFailed", "ServerFacts", "drop")


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerFacts:
    """What the server said about itself at one moment."""

    run_id: str
    uptime: int
    version: str
    """Product and version: ``Redis 7.0.15``, ``Valkey 9.1.2``."""
    idle_timeout: float | None
    """The server's ``timeout`` (0: disabled; None: unknown)."""
    output_buffer_disconnections: int | None
    evicted_clients: int | None
    rejected_connections: int | None
    role: str
    """``master`` or ``slave``, from ``INFO replication``."""
    address: str
    """``host:port`` the facts were read from."""
    sampled_at: float = 0.0
    """``time.monotonic()`` when the counters were read."""


class ProbeFailed(Exception):
    """A probe could not connect or did not get its reply.

    ``stalled`` is true when the server accepted the connection but did not
    answer in time (it is stopped, or packets are being dropped); ``showed``
    is what the attempt showed, which decides when the next one comes.
    """

    def __init__(
        self,
        cause: Cause,
        detail: str,
        *,
        stalled: bool = False,
        showed: Showed = Showed.TURNED_AWAY,
    ) -> None:
        super().__init__(detail)
        self.cause = cause
        self.detail = detail
        self.stalled = stalled
        self.showed = showed


class Probe:
    """One dedicated connection, opened and checked under deadlines."""

    def __init__(
        self,
        connection_class: type[AbstractConnection],
        kwargs: dict[str, Any],
        *,
        timeout: float,
        connect_timeout: float,
        idle_timeout: float | None,
    ) -> None:
        self._class = connection_class
        self._kwargs = kwargs
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._configured_idle_timeout = idle_timeout
        self._config_allowed = True
        self._conn: AbstractConnection | None = None
        self._scheme_asked = False
        self.step: str | None = None
        """What the probe awaits a reply to now (None: nothing): names a stall."""
        self.latency: float | None = None
        self.on_round_trip: Callable[[float], None] | None = None
        """Called with each health-check round trip (the OTel histogram)."""
        self.refused: dict[str, str] = {}
        """Commands the server refused this user (ACL), with what the supervisor
        cannot see without them: it degrades instead of failing."""

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    async def open(self, known: ServerFacts | None = None) -> ServerFacts:
        """Connect afresh and read the server facts; raise ``ProbeFailed``.

        With ``known`` facts its idle timeout is kept (the next health round reads it
        again), so reconnecting costs one round trip less.
        """
        await self.connect()
        return await self.facts(known)

    async def connect(self) -> None:
        """Connect afresh (handshake included) under the deadline; raise ``ProbeFailed``."""
        await self.close()
        conn = self._class(**self._kwargs)
        self.step = "the handshake"
        try:
            with anyio.fail_after(self._connect_timeout + self._timeout):
                await conn.connect()
            self.step = None
        except TimeoutError as exc:
            await drop(conn)
            raise await self._explained(
                exc,
                ProbeFailed(
                    Cause.NETWORK,
                    f"connected but no handshake reply within "
                    f"{self._connect_timeout + self._timeout:g} s (server stalled or "
                    "packets dropped)",
                    stalled=True,
                ),
            ) from None
        except (RedisError, OSError) as exc:
            await drop(conn)
            raise await self._explained(exc, _failed(exc)) from None
        except BaseException:
            await drop(conn)
            raise
        self._scheme_asked = False
        if self._moved(conn):
            # the target moved (Sentinel) while this connect was under way: never watch
            # the old server; the next attempt goes to the new address at once
            await drop(conn)
            raise ProbeFailed(
                Cause.FAILOVER,
                "the target moved while the health probe was connecting",
                showed=Showed.REFUSED,
            )
        self._conn = conn

    async def knock(self) -> None:
        """A bare non-blocking connect, closed at once: while nothing listens it tells
        that at the cost of a socket (no redis-py connection, no handshake), so a long
        refused outage stays cheap. Raise ``ProbeFailed`` (``REFUSED``) unless something
        accepts now; anything else it sees is left to the full attempt that follows."""
        where = self.knock_address()
        if where is None:
            return
        family, address = where
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            # a host that answers at once (loopback, the same host) has answered by the
            # time connect returns: no trip through the event loop
            code = sock.connect_ex(address)
            if code == errno.EINPROGRESS:
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code == 0:
                    with anyio.fail_after(self._connect_timeout):
                        await asyncio.get_running_loop().sock_connect(sock, address)
        except (ConnectionRefusedError, FileNotFoundError) as exc:
            code = exc.errno or errno.ECONNREFUSED
        except (OSError, TimeoutError):
            return
        finally:
            sock.close()
        if code in (errno.ECONNREFUSED, errno.ENOENT):
            shown = address if isinstance(address, str) else f"{address[0]}:{address[1]}"
            raise ProbeFailed(
                Cause.NETWORK,
                f"Error {code} connecting to {shown}. {os.strerror(code)}.",
                showed=Showed.REFUSED,
            )

    def knock_address(self) -> tuple[int, Any] | None:
        """The socket family and address a knock connects to; None for a host name
        (resolving it is the full attempt's job)."""
        kwargs = self._kwargs
        path = kwargs.get("path")
        if path:
            return socket.AF_UNIX, path
        host, port = kwargs.get("host", "localhost"), int(kwargs.get("port", 6379))
        try:
            version = ipaddress.ip_address(host).version
        except ValueError:
            return None
        return (socket.AF_INET6 if version == 6 else socket.AF_INET), (host, port)

    async def _explained(self, exc: BaseException, failure: ProbeFailed) -> ProbeFailed:
        """A handshake reset without a reply (plain) or one that timed out or broke in
        TLS is what a scheme that does not match the port looks like: ask the port once
        (until a connect works again) what it speaks, and name the fix if that is it."""
        tls = issubclass(self._class, SSLConnection)
        host, port = self._kwargs.get("host"), self._kwargs.get("port")
        if self._scheme_asked or self._kwargs.get("path") or not host or not port:
            return failure
        if isinstance(_innermost(exc), ssl.SSLCertVerificationError):
            return failure
        if not (tls or isinstance(_innermost(exc), ConnectionResetError)):
            return failure
        self._scheme_asked = True
        wrong = await scheme.mismatch(str(host), int(port), tls=tls, timeout=self._timeout)
        if wrong is None:
            return failure
        return ProbeFailed(Cause.TLS, f"{failure.detail.rstrip('.')}: {wrong}", showed=Showed.TLS)

    def _moved(self, conn: AbstractConnection) -> bool:
        address = (getattr(conn, "host", None), getattr(conn, "port", None))
        return address != (self._kwargs.get("host"), self._kwargs.get("port"))

    async def ping(self) -> float:
        """PING and wait for PONG within the health-check timeout; return the latency."""
        started = time.perf_counter()
        with suppress(ResponseError):  # the server answered, even if it refused PING
            await self._call("PING")
        self.latency = latency = time.perf_counter() - started
        if self.on_round_trip is not None:
            self.on_round_trip(latency)
        return latency

    async def facts(self, known: ServerFacts | None = None) -> ServerFacts:
        """Read ``INFO`` and, where allowed and not ``known``, ``CONFIG GET timeout``."""
        started = time.perf_counter()
        info = await self._info()
        self.latency = time.perf_counter() - started
        if self.on_round_trip is not None:
            self.on_round_trip(self.latency)
        if info.get("loading") == "1":
            await self.close()
            raise ProbeFailed(Cause.LOADING, "INFO persistence says loading:1")
        idle_timeout = known.idle_timeout if known else await self.idle_timeout()
        return ServerFacts(
            run_id=info.get("run_id", ""),
            uptime=int(info.get("uptime_in_seconds", "0")),
            version=replies.product(info),
            idle_timeout=idle_timeout,
            output_buffer_disconnections=replies.to_int(
                info.get("client_output_buffer_limit_disconnections")
            ),
            evicted_clients=replies.to_int(info.get("evicted_clients")),
            rejected_connections=replies.to_int(info.get("rejected_connections")),
            role=info.get("role", "master"),
            sampled_at=time.monotonic(),
            address=f"{self._kwargs.get('host', self._kwargs.get('path'))}:"
            f"{self._kwargs.get('port', '')}".rstrip(":"),
        )

    async def _info(self) -> dict[str, str]:
        """``INFO``, or, for a user that may not run it, what ``HELLO`` tells (version,
        role): restarts and server-wide counters are then unknown."""
        if "INFO" not in self.refused:
            try:
                return replies.info(await self._call("INFO"))
            except ResponseError as exc:
                self.refused["INFO"] = (
                    f"{describe(exc)}: without INFO a restart is not told from another loss "
                    "(no run_id), a loading server is seen only by its LOADING replies, and "
                    "the output-buffer and eviction counters are unknown; allow it with "
                    "`ACL SETUSER <user> +info`"
                )
        try:
            hello = replies.pairs(await self._call("HELLO"))
        except ResponseError:
            hello = {}
        return {
            "redis_version": hello.get("version", "?"),
            "role": "slave" if hello.get("role") == "replica" else hello.get("role", "master"),
        }

    async def counters(self, facts: ServerFacts) -> ServerFacts:
        """``facts`` with fresh ``INFO stats`` counters: a server-wide counter compared
        across a loss is evidence only if its earlier sample is recent."""
        if "INFO" in self.refused:
            return facts
        stats = replies.info(await self._call("INFO", "stats"))
        return replace(
            facts,
            output_buffer_disconnections=replies.to_int(
                stats.get("client_output_buffer_limit_disconnections")
            ),
            evicted_clients=replies.to_int(stats.get("evicted_clients")),
            rejected_connections=replies.to_int(stats.get("rejected_connections")),
            sampled_at=time.monotonic(),
        )

    async def idle_timeout(self) -> float | None:
        """The server's ``timeout``: asked with ``CONFIG GET`` while the server allows
        it (managed Redis may not), else the configured ``server_idle_timeout``."""
        if self._config_allowed:
            try:
                return float(replies.config_value(await self._call("CONFIG", "GET", "timeout")))
            except ResponseError:
                self._config_allowed = False
        return self._configured_idle_timeout

    async def output_buffers(self, client_ids: list[int]) -> dict[int, int]:
        """``omem`` (bytes of output waiting) per client id, from ``CLIENT LIST ID``."""
        if "CLIENT LIST" in self.refused:
            return {}
        try:
            raw = await self._call("CLIENT", "LIST", "ID", *client_ids)
        except ResponseError as exc:
            self.refused["CLIENT LIST"] = (
                f"{describe(exc)}: without CLIENT LIST the unread output of pub/sub "
                "connections is not sampled, so an output-buffer eviction is told only by "
                "the server's counters; allow it with `ACL SETUSER <user> +client|list`"
            )
            return {}
        out = {}
        for line in replies.text(raw).splitlines():
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
            if "id" in fields and "omem" in fields:
                out[int(fields["id"])] = int(fields["omem"])
        return out

    def detach(self) -> AbstractConnection | None:
        """Hand the open connection over (to the pool) and forget it."""
        conn, self._conn = self._conn, None
        return conn

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await drop(conn)

    async def call(self, *args: Any) -> Any:
        """One command on the probe connection, under the health-check deadline."""
        return await self._call(*args)

    async def _call(self, *args: Any) -> Any:
        conn = self._conn
        if conn is None:
            raise ProbeFailed(Cause.UNKNOWN, "probe connection is not open")
        self.step = str(args[0])
        try:
            with anyio.fail_after(self._timeout):
                await conn.send_command(*args, check_health=False)
                # raw bytes, decoded leniently by ``replies``: a server's INFO carries
                # what clients sent (an error's first word in errorstats, client names)
                reply = await conn.read_response(disable_decoding=True)
            self.step = None
            return reply
        except TimeoutError:
            await self.close()
            raise ProbeFailed(
                Cause.NETWORK,
                f"no reply to {args[0]} within {self._timeout:g} s "
                "(server stalled or packets dropped)",
                stalled=True,
            ) from None
        except ResponseError as exc:
            # an error reply is an answer (an ACL refusal, a renamed command): the caller
            # degrades; only LOADING says the server cannot be used yet
            if "loading" in str(exc).lower():
                await self.close()
                raise _failed(exc) from None
            raise
        except (RedisError, OSError) as exc:
            await self.close()
            raise _failed(exc) from None


def _innermost(exc: BaseException) -> BaseException:
    seen = exc
    for _ in range(8):
        inner = seen.__cause__ or seen.__context__
        if inner is None:
            break
        seen = inner
    return seen


def _failed(exc: BaseException) -> ProbeFailed:
    cause, detail = attribute(Evidence(error=describe(exc), reachable=False))
    return ProbeFailed(cause, detail, showed=showed_by(exc, cause))


async def drop(conn: AbstractConnection) -> None:
    with anyio.CancelScope(shield=True), anyio.move_on_after(1), suppress(RedisError, OSError):
        await conn.disconnect(nowait=True)
