"""``SupervisorConfig``: every setting of one supervised target, validated.

Loaded from keyword arguments, a mapping, or a TOML file with environment
overrides (``SUPERVISOR_<KEY>``, e.g. ``SUPERVISOR_URL``). Unknown keys and
bad values are rejected with a message naming the key; the password in a URL
never appears in a message, a log line or a repr.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from redis.asyncio.connection import parse_url
from redis.driver_info import DriverInfo

from supervisor._version import __version__
from supervisor.errors import ConfigError
from supervisor.options import (
    MAX_SECONDS,
    MIN_SECONDS,
    URL_KEYS,
    check_redis_options,
    check_url,
    closest,
    keepalive_options,
    redact_url,
)
from supervisor.sources import coerce, env_overrides, read_toml

__all__ = ("SupervisorConfig", "redact_url")

Offline = Literal["wait", "fail_fast"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisorConfig:
    """Settings of one supervised Redis target; each has a working default.

    Args:
        url: ``redis://[[user]:password@]host:port/db``, ``rediss://`` or ``unix://``.
            Its query options are redis-py's: one that names a key of this config
            (``max_connections``, ``socket_timeout``, ``socket_connect_timeout``,
            ``client_name``, ``decode_responses``; ``socket_keepalive`` for
            ``tcp_keepalive``) sets that key, as it wins in redis-py; the others go to
            redis-py's connections untouched.
        client_name: set with ``CLIENT SETNAME`` on every connection; None or ``""``
            (the default, as in redis-py) sets none. Every connection names the
            library with ``CLIENT SETINFO`` (Redis 7.2+): ``lib-name=redis-py(supervisor_v…)``.
        health_check_interval: seconds between health checks (PING with a
            reply deadline) that run whether or not the app sends commands.
        health_check_timeout: seconds a health check waits for its reply.
        refused_interval: seconds between attempts while nothing listens (connection
            refused): such an attempt costs the server nothing, so it does not grow.
        backoff_base / backoff_cap: bounds, in seconds, of the growing delay after an
            attempt that something accepted and then turned away (maxclients,
            LOADING, a reset, a timeout); ``backoff_jitter`` is ``"narrow"``,
            ``"equal"``, ``"full"`` or ``"decorrelated"``. The defaults (0.36-0.45 s)
            mean a process is back within 0.45 s of the target accepting again.
        auth_retry_interval: seconds between attempts while the credentials or the TLS
            handshake are refused.
        command_deadline: seconds a command waits through an outage before it
            fails with ``Unavailable``.
        offline: ``"wait"`` (commands wait up to ``command_deadline``) or
            ``"fail_fast"`` (they fail at once while the target is not READY).
        max_waiters: commands allowed to wait at once; more fail at once.
        max_connections: size of the connection pool.
        socket_timeout / socket_connect_timeout: seconds, per read and per connect;
            ``socket_timeout`` None (``"none"`` in a file) waits for a reply without
            limit, as redis-py does by default. A blocking command (``BLPOP``,
            ``XREAD BLOCK``, ``WAIT``...) waits its own timeout on top of it.
        tcp_keepalive, tcp_keepalive_idle/interval/count: kernel keepalive probes.
        server_idle_timeout: the server's ``timeout`` when ``CONFIG GET`` is not
            allowed (managed Redis); otherwise it is read from the server.
        idempotent_commands: extra commands that are safe to re-send after a
            lost reply (read-only commands always are).
        decode_responses: as in redis-py.
        auto_pipeline: ``sup.client`` sends the plain commands of concurrent
            coroutines over one shared connection, all those queued at once in one
            write (``supervisor.connection.autopipeline``). Blocking and transaction commands,
            pipelines, pub/sub and ``client()`` keep the pool. Off by default;
            RESP2 only, and not with ``cluster_nodes``.
        event_buffer: default buffer size of each subscriber.
        sentinels: ``host:port`` of Redis Sentinels; when set, the target is the
            Sentinel service ``service_name`` and ``url`` only gives the database,
            the credentials and TLS (its host and port are not used).
        role: ``"master"`` (follow failovers) or ``"replica"`` (a healthy replica).
        sentinel_username / sentinel_password: credentials of the sentinels themselves
            (their ``requirepass`` or ACL user), separate from the data nodes' in ``url``,
            as redis-py's ``sentinel_kwargs``. The password never shows in a repr.
        sentinel_tls: connect to the sentinels over TLS, with the ``ssl_*`` options of
            ``url`` and ``redis_options`` (the data nodes' TLS is the url's scheme).
        cluster_nodes: ``host:port`` seed nodes of a Redis Cluster; when set, the
            target is the cluster (use ``ClusterSupervisor``) and ``url`` only gives
            the credentials and TLS (``rediss://``: every node connection, the
            health checks' too, uses TLS with the url's ``ssl_*`` options).
        redis_options: keyword arguments passed untouched to every redis-py
            connection (``encoding``, ``encoding_errors``, ``protocol``,
            ``health_check_interval``, ``credential_provider``, ``driver_info``...).
            Options this config owns are refused with the key to use instead.
    """

    url: str = field(default="redis://127.0.0.1:6379/0", repr=False)
    client_name: str | None = None
    health_check_interval: float = 1.0
    health_check_timeout: float = 0.5
    refused_interval: float = 0.005
    backoff_base: float = 0.45
    backoff_cap: float = 0.45
    backoff_jitter: Literal["narrow", "equal", "full", "decorrelated"] = "narrow"
    auth_retry_interval: float = 5.0
    command_deadline: float = 10.0
    offline: Offline = "wait"
    max_waiters: int = 1000
    max_connections: int = 100
    socket_timeout: float | None = 5.0
    socket_connect_timeout: float = 5.0
    tcp_keepalive: bool = True
    tcp_keepalive_idle: int = 30
    tcp_keepalive_interval: int = 5
    tcp_keepalive_count: int = 3
    server_idle_timeout: float | None = None
    idempotent_commands: tuple[str, ...] = ()
    decode_responses: bool = False
    auto_pipeline: bool = False
    event_buffer: int = 100
    sentinels: tuple[str, ...] = ()
    service_name: str = ""
    role: Literal["master", "replica"] = "master"
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    sentinel_tls: bool = False
    cluster_nodes: tuple[str, ...] = ()
    redis_options: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        check_url(self.url)
        _apply_url_options(self)
        _validate(self)
        # command names are compared upper-case wherever they come from
        object.__setattr__(
            self, "idempotent_commands", tuple(n.upper() for n in self.idempotent_commands)
        )

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self) if f.repr
        )
        # values of redis_options may be secrets (password, credential_provider)
        options = ", ".join(sorted(self.redis_options))
        return (
            f"SupervisorConfig(url={self.display_url!r}, {fields}, "
            f"redis_options=<{options or 'none'}>)"
        )

    @property
    def display_url(self) -> str:
        """The URL with its password redacted: safe for logs and events."""
        return redact_url(self.url)

    @property
    def target(self) -> str:
        """``host:port/db`` (or the socket path, or ``service@sentinel/db``): the name used
        in events and logs."""
        kwargs = self._parsed()
        if self.cluster_nodes:
            return f"cluster@{self.cluster_nodes[0]}"
        if self.sentinels:
            suffix = "" if self.role == "master" else ":replica"
            return f"{self.service_name}@sentinel{suffix}/{kwargs.get('db', 0)}"
        if "path" in kwargs:
            return f"unix:{kwargs['path']}/{kwargs.get('db', 0)}"
        host = kwargs.get("host", "localhost")
        return f"{host}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"

    def _parsed(self) -> dict[str, Any]:
        return dict(parse_url(self.url))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, source: str = "config") -> SupervisorConfig:
        """Build a config from a mapping, rejecting unknown keys by name."""
        known = {f.name for f in dataclasses.fields(cls)}
        for key in values:
            if key not in known:
                hint = closest(key, known)
                raise ConfigError(
                    f"{source}: unknown key {key!r}{hint}; valid keys: {', '.join(sorted(known))}"
                )
        coerced = {k: coerce(k, v, source, _DEFAULTS) for k, v in values.items()}
        try:
            return cls(**coerced)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SupervisorConfig:
        """The defaults, overridden by ``SUPERVISOR_<KEY>`` variables of ``env``
        (``os.environ`` by default): for apps configured by their environment."""
        values = env_overrides(os.environ if env is None else env, _KEYS)
        return cls.from_mapping(values, source="environment (SUPERVISOR_*)")

    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None
    ) -> SupervisorConfig:
        """Load a TOML file; ``SUPERVISOR_<KEY>`` variables in ``env`` override it.

        ``env`` defaults to ``os.environ``; pass ``{}`` to ignore the environment.
        """
        file = Path(path)
        values = read_toml(file)
        values.update(env_overrides(os.environ if env is None else env, _KEYS))
        return cls.from_mapping(values, source=str(file))

    def connection_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for redis-py connections built from this config."""
        kwargs = self._parsed()
        for name in URL_KEYS:
            kwargs.pop(name, None)
        kwargs.update(self.redis_options)
        kwargs.update(
            client_name=self.client_name or None,
            socket_timeout=self.socket_timeout,
            socket_connect_timeout=self.socket_connect_timeout,
            decode_responses=self.decode_responses,
        )
        if not {"driver_info", "lib_name", "lib_version"} & kwargs.keys():
            # CLIENT SETINFO as redis-py sends it, naming this library on top (Redis
            # 7.2+; older servers refuse it and redis-py ignores the refusal)
            kwargs["driver_info"] = DriverInfo().add_upstream_driver("supervisor", __version__)
        if "path" not in kwargs:
            kwargs["socket_keepalive"] = self.tcp_keepalive
            if self.tcp_keepalive:
                kwargs["socket_keepalive_options"] = keepalive_options(
                    self.tcp_keepalive_idle, self.tcp_keepalive_interval, self.tcp_keepalive_count
                )
        return kwargs


