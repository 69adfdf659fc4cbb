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
    URL_KEYS,
    check_url,
    closest,
    keepalive_options,
    redact_url,
)
from supervisor.rules import check_settings
from supervisor.sources import coerce, env_overrides, read_secret, read_toml

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
            ``XREAD BLOCK``, ``WAIT``...) waits its own timeout on top of it. A pooled
            read past it is given up within an eighth of it more (one task keeps every
            read's deadline: ``supervisor.connection.deadlines``).
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
            RESP2 or RESP3; on a cluster, one shared connection per node.
        client_cache: ``sup.client`` answers cacheable reads (GET, MGET, HGET,
            HGETALL, SMEMBERS, ZRANGE...) from memory, invalidated by the server
            (``CLIENT TRACKING``), never staler than ``cache_max_staleness``
            (``supervisor.connection.cache``). Off by default; a single target or a
            Sentinel master, not with ``cluster_nodes``.
        cache_max_entries / cache_max_bytes: the cache's bounds; least recently used
            entries go first.
        cache_ttl: seconds an entry is kept at most (and never past its key's expiry).
        cache_max_staleness: a read that begins at ``t`` never returns a value
            overwritten by a write acknowledged before ``t - cache_max_staleness``:
            it goes to the server whenever that cannot be proven.
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
        password / password_file: the password of the target's connections, when the url
            carries none: given, or the first line of a file (``SUPERVISOR_PASSWORD`` and
            ``SUPERVISOR_PASSWORD_FILE`` from the environment); the same rule in the
            library, ``run`` and ``diagnose``. It never shows in a repr or a message.
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
    client_cache: bool = False
    cache_max_entries: int = 10_000
    cache_max_bytes: int = 64 * 1024 * 1024
    cache_ttl: float = 60.0
    cache_max_staleness: float = 0.1
    event_buffer: int = 100
    sentinels: tuple[str, ...] = ()
    service_name: str = ""
    role: Literal["master", "replica"] = "master"
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    sentinel_tls: bool = False
    cluster_nodes: tuple[str, ...] = ()
    password: str | None = field(default=None, repr=False)
    password_file: str | None = None
    redis_options: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        check_url(self.url)
        _check_password(self)
        _apply_url_options(self)
        check_settings({f.name: getattr(self, f.name) for f in _FIELDS}, self.connection_kwargs)
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
            if key in ("targets", "http", "monitor"):
                raise ConfigError(
                    f"{source}: [{key}] is a table of a service file (config/service.toml), "
                    "not a setting of one target: run it with `python -m supervisor run "
                    "--config FILE`; a target's settings go in its [targets.NAME] table"
                )
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
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, defaults: Mapping[str, Any] | None = None
    ) -> SupervisorConfig:
        """``defaults`` (the library's where not given), overridden by ``SUPERVISOR_<KEY>``
        variables of ``env`` (``os.environ`` by default): for apps configured by their
        environment, e.g. a web app's request-path settings with the variables on top."""
        values = {**(defaults or {}), **env_overrides(os.environ if env is None else env, _KEYS)}
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
        password = self.password or (
            read_secret(self.password_file) if self.password_file else None
        )
        if password:
            kwargs["password"] = password
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


_FIELDS = dataclasses.fields(SupervisorConfig)
_KEYS = frozenset(f.name for f in _FIELDS)
_DEFAULTS = {
    f.name: f.default
    for f in dataclasses.fields(SupervisorConfig)
    if f.default is not dataclasses.MISSING
}


def _check_password(c: SupervisorConfig) -> None:
    """One password, in one place: the url, ``password`` or ``password_file``."""
    given = [k for k in ("password", "password_file") if getattr(c, k) is not None]
    if given and not all(isinstance(getattr(c, k), str) and getattr(c, k) for k in given):
        raise ConfigError(f"{given[0]} must be a non-empty string or unset")
    options = c.redis_options
    if dict(parse_url(c.url)).get("password"):
        given.append("the url")
    if isinstance(options, Mapping) and "password" in options:
        given.append("redis_options")
    if len(given) > 1:
        raise ConfigError(f"the password is set in {' and in '.join(given)}: set it in one place")
    if c.password_file is not None:
        read_secret(c.password_file)


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
