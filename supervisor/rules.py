"""The rules a target's settings obey: each value's range, and which settings contradict.

Kept apart from ``SupervisorConfig`` so the rules read as one list; every refusal names
the key, the value that was given (never a secret) and what is allowed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from supervisor.errors import ConfigError
from supervisor.options import MAX_SECONDS, MIN_SECONDS, check_redis_options, is_seconds

__all__ = ("check_settings",)


def check_settings(c: Mapping[str, Any], connection_kwargs: Callable[[], dict[str, Any]]) -> None:
    """Refuse a value out of its range, or settings that contradict each other, naming
    the key and what is allowed. ``c`` maps every key of a target to its value."""
    numbers: dict[str, float | None] = {
        "health_check_interval": c["health_check_interval"],
        "health_check_timeout": c["health_check_timeout"],
        "refused_interval": c["refused_interval"],
        "backoff_base": c["backoff_base"],
        "backoff_cap": c["backoff_cap"],
        "auth_retry_interval": c["auth_retry_interval"],
        "command_deadline": c["command_deadline"],
        "socket_timeout": c["socket_timeout"],
        "socket_connect_timeout": c["socket_connect_timeout"],
        "cache_ttl": c["cache_ttl"],
        "cache_max_staleness": c["cache_max_staleness"],
    }
    if c["socket_timeout"] is None:
        del numbers["socket_timeout"]
    for name, value in numbers.items():
        if not is_seconds(value):
            raise ConfigError(
                f"{name} must be a number of seconds from {MIN_SECONDS:g} to below "
                f"{MAX_SECONDS:g}, got {value!r}"
            )
    # the kernel caps the keepalive settings (Linux: 32767 s, 127 probes)
    integers: dict[str, tuple[int, int]] = {
        "max_waiters": (c["max_waiters"], 10**6),
        "max_connections": (c["max_connections"], 10**5),
        "tcp_keepalive_idle": (c["tcp_keepalive_idle"], 32767),
        "tcp_keepalive_interval": (c["tcp_keepalive_interval"], 32767),
        "tcp_keepalive_count": (c["tcp_keepalive_count"], 127),
        "event_buffer": (c["event_buffer"], 10**6),
        "cache_max_entries": (c["cache_max_entries"], 10**8),
        "cache_max_bytes": (c["cache_max_bytes"], 2**40),
    }
    for name, (ivalue, most) in integers.items():
        if isinstance(ivalue, bool) or not isinstance(ivalue, int) or not 1 <= ivalue <= most:
            raise ConfigError(f"{name} must be an integer from 1 to {most}, got {ivalue!r}")
    if c["backoff_cap"] < c["backoff_base"]:
        raise ConfigError(
            f"backoff_cap ({c['backoff_cap']}) must be >= backoff_base ({c['backoff_base']})"
        )
    if (
        c["socket_timeout"] is not None
        and c["health_check_timeout"] >= c["health_check_interval"] + c["socket_timeout"]
    ):
        raise ConfigError(
            f"health_check_timeout ({c['health_check_timeout']}) must be below "
            "health_check_interval + socket_timeout"
        )
    if c["offline"] not in ("wait", "fail_fast"):
        raise ConfigError(f"offline must be 'wait' or 'fail_fast', got {c['offline']!r}")
    if c["backoff_jitter"] not in ("narrow", "equal", "full", "decorrelated"):
        raise ConfigError(
            "backoff_jitter must be 'narrow', 'equal', 'full' or 'decorrelated', "
            f"got {c['backoff_jitter']!r}"
        )
    if c["server_idle_timeout"] is not None and (
        isinstance(c["server_idle_timeout"], bool)
        or not isinstance(c["server_idle_timeout"], (int, float))
        or not 0 <= c["server_idle_timeout"] < MAX_SECONDS
    ):
        raise ConfigError(
            f"server_idle_timeout must be seconds from 0 (the server has no idle timeout) "
            f"to below {MAX_SECONDS:g}, or None, got {c['server_idle_timeout']!r}"
        )
    if not isinstance(c["idempotent_commands"], (list, tuple)) or not all(
        isinstance(n, str) and n.strip() for n in c["idempotent_commands"]
    ):
        raise ConfigError(
            f"idempotent_commands must be a list of command names, got {c['idempotent_commands']!r}"
        )
    _check_target(c)
    flags = ("tcp_keepalive", "decode_responses", "auto_pipeline", "client_cache", "sentinel_tls")
    for flag in flags:
        if not isinstance(c[flag], bool):
            raise ConfigError(f"{flag} must be true or false, got {c[flag]!r}")
    if c["client_name"] is not None and (
        not isinstance(c["client_name"], str) or any(ch.isspace() for ch in c["client_name"])
    ):
        raise ConfigError(
            f"client_name must be a word without spaces (None or '' for none), "
            f"got {c['client_name']!r}"
        )
    check_redis_options(c["redis_options"], c["url"], connection_kwargs())
    if c["client_cache"]:
        _check_cache(c)


def _check_cache(c: Mapping[str, Any]) -> None:
    if c["cluster_nodes"]:
        raise ConfigError(
            "client_cache is for a single target or a Sentinel master, not cluster_nodes: "
            "a cluster needs one invalidation stream per node, which is not built; "
            "drop client_cache or cluster_nodes"
        )
    if c["sentinels"] and c["role"] == "replica":
        raise ConfigError(
            "client_cache with role = 'replica' cannot bound staleness: the replica "
            "applies writes later than the master acknowledges them; use role = 'master'"
        )
    if c["cache_max_staleness"] < 0.01:
        raise ConfigError(
            f"cache_max_staleness must be at least 0.01 s (it is proven by a round trip "
            f"every quarter of it), got {c['cache_max_staleness']!r}"
        )


def _check_target(c: Mapping[str, Any]) -> None:
    for key in ("sentinel_username", "sentinel_password"):
        value = c[key]
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(f"{key} must be a non-empty string or unset")
    if c["role"] not in ("master", "replica"):
        raise ConfigError(f"role must be 'master' or 'replica', got {c['role']!r}")
    _check_addresses("cluster_nodes", c["cluster_nodes"])
    if not c["sentinels"]:
        if c["service_name"]:
            raise ConfigError("service_name is set but sentinels is empty; list the sentinels")
        if c["sentinel_username"] or c["sentinel_password"]:
            raise ConfigError("sentinel credentials are set but sentinels is empty")
        if c["sentinel_tls"]:
            raise ConfigError("sentinel_tls is set but sentinels is empty")
        return
    if not c["service_name"]:
        raise ConfigError("sentinels is set but service_name is empty; name the Sentinel service")
    if c["cluster_nodes"]:
        raise ConfigError("sentinels and cluster_nodes are both set; a target is one or the other")
    _check_addresses("sentinels", c["sentinels"])


def _check_addresses(key: str, addresses: tuple[str, ...]) -> None:
    for address in addresses:
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigError(f"{key}: {address!r} is not host:port, e.g. 127.0.0.1:7000")