_KEYS = frozenset(f.name for f in dataclasses.fields(SupervisorConfig))
_DEFAULTS = {
    f.name: f.default
    for f in dataclasses.fields(SupervisorConfig)
    if f.default is not dataclasses.MISSING
}


def _validate(c: SupervisorConfig) -> None:
    numbers: dict[str, float | None] = {
        "health_check_interval": c.health_check_interval,
        "health_check_timeout": c.health_check_timeout,
        "refused_interval": c.refused_interval,
        "backoff_base": c.backoff_base,
        "backoff_cap": c.backoff_cap,
        "auth_retry_interval": c.auth_retry_interval,
        "command_deadline": c.command_deadline,
        "socket_timeout": c.socket_timeout,
        "socket_connect_timeout": c.socket_connect_timeout,
    }
    if c.socket_timeout is None:
        del numbers["socket_timeout"]
    for name, value in numbers.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not MIN_SECONDS <= value < MAX_SECONDS
        ):
            raise ConfigError(
                f"{name} must be a number of seconds from {MIN_SECONDS:g} to below "
                f"{MAX_SECONDS:g}, got {value!r}"
            )
    # the kernel caps the keepalive settings (Linux: 32767 s, 127 probes)
    integers: dict[str, tuple[int, int]] = {
        "max_waiters": (c.max_waiters, 10**6),
        "max_connections": (c.max_connections, 10**5),
        "tcp_keepalive_idle": (c.tcp_keepalive_idle, 32767),
        "tcp_keepalive_interval": (c.tcp_keepalive_interval, 32767),
        "tcp_keepalive_count": (c.tcp_keepalive_count, 127),
        "event_buffer": (c.event_buffer, 10**6),
    }
    for name, (ivalue, most) in integers.items():
        if isinstance(ivalue, bool) or not isinstance(ivalue, int) or not 1 <= ivalue <= most:
            raise ConfigError(f"{name} must be an integer from 1 to {most}, got {ivalue!r}")
    if c.backoff_cap < c.backoff_base:
        raise ConfigError(
            f"backoff_cap ({c.backoff_cap}) must be >= backoff_base ({c.backoff_base})"
        )
    if (
        c.socket_timeout is not None
        and c.health_check_timeout >= c.health_check_interval + c.socket_timeout
    ):
        raise ConfigError(
            f"health_check_timeout ({c.health_check_timeout}) must be below "
            "health_check_interval + socket_timeout"
        )
    if c.offline not in ("wait", "fail_fast"):
        raise ConfigError(f"offline must be 'wait' or 'fail_fast', got {c.offline!r}")
    if c.backoff_jitter not in ("narrow", "equal", "full", "decorrelated"):
        raise ConfigError(
            "backoff_jitter must be 'narrow', 'equal', 'full' or 'decorrelated', "
            f"got {c.backoff_jitter!r}"
        )
    if c.server_idle_timeout is not None and (
        isinstance(c.server_idle_timeout, bool)
        or not isinstance(c.server_idle_timeout, (int, float))
        or not 0 <= c.server_idle_timeout < MAX_SECONDS
    ):
        raise ConfigError(
            f"server_idle_timeout must be seconds from 0 (the server has no idle timeout) "
            f"to below {MAX_SECONDS:g}, or None, got {c.server_idle_timeout!r}"
        )
    if not isinstance(c.idempotent_commands, (list, tuple)) or not all(
        isinstance(n, str) and n.strip() for n in c.idempotent_commands
    ):
        raise ConfigError(
            f"idempotent_commands must be a list of command names, got {c.idempotent_commands!r}"
        )
    _validate_sentinels(c)
    for flag in ("tcp_keepalive", "decode_responses", "auto_pipeline", "sentinel_tls"):
        if not isinstance(getattr(c, flag), bool):
            raise ConfigError(f"{flag} must be true or false, got {getattr(c, flag)!r}")
    if c.client_name is not None and (
        not isinstance(c.client_name, str) or any(ch.isspace() for ch in c.client_name)
    ):
        raise ConfigError(
            f"client_name must be a word without spaces (None or '' for none), "
            f"got {c.client_name!r}"
        )
    check_redis_options(c.redis_options, c.url, c.connection_kwargs())
    protocols = (c.redis_options.get("protocol"), dict(parse_url(c.url)).get("protocol"))
    if c.auto_pipeline and any(str(p) not in ("2", "None") for p in protocols):
        raise ConfigError(
            "auto_pipeline speaks RESP2: drop protocol from redis_options and the url, "
            "or auto_pipeline"
        )
    if c.auto_pipeline and c.cluster_nodes:
        raise ConfigError(
            "auto_pipeline is for a single target or a Sentinel service, not cluster_nodes"
        )


