"""``SupervisorConfig``: every setting of one supervised target, validated.

Loaded from keyword arguments, a mapping, or a TOML file with environment
overrides (``SUPERVISOR_<KEY>``, e.g. ``SUPERVISOR_URL``). Unknown keys and
bad values are rejected with a message naming the key; the password in a URL
never appears in a message, a log line or a repr.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from redis.asyncio.connection import parse_url

from supervisor.errors import ConfigError

__all__ = ("SupervisorConfig", "redact_url")

Offline = Literal["wait", "fail_fast"]
ENV_PREFIX = "SUPERVISOR_"


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        netloc = f"{user}:***@{host}{port}"
        return parts._replace(netloc=netloc).geturl()
    except ValueError:
        return "<unparseable url>"


@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisorConfig:
    """Settings of one supervised Redis target; each has a working default.

    Args:
        url: ``redis://[[user]:password@]host:port/db``, ``rediss://`` or ``unix://``.
        client_name: set with ``CLIENT SETNAME`` on every connection.
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
        auth_retry_interval: seconds between attempts while the credentials are refused.
        command_deadline: seconds a command waits through an outage before it
            fails with ``Unavailable``.
        offline: ``"wait"`` (commands wait up to ``command_deadline``) or
            ``"fail_fast"`` (they fail at once while the target is not READY).
        max_waiters: commands allowed to wait at once; more fail at once.
        max_connections: size of the connection pool.
        socket_timeout / socket_connect_timeout: seconds, per read and per connect.
        tcp_keepalive, tcp_keepalive_idle/interval/count: kernel keepalive probes.
        server_idle_timeout: the server's ``timeout`` when ``CONFIG GET`` is not
            allowed (managed Redis); otherwise it is read from the server.
        idempotent_commands: extra commands that are safe to re-send after a
            lost reply (read-only commands always are).
        decode_responses: as in redis-py.
        event_buffer: default buffer size of each subscriber.
        sentinels: ``host:port`` of Redis Sentinels; when set, the target is the
            Sentinel service ``service_name`` and ``url`` only gives the database,
            the credentials and TLS (its host and port are not used).
        role: ``"master"`` (follow failovers) or ``"replica"`` (a healthy replica).
        cluster_nodes: ``host:port`` seed nodes of a Redis Cluster; when set, the
            target is the cluster (use ``ClusterSupervisor``) and ``url`` only gives
            the credentials and TLS.
    """

    url: str = field(default="redis://127.0.0.1:6379/0", repr=False)
    client_name: str = "supervisor"
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
    socket_timeout: float = 5.0
    socket_connect_timeout: float = 5.0
    tcp_keepalive: bool = True
    tcp_keepalive_idle: int = 30
    tcp_keepalive_interval: int = 5
    tcp_keepalive_count: int = 3
    server_idle_timeout: float | None = None
    idempotent_commands: tuple[str, ...] = ()
    decode_responses: bool = False
    event_buffer: int = 100
    sentinels: tuple[str, ...] = ()
    service_name: str = ""
    role: Literal["master", "replica"] = "master"
    cluster_nodes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _validate(self)

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self) if f.repr
        )
        return f"SupervisorConfig(url={self.display_url!r}, {fields})"

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
        kwargs.update(
            client_name=self.client_name,
            socket_timeout=self.socket_timeout,
            socket_connect_timeout=self.socket_connect_timeout,
            decode_responses=self.decode_responses,
        )
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
    if not isinstance(value, str):
        return value
    default = _DEFAULTS.get(key)
    try:
        if isinstance(default, bool):
            lowered = value.strip().lower()
            if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(value)
            return lowered in ("1", "true", "yes", "on")
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float) or key == "server_idle_timeout":
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


def _validate(c: SupervisorConfig) -> None:
    _validate_url(c.url)
    numbers: dict[str, float] = {
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
    for name, value in numbers.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not 0 < value < _MAX_SECONDS
        ):
            raise ConfigError(
                f"{name} must be a number of seconds > 0 and < {_MAX_SECONDS:g}, got {value!r}"
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
    if c.health_check_timeout >= c.health_check_interval + c.socket_timeout:
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
        or c.server_idle_timeout < 0
    ):
        raise ConfigError(
            f"server_idle_timeout must be seconds >= 0, got {c.server_idle_timeout!r}"
        )
    _validate_sentinels(c)
    for flag in ("tcp_keepalive", "decode_responses"):
        if not isinstance(getattr(c, flag), bool):
            raise ConfigError(f"{flag} must be true or false, got {getattr(c, flag)!r}")
    if (
        not isinstance(c.client_name, str)
        or not c.client_name
        or any(ch.isspace() for ch in c.client_name)
    ):
        raise ConfigError(
            f"client_name must be a non-empty word without spaces, got {c.client_name!r}"
        )


def _validate_sentinels(c: SupervisorConfig) -> None:
    if c.role not in ("master", "replica"):
        raise ConfigError(f"role must be 'master' or 'replica', got {c.role!r}")
    _validate_addresses("cluster_nodes", c.cluster_nodes)
    if not c.sentinels:
        if c.service_name:
            raise ConfigError("service_name is set but sentinels is empty; list the sentinels")
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
