"""Where settings come from: TOML files, ``SUPERVISOR_<KEY>`` variables, url options.

Text from the environment or a url becomes the type of the key's default; a value
that cannot is refused naming the key and the type it needs.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from supervisor.errors import ConfigError

__all__ = (
    "ENV_PREFIX",
    "IDENTITY",
    "OTHER_VARIABLES",
    "coerce",
    "env_overrides",
    "read_secret",
    "read_toml",
    "service_env_overrides",
)

ENV_PREFIX = "SUPERVISOR_"


def read_toml(file: Path) -> dict[str, Any]:
    """A TOML file as a dict; ``ConfigError`` naming the file when it is missing or broken."""
    try:
        return tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None


OTHER_VARIABLES = frozenset(
    {
        # read by supervisor.testing
        "SUPERVISOR_TEST_BACKEND",
        "SUPERVISOR_REDIS_SERVER",
        # set by supervisord in every process it runs
        "SUPERVISOR_ENABLED",
        "SUPERVISOR_SERVER_URL",
        "SUPERVISOR_PROCESS_NAME",
        "SUPERVISOR_GROUP_NAME",
        # the HTTP listener of `python -m supervisor run` (service/config.py)
        "SUPERVISOR_LISTEN",
    }
)
"""``SUPERVISOR_*`` variables that are not settings: left alone, never refused."""

IDENTITY = ("url", "sentinels", "service_name", "cluster_nodes")
"""Keys that say which server a target is: one value for several targets is a mistake."""


def read_secret(path: str) -> str:
    """The first line of a secret's file; ``ConfigError`` naming the file (never its content)."""
    try:
        with open(path, encoding="utf-8") as file:
            line = file.readline().rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"password_file {path!r}: {exc.strerror or exc}") from None
    if not line:
        raise ConfigError(f"password_file {path!r}: its first line is empty")
    return line


def env_overrides(
    env: Mapping[str, str], known: Collection[str], *, named_elsewhere: bool = False
) -> dict[str, str]:
    """The ``SUPERVISOR_<KEY>`` settings of ``env`` for one target, as strings. A
    ``SUPERVISOR_*`` name that is no setting is refused with the closest one: a typo must
    not leave a default in force. ``named_elsewhere``: ``SUPERVISOR_<TARGET>__<KEY>``
    names belong to a service file's targets (``diagnose URL`` beside ``run``) and are
    left alone instead of refused."""
    common, named = _settings(env, known)
    if named and not named_elsewhere:
        first = next(iter(named.values()))
        raise ConfigError(
            f"{first}: a SUPERVISOR_<TARGET>__<KEY> name is for a service file's targets; "
            f"this configuration has one target: use {ENV_PREFIX}<KEY>"
        )
    return common


def service_env_overrides(
    env: Mapping[str, str], known: Collection[str], targets: Collection[str], file: object
) -> dict[str, dict[str, str]]:
    """The settings of ``env`` for each target of a service file: ``SUPERVISOR_<KEY>``
    for every target, ``SUPERVISOR_<TARGET>__<KEY>`` for one (it wins)."""
    common, named = _settings(env, known)
    if len(targets) > 1:
        for key in IDENTITY:
            if key in common:
                example = f"{ENV_PREFIX}{next(iter(targets)).upper()}__{key.upper()}"
                raise ConfigError(
                    f"{ENV_PREFIX}{key.upper()} would point every target of {file} at one "
                    f"server; name the target, e.g. {example}"
                )
    out = {name: dict(common) for name in targets}
    by_upper = {name.upper(): name for name in targets}
    for (target, key), variable in named.items():
        if target not in by_upper:
            raise ConfigError(
                f"{variable}: {file} has no target {target.lower()!r}; its targets: "
                f"{', '.join(targets)}"
            )
        out[by_upper[target]][key] = env[variable]
    return out


_SERVICE_LINK = re.compile(
    r"^SUPERVISOR(_[A-Z0-9_]+?)?_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|"
    r"PORT_[0-9]+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)$"
)
_SERVICE_URL = re.compile(r"^(tcp|udp|sctp)://[^/]+:[0-9]+$")


def service_link(variable: str, value: str) -> bool:
    """Kubernetes injects ``<SERVICE>_SERVICE_HOST``, ``<SERVICE>_SERVICE_PORT[_NAME]``,
    ``<SERVICE>_PORT=tcp://host:port`` and ``<SERVICE>_PORT_<n>_TCP[_PROTO|_PORT|_ADDR]``
    for every Service of the namespace: a Service named ``supervisor…`` makes them
    ``SUPERVISOR_*``. They are no settings, and no typo of one."""
    if _SERVICE_LINK.match(variable):
        return True
    return variable.endswith("_PORT") and bool(_SERVICE_URL.match(value))


def _settings(
    env: Mapping[str, str], known: Collection[str]
) -> tuple[dict[str, str], dict[tuple[str, str], str]]:
    common: dict[str, str] = {}
    named: dict[tuple[str, str], str] = {}
    for variable, value in env.items():
        if not variable.startswith(ENV_PREFIX) or variable in OTHER_VARIABLES:
            continue
        rest = variable[len(ENV_PREFIX) :]
        target, sep, key = rest.rpartition("__")
        key = key.lower()
        if key not in known and service_link(variable, value):
            continue
        if key not in known:
            raise ConfigError(
                f"{variable} is not a setting{_hint(variable, key, known)}; a setting is "
                f"{ENV_PREFIX}<KEY> for a key of config/supervisor.toml: fix the name, or "
                "unset it"
            )
        if sep:
            named[(target, key)] = variable
        else:
            common[key] = value
    return common, named


def _hint(variable: str, key: str, known: Collection[str]) -> str:
    match = difflib.get_close_matches(key, sorted(known), n=1)
    if not match:
        return ""
    return f" (did you mean {variable[: len(variable) - len(key)]}{match[0].upper()}?)"


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