def _validate_sentinels(c: SupervisorConfig) -> None:
    for key in ("sentinel_username", "sentinel_password"):
        value = getattr(c, key)
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(f"{key} must be a non-empty string or unset")
    if c.role not in ("master", "replica"):
        raise ConfigError(f"role must be 'master' or 'replica', got {c.role!r}")
    _validate_addresses("cluster_nodes", c.cluster_nodes)
    if not c.sentinels:
        if c.service_name:
            raise ConfigError("service_name is set but sentinels is empty; list the sentinels")
        if c.sentinel_username or c.sentinel_password:
            raise ConfigError("sentinel credentials are set but sentinels is empty")
        if c.sentinel_tls:
            raise ConfigError("sentinel_tls is set but sentinels is empty")
        return
    if not c.service_name:
        raise ConfigError("sentinels is set but service_name is empty; name the Sentinel service")
    if c.cluster_nodes:
        raise ConfigError("sentinels and cluster_nodes are both set; a target is one or the other")
    _validate_addresses("sentinels", c.sentinels)


def _validate_addresses(key: str, addresses: tuple[str, ...]) -> None:
    for address in addresses:
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigError(f"{key}: {address!r} is not host:port, e.g. 127.0.0.1:7000")


def _apply_url_options(c: SupervisorConfig) -> None:
    """A URL query option that names a config key sets it (it wins in redis-py); the
    config setting the same key to something else is a contradiction, refused."""
    query: dict[str, Any] = dict(parse_url(c.url))
    for name, key in URL_KEYS.items():
        if name not in query:
            continue
        value = coerce(key, query[name], "url", _DEFAULTS)
        current = getattr(c, key)
        if current != _DEFAULTS[key] and current != value:
            raise ConfigError(
                f"url sets {name}={value!r} but the config sets {key}={current!r}; "
                "set it in one place"
            )
        object.__setattr__(c, key, value)
