"""The url and the redis-py connection options a config may carry, and the bounds it keeps.

The supervisor owns some redis-py options (retries, the connection class, what the url
sets): each is refused with what to do instead. A password never reaches a message.
"""

from __future__ import annotations

import difflib
import inspect
import re
import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio.connection import (
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
    parse_url,
)
from redis.exceptions import RedisError

from supervisor.errors import ConfigError

__all__ = (
    "MAX_SECONDS",
    "is_seconds",
    "MIN_SECONDS",
    "URL_KEYS",
    "check_redis_options",
    "check_url",
    "closest",
    "connection_class",
    "keepalive_options",
    "redact_url",
)

MAX_SECONDS = 86400.0
"""A day: longer waits are a typo (or ``inf``), not a setting."""
MIN_SECONDS = 0.001
"""A millisecond: shorter waits are below what the event loop times, a busy loop."""


def is_seconds(value: object, low: float = MIN_SECONDS) -> bool:
    """A number of seconds from ``low`` to below ``MAX_SECONDS`` (so never nan or inf)."""
    return (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and low <= value < MAX_SECONDS
    )


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


def closest(key: str, known: set[str]) -> str:
    match = difflib.get_close_matches(key, sorted(known), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


URL_KEYS = {
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
    **{name: f"set {key} in the config" for name, key in URL_KEYS.items()},
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


def connection_class(url: str) -> type[Connection | UnixDomainSocketConnection]:
    scheme = urlsplit(url).scheme
    if scheme == "unix":
        return UnixDomainSocketConnection
    return SSLConnection if scheme == "rediss" else Connection


def check_redis_options(options: Any, url: str, kwargs: dict[str, Any]) -> None:
    """Refuse a redis-py option that the supervisor owns, that redis-py does not know, or
    that redis-py itself refuses (``kwargs``: the connection options they make)."""
    if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
        raise ConfigError("redis_options must be a mapping of redis-py connection options")
    query: dict[str, Any] = dict(parse_url(url))
    url_options = query.keys() - URL_KEYS.keys() - {"host", "port", "path", "db"}
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
                    f"{where}: {name!r} is not a redis-py connection option{closest(name, known)}"
                )
            if name == "health_check_interval" and not _seconds_or_zero(value):
                raise ConfigError(
                    f"{where}: health_check_interval={value!r} is redis-py's check of each "
                    "connection before use: seconds from 0 (off) to below "
                    f"{MAX_SECONDS:g}; the supervisor's own health_check_interval is a "
                    "config key"
                )
    kwargs.pop("connection_class", None)
    try:
        connection_class(url)(**kwargs)
    except (TypeError, ValueError, RedisError) as exc:
        # redis-py's message names the option, not a secret value
        raise ConfigError(f"redis_options/url: redis-py refuses them: {exc}") from None


def _seconds_or_zero(value: Any) -> bool:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return False
    return not isinstance(value, bool) and 0 <= seconds < MAX_SECONDS


def _retries_off(name: str, value: Any) -> bool:
    """A redis-py retry setting that re-sends nothing: harmless, so accepted."""
    if name == "retry":
        return callable(getattr(value, "get_retries", None)) and value.get_retries() == 0
    if name in ("retry_on_timeout", "retry_on_error"):
        return not value
    return False


def _connection_options() -> set[str]:
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


def check_url(url: str) -> None:
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


def keepalive_options(idle: int, interval: int, count: int) -> dict[int, int]:
    """``socket_keepalive_options`` for the TCP keepalive settings this platform has."""
    options = {}
    for opt, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", interval), ("TCP_KEEPCNT", count)):
        if hasattr(socket, opt):
            options[getattr(socket, opt)] = value
    return options
