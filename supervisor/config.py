"""``SupervisorConfig``: every setting of one supervised target, validated.

Loaded from keyword arguments, a mapping, or a TOML file with environment
overrides (``SUPERVISOR_<KEY>``, e.g. ``SUPERVISOR_URL``). Unknown keys and
bad values are rejected with a message naming the key; the password in a URL
never appears in a message, a log line or a repr.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from redis.asyncio.connection import (
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
    parse_url,
)
from redis.driver_info import DriverInfo
from redis.exceptions import RedisError

from supervisor._version import __version__
from supervisor.errors import ConfigError

__all__ = ("SupervisorConfig", "redact_url")

Offline = Literal["wait", "fail_fast"]
ENV_PREFIX = "SUPERVISOR_"


def redact_url(url: str) -> str:
    """Return ``url`` with every password replaced by ``***``.

    Works on the raw text, not on a URL parser's reading of it: a password with an
    unencoded ``#``, ``/`` or ``?`` is misread by parsers, yet must still be hidden. The
    credentials end at the last ``@``; a ``password=`` query option is hidden too.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    userinfo, at, location = rest.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        # "user:password@" keeps the user; a lone "secret@" may be a misplaced password
        shown = f"{user}:***@" if colon else "***@"
        rest = shown + location
    return scheme + sep + _QUERY_PASSWORD.sub(r"\1***", rest)


_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


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
        _validate_url(self.url)
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
                hint = _closest(key, known)
                raise ConfigError(
                    f"{source}: unknown key {key!r}{hint}; valid keys: {', '.join(sorted(known))}"
                )
        coerced = {k: _coerce(k, v, source) for k, v in values.items()}
        try:
            return cls(**coerced)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SupervisorConfig:
        """The defaults, overridden by ``SUPERVISOR_<KEY>`` variables of ``env``
        (``os.environ`` by default): for apps configured by their environment."""
        values = env_overrides(os.environ if env is None else env)
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
        values.update(env_overrides(os.environ if env is None else env))
        return cls.from_mapping(values, source=str(file))

    def connection_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for redis-py connections built from this config."""
        kwargs = self._parsed()
        for name in _URL_KEYS:
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
                kwargs["socket_keepalive_options"] = _keepalive_options(self)
        return kwargs


def read_toml(file: Path) -> dict[str, Any]:
    """A TOML file as a dict; ``ConfigError`` naming the file when it is missing or broken."""
    try:
        return tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None


def env_overrides(env: Mapping[str, str]) -> dict[str, str]:
    """The ``SUPERVISOR_<KEY>`` variables that name a config key, as strings."""
    known = {f.name for f in dataclasses.fields(SupervisorConfig)}
    out = {}
    for name, value in env.items():
        if name.startswith(ENV_PREFIX):
            key = name[len(ENV_PREFIX) :].lower()
            if key in known:
                out[key] = value
    return out


def _keepalive_options(config: SupervisorConfig) -> dict[int, int]:
    options = {}
    for opt, value in (
        ("TCP_KEEPIDLE", config.tcp_keepalive_idle),
        ("TCP_KEEPINTVL", config.tcp_keepalive_interval),
        ("TCP_KEEPCNT", config.tcp_keepalive_count),
    ):
        if hasattr(socket, opt):
            options[getattr(socket, opt)] = value
    return options


def _coerce(key: str, value: Any, source: str) -> Any:
    """Turn strings (from the environment) into the field's type."""
    if key in ("idempotent_commands", "sentinels", "cluster_nodes"):
        if isinstance(value, str):
            value = [v for v in value.replace(",", " ").split() if v]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{source}: {key} must be a list of strings")
        return tuple(v.upper() for v in value) if key == "idempotent_commands" else tuple(value)
    if key == "redis_options":
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise ConfigError(
                f"{source}: redis_options must be a table of redis-py connection options "
                "(a [redis_options] table in the file; not settable from the environment)"
            )
        return dict(value)
    if not isinstance(value, str):
        return value
    if key in ("socket_timeout", "server_idle_timeout") and value.strip().lower() == "none":
        return None
    default = _DEFAULTS.get(key)
    try:
        if isinstance(default, bool):
            lowered = value.strip().lower()
            if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(value)
            return lowered in ("1", "true", "yes", "on")
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float) or key in ("server_idle_timeout", "socket_timeout"):
            return float(value)
    except ValueError:
        kind = type(default).__name__ if default is not None else "number"
        raise ConfigError(f"{source}: {key} must be a {kind}, got {value!r}") from None
    return value


