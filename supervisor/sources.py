"""Where settings come from: TOML files, ``SUPERVISOR_<KEY>`` variables, url options.

Text from the environment or a url becomes the type of the key's default; a value
that cannot is refused naming the key and the type it needs.
"""

from __future__ import annotations

import tomllib
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from supervisor.errors import ConfigError

__all__ = ("ENV_PREFIX", "coerce", "env_overrides", "read_toml")

ENV_PREFIX = "SUPERVISOR_"


def read_toml(file: Path) -> dict[str, Any]:
    """A TOML file as a dict; ``ConfigError`` naming the file when it is missing or broken."""
    try:
        return tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None


def env_overrides(env: Mapping[str, str], known: Collection[str]) -> dict[str, str]:
    """The ``SUPERVISOR_<KEY>`` variables that name a ``known`` key, as strings."""
    out = {}
    for name, value in env.items():
        if name.startswith(ENV_PREFIX):
            key = name[len(ENV_PREFIX) :].lower()
            if key in known:
                out[key] = value
    return out


def coerce(key: str, value: Any, source: str, defaults: Mapping[str, Any]) -> Any:
    """Turn strings (from the environment or the url) into the type of the key's default."""
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
    default = defaults.get(key)
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
