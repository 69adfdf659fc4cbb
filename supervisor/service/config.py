"""Configuration of the standalone process: named targets, the HTTP endpoint, the monitor.

Two file shapes are accepted. A flat file of ``SupervisorConfig`` keys (like
``config/supervisor.toml``) supervises one target named ``default``, with
``SUPERVISOR_<KEY>`` environment overrides. A service file has ``[http]``,
``[monitor]`` and one ``[targets.NAME]`` table per target (``config/service.toml``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from supervisor.config import SupervisorConfig
from supervisor.errors import ConfigError
from supervisor.options import MAX_SECONDS, is_seconds
from supervisor.service.monitor import MonitorConfig
from supervisor.sources import env_overrides, read_toml, service_env_overrides

__all__ = ("HttpConfig", "ServiceConfig")

_SERVICE_TABLES = ("targets", "http", "monitor")
T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpConfig:
    """``/health`` and ``/metrics``; ``port = 0`` picks a free port, ``enabled = false`` none."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 9121


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceConfig:
    targets: Mapping[str, SupervisorConfig]
    http: HttpConfig = field(default_factory=HttpConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)

    @classmethod
    def default(cls, *, env: Mapping[str, str] | None = None) -> ServiceConfig:
        """Supervise ``redis://127.0.0.1:6379/0``, or ``SUPERVISOR_URL`` and the other
        ``SUPERVISOR_<KEY>`` settings."""
        env = os.environ if env is None else env
        values = env_overrides(env, _TARGET_KEYS)
        config = cls(
            targets={"default": SupervisorConfig.from_mapping(values, source="environment")}
        )
        return config.listening(env.get("SUPERVISOR_LISTEN"), "SUPERVISOR_LISTEN")

    def listening(self, address: str | None, source: str) -> ServiceConfig:
        """This config with the HTTP listener at ``address`` (``HOST:PORT``, ``[::]:PORT``);
        unchanged for None. ``SUPERVISOR_LISTEN`` and ``run --listen`` set it, so a
        container needs no file for it."""
        if address is None:
            return self
        host, sep, port = address.strip().rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError(
                f"{source}: {address!r} is not HOST:PORT with a port 0..65535; "
                "e.g. 0.0.0.0:9121, or [::]:9121"
            )
        http = dataclasses.replace(self.http, enabled=True, host=host, port=int(port))
        return dataclasses.replace(self, http=http)

    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None
    ) -> ServiceConfig:
        env = os.environ if env is None else env
        listen = env.get("SUPERVISOR_LISTEN")
        file = Path(path)
        values = read_toml(file)
        if not any(key in values for key in _SERVICE_TABLES):
            config = cls(targets={"default": SupervisorConfig.from_file(file, env=env)})
            return config.listening(listen, "SUPERVISOR_LISTEN")
        for key in values:
            if key not in _SERVICE_TABLES:
                raise ConfigError(
                    f"{file}: unknown top-level key {key!r}; a service file has only "
                    "[http], [monitor] and [targets.NAME] tables"
                )
        targets_table = _table(values, "targets", file)
        if not targets_table:
            raise ConfigError(f"{file}: [targets] is empty; add a [targets.NAME] table with a url")
        overrides = service_env_overrides(env, _TARGET_KEYS, list(targets_table), file)
        targets = {
            name: SupervisorConfig.from_mapping(
                {**_table(targets_table, name, file, prefix="targets."), **overrides[name]},
                source=f"{file} [targets.{name}] with SUPERVISOR_* overrides"
                if overrides[name]
                else f"{file} [targets.{name}]",
            )
            for name in targets_table
        }
        http = _section(HttpConfig, _table(values, "http", file), f"{file} [http]")
        monitor = _section(MonitorConfig, _table(values, "monitor", file), f"{file} [monitor]")
        if http.enabled and not 0 <= http.port <= 65535:
            raise ConfigError(f"{file} [http]: port must be 0..65535, got {http.port}")
        _check_monitor(monitor, f"{file} [monitor]")
        config = cls(targets=targets, http=http, monitor=monitor)
        return config.listening(listen, "SUPERVISOR_LISTEN")


MONITOR_MIN_INTERVAL = 0.05
"""Seconds: each sample is a few ``INFO`` calls, and sampling faster only loads the server."""


def _check_monitor(monitor: MonitorConfig, where: str) -> None:
    interval = monitor.interval
    if not is_seconds(interval, MONITOR_MIN_INTERVAL):
        raise ConfigError(
            f"{where}: interval must be a number of seconds from {MONITOR_MIN_INTERVAL:g} to "
            f"below {MAX_SECONDS:g}, got {interval!r}"
        )
    ratio = monitor.clients_ratio
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
        raise ConfigError(f"{where}: clients_ratio must be a share from 0 to 1, got {ratio!r}")


def _table(values: Mapping[str, Any], key: str, file: Path, prefix: str = "") -> dict[str, Any]:
    table = values.get(key, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{file}: [{prefix}{key}] must be a table")
    return table


def _section(cls: type[T], values: Mapping[str, Any], source: str) -> T:
    known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"{source}: unknown key {key!r}; valid keys: {', '.join(known)}")
        default = known[key].default
        if isinstance(default, bool) != isinstance(value, bool) or not isinstance(
            value, (type(default), int) if isinstance(default, float) else type(default)
        ):
            raise ConfigError(f"{source}: {key} must be a {type(default).__name__}, got {value!r}")
    return cls(**values)


_TARGET_KEYS = frozenset(f.name for f in dataclasses.fields(SupervisorConfig))