_DEFAULTS = {
    f.name: f.default
    for f in dataclasses.fields(SupervisorConfig)
    if f.default is not dataclasses.MISSING
}


def _closest(key: str, known: set[str]) -> str:
    import difflib

    match = difflib.get_close_matches(key, sorted(known), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


_MAX_SECONDS = 86400.0
"""A day: longer waits are a typo (or ``inf``), not a setting."""
_MIN_SECONDS = 0.001
"""A millisecond: shorter waits are below what the event loop times, a busy loop."""


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
            or not _MIN_SECONDS <= value < _MAX_SECONDS
        ):
            raise ConfigError(
                f"{name} must be a number of seconds from {_MIN_SECONDS:g} to below "
                f"{_MAX_SECONDS:g}, got {value!r}"
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
        or not 0 <= c.server_idle_timeout < _MAX_SECONDS
    ):
        raise ConfigError(
            f"server_idle_timeout must be seconds from 0 (the server has no idle timeout) "
            f"to below {_MAX_SECONDS:g}, or None, got {c.server_idle_timeout!r}"
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
    _validate_redis_options(c)
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


_URL_KEYS = {
    "max_connections": "max_connections",
    "socket_timeout": "socket_timeout",
    "socket_connect_timeout": "socket_connect_timeout",
    "client_name": "client_name",
    "decode_responses": "decode_responses",
    "socket_keepalive": "tcp_keepalive",
}
"""redis-py URL query options that set a key of this config (redis-py's name: ours)."""

_RESENDS = (
    "the supervisor decides what is re-sent (see idempotent_commands); redis-py's own "
    "retries would re-send writes whose reply was lost. Only no retries are accepted "
    "(Retry(NoBackoff(), 0), retry_on_timeout=False), which is what the supervisor uses"
)

_OWNED = {
    **{name: f"set {key} in the config" for name, key in _URL_KEYS.items()},
    "socket_keepalive_options": "set tcp_keepalive_idle, _interval and _count in the config",
    "host": "put it in url",
    "port": "put it in url",
    "path": "put it in url",
    "db": "put it in url",
    "connection_class": "the url's scheme chooses it",
    "retry": _RESENDS,
    "retry_on_error": _RESENDS,
    "retry_on_timeout": _RESENDS,
    "redis_connect_func": "the supervisor's pool connects",
    "event_dispatcher": "the supervisor's pool owns it",
}
"""Connection options the supervisor owns, with what to do instead."""


def _apply_url_options(c: SupervisorConfig) -> None:
    """A URL query option that names a config key sets it (it wins in redis-py); the
    config setting the same key to something else is a contradiction, refused."""
    query: dict[str, Any] = dict(parse_url(c.url))
    for name, key in _URL_KEYS.items():
        if name not in query:
            continue
        value = _coerce(key, query[name], "url")
        current = getattr(c, key)
        if current != _DEFAULTS[key] and current != value:
            raise ConfigError(
                f"url sets {name}={value!r} but the config sets {key}={current!r}; "
                "set it in one place"
            )
        object.__setattr__(c, key, value)


def _connection_class(url: str) -> type[Connection | UnixDomainSocketConnection]:
    scheme = urlsplit(url).scheme
    if scheme == "unix":
        return UnixDomainSocketConnection
    return SSLConnection if scheme == "rediss" else Connection


def _validate_redis_options(c: SupervisorConfig) -> None:
    options = c.redis_options
    if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
        raise ConfigError("redis_options must be a mapping of redis-py connection options")
    query: dict[str, Any] = dict(parse_url(c.url))
    url_options = query.keys() - _URL_KEYS.keys() - {"host", "port", "path", "db"}
    url_options -= {"connection_class", "username", "password"}
    known = _connection_options()
    for where, names in (("redis_options", options.keys()), ("url", url_options)):
        for name in names:
            value = options[name] if where == "redis_options" else query.get(name)
            if name in _OWNED:
                if _retries_off(name, value):
                    continue
                raise ConfigError(f"{where}: {name!r} is the supervisor's: {_OWNED[name]}")
            if name not in known:
                raise ConfigError(
                    f"{where}: {name!r} is not a redis-py connection option{_closest(name, known)}"
                )
            if name == "health_check_interval" and not _seconds_or_zero(value):
                raise ConfigError(
                    f"{where}: health_check_interval={value!r} is redis-py's check of each "
                    "connection before use: seconds from 0 (off) to below "
                    f"{_MAX_SECONDS:g}; the supervisor's own health_check_interval is a "
                    "config key"
                )
    kwargs = c.connection_kwargs()
    kwargs.pop("connection_class", None)
    try:
        _connection_class(c.url)(**kwargs)
    except (TypeError, ValueError, RedisError) as exc:
        # redis-py's message names the option, not a secret value
        raise ConfigError(f"redis_options/url: redis-py refuses them: {exc}") from None


def _seconds_or_zero(value: Any) -> bool:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return False
    return not isinstance(value, bool) and 0 <= seconds < _MAX_SECONDS


def _retries_off(name: str, value: Any) -> bool:
    """A redis-py retry setting that re-sends nothing: harmless, so accepted."""
    if name == "retry":
        return callable(getattr(value, "get_retries", None)) and value.get_retries() == 0
    if name in ("retry_on_timeout", "retry_on_error"):
        return not value
    return False


def _connection_options() -> set[str]:
    import inspect

    names: set[str] = set()
    for cls in (Connection, SSLConnection, UnixDomainSocketConnection):
        for klass in cls.__mro__:
            init = klass.__dict__.get("__init__")
            if init is not None:
                names.update(
                    p
                    for p, param in inspect.signature(init).parameters.items()
                    if param.kind is param.KEYWORD_ONLY or param.kind is param.POSITIONAL_OR_KEYWORD
                )
    names.discard("self")
    return names - _OWNED.keys()


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


def _validate_url(url: str) -> None:
    if not isinstance(url, str) or not url:
        raise ConfigError("url must be a string like redis://127.0.0.1:6379/0")
    shown = redact_url(url)
    userinfo = url.partition("://")[2].rpartition("@")[0]
    if any(ch in userinfo for ch in "/?#"):
        raise ConfigError(
            f"url {shown!r}: the user name or password holds an unencoded '/', '?' or '#', "
            "which ends a URL's credentials; percent-encode it, e.g. "
            "urllib.parse.quote(password, safe='')"
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigError(
            f"url {shown!r} is malformed ({exc}); expected redis://host:port/db"
        ) from None
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(
            f"url {shown!r} has scheme {parts.scheme or '(none)'!r}; use redis://, "
            "rediss:// or unix://, e.g. redis://127.0.0.1:6379/0"
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise ConfigError(f"url {shown!r} names no host; expected redis://host:port/db")
    db = parts.path.strip("/")
    if parts.scheme != "unix" and db and not db.isdigit():
        raise ConfigError(
            f"url {shown!r} is malformed: database {db!r} is not a number; "
            "expected redis://host:port/0"
        )
    try:
        parse_url(url)
    except ValueError as exc:
        message = str(exc).replace(url, shown)
        raise ConfigError(f"url {shown!r} is malformed: {message}") from None
