"""``python -m supervisor diagnose URL``: the seed's "Diagnosing the Issue" as a command.

Connects once, reads ``INFO``, the ``CONFIG`` values that close connections and
``CLIENT LIST``, and prints findings with the fix for each. Exit code 0 when
no finding is serious, 1 when one is, 2 when it cannot connect.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import anyio
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from supervisor.causes import Cause, Evidence, attribute, fix_for
from supervisor.config import SupervisorConfig
from supervisor.connection import replies
from supervisor.connection.losses import describe
from supervisor.errors import ConfigError
from supervisor.service.findings import RATES, Finding, findings
from supervisor.sources import env_overrides

__all__ = ("Finding", "Report", "diagnose", "diagnose_main")

_CONFIG_KEYS = ("timeout", "maxclients", "tcp-keepalive", "client-output-buffer-limit")
_IDLE_BUCKETS = ((10, "<10s"), (60, "10-60s"), (300, "1-5min"), (float("inf"), ">5min"))


@dataclass(frozen=True, slots=True)
class Report:
    target: str
    server: dict[str, Any]
    config: dict[str, str] | None
    clients: dict[str, Any]
    findings: list[Finding]
    window: float = 0.0
    """Seconds between the two samples of the server's counters."""
    in_window: dict[str, int] = dataclasses.field(default_factory=dict)
    """How much each counter grew between them: what happens now, not since start."""

    @property
    def serious(self) -> bool:
        return any(f.severity == "serious" for f in self.findings)


async def diagnose(config: SupervisorConfig, *, window: float = 1.0) -> Report:
    """Read what the server says about itself and its clients, and its counters again
    ``window`` seconds later; raise RedisError if unreachable."""
    pool = redis.asyncio.ConnectionPool(**config.connection_kwargs(), retry=Retry(NoBackoff(), 0))
    async with pool, redis.asyncio.Redis(connection_pool=pool) as client:
        refused: list[str] = []
        try:
            info: dict[str, Any] = await client.info()
        except ResponseError as exc:  # an ACL without INFO: the rest still tells something
            info = {}
            refused.append(f"INFO ({exc})")
        try:
            raw = await client.config_get(*_CONFIG_KEYS)
            settings: dict[str, str] | None = {str(k): str(v) for k, v in raw.items()}
        except ResponseError:
            settings = None
        try:
            clients: list[dict[str, Any]] = await client.client_list()
        except ResponseError:
            clients = []
        me = await client.client_id()
        await anyio.sleep(window)
        later: dict[str, Any] = {} if not info else await client.info("stats")
    in_window = {k: int(later.get(k, 0) or 0) - int(info.get(k, 0) or 0) for k in RATES}
    others = [c for c in clients if int(c.get("id", -1)) != me]
    summary = _summarise(others)
    return Report(
        target=config.target,
        server={
            k: info.get(k)
            for k in (
                "redis_version",
                "server_name",
                "valkey_version",
                "uptime_in_seconds",
                "role",
                "connected_clients",
                "blocked_clients",
                "maxclients",
                "rejected_connections",
                "evicted_clients",
                "total_connections_received",
                "loading",
            )
            if k in info
        },
        config=settings,
        clients=summary,
        findings=[*_refusals(refused), *findings(info, settings, others, in_window, window)],
        window=window,
        in_window=in_window,
    )


def _refusals(refused: list[str]) -> list[Finding]:
    return [
        Finding(
            "warning",
            f"the server refused {what} to this user: the server's facts and counters are "
            "unknown, so findings that need them are missing",
            "diagnose as a user that may run INFO (ACL SETUSER <user> +info), or read "
            "the server's INFO as an admin",
        )
        for what in refused
    ]


def _summarise(clients: list[dict[str, Any]]) -> dict[str, Any]:
    def bucket(seconds: int) -> str:
        return next(label for limit, label in _IDLE_BUCKETS if seconds < limit)

    flags = Counter(str(c.get("flags", "N")) for c in clients)
    idle = Counter(bucket(int(c.get("idle", 0))) for c in clients)
    age = Counter(bucket(int(c.get("age", 0))) for c in clients)

    def brief(c: dict[str, Any] | None) -> dict[str, Any] | None:
        if c is None:
            return None
        return {k: c.get(k) for k in ("id", "addr", "name", "age", "idle", "flags", "cmd")}

    return {
        "total": len(clients),
        "by_flags": dict(flags),
        "by_idle": dict(idle),
        "by_age": dict(age),
        "oldest": brief(max(clients, key=lambda c: int(c.get("age", 0)), default=None)),
        "idlest": brief(max(clients, key=lambda c: int(c.get("idle", 0)), default=None)),
    }


def render(report: Report) -> str:
    lines = [
        f"{replies.product({k: str(v) for k, v in report.server.items()})} at {report.target}, "
        f"role {report.server.get('role', '?')}, up {report.server.get('uptime_in_seconds')} s"
    ]
    if report.config is not None:
        lines.append("config: " + ", ".join(f"{k}={v!r}" for k, v in sorted(report.config.items())))
    c = report.clients
    lines.append(
        f"clients: {c['total']} (besides this one); by flags {c['by_flags']}; "
        f"by idle {c['by_idle']}; by age {c['by_age']}"
    )
    for label in ("oldest", "idlest"):
        if c[label]:
            lines.append(f"  {label}: " + " ".join(f"{k}={v}" for k, v in c[label].items()))
    if report.in_window:
        grew = ", ".join(f"{k} +{v}" for k, v in report.in_window.items())
        lines.append(f"in {report.window:g} s: {grew}")
    lines.append("findings:" if report.findings else "findings: none")
    for f in report.findings:
        lines.append(f"  [{f.severity}] {f.finding}\n      fix: {f.fix}")
    return "\n".join(lines)


def diagnose_main(
    url: str | None = None,
    *,
    as_json: bool = False,
    password_file: str | None = None,
    window: float = 1.0,
) -> int:
    """``SUPERVISOR_<KEY>`` settings as the library reads them (``SUPERVISOR_URL``,
    ``SUPERVISOR_PASSWORD``, ``SUPERVISOR_PASSWORD_FILE``...), the arguments on top."""
    if not 0 <= window <= 60:
        print(
            f"supervisor diagnose: --window must be 0 to 60 seconds, got {window:g}",
            file=sys.stderr,
        )
        return 2
    try:
        values: dict[str, object] = {
            # with a URL given, SUPERVISOR_<TARGET>__<KEY> are a service file's, not ours
            **env_overrides(os.environ, _KEYS, named_elsewhere=bool(url)),
            "decode_responses": "true",
            "client_name": "supervisor-diagnose",
        }
        if url:
            values["url"] = url
        if password_file:
            values.pop("password", None)
            values["password_file"] = password_file
        config = SupervisorConfig.from_mapping(values, source="diagnose")
    except ConfigError as exc:
        print(f"supervisor diagnose: {exc}", file=sys.stderr)
        return 2
    try:
        report = anyio.run(lambda: diagnose(config, window=window))
    except (RedisError, OSError) as exc:
        cause, _ = attribute(Evidence(error=describe(exc), reachable=False))
        message = (
            f"cannot connect to {config.display_url}: {describe(exc)} ({cause.value}: "
            f"{fix_for(cause)})"
        )
        if cause is Cause.AUTH:
            message = _auth_message(config, describe(exc))
        if as_json:
            print(json.dumps({"target": config.target, "error": message}))
        else:
            print(message, file=sys.stderr)
        return 2
    if as_json:
        payload = asdict(report)
        payload["serious"] = report.serious
        print(json.dumps(payload, indent=2, default=str))
    else:
        print(render(report))
    return 1 if report.serious else 0


_KEYS = frozenset(f.name for f in dataclasses.fields(SupervisorConfig))


def _auth_message(config: SupervisorConfig, error: str) -> str:
    said = error.partition(": ")[2] or error
    if config.connection_kwargs().get("password") is None:
        return (
            f"cannot connect to {config.display_url}: this server needs a password (auth: "
            f"it said {said}). Pass it with SUPERVISOR_PASSWORD, SUPERVISOR_PASSWORD_FILE, "
            "--password-file FILE, or in the URL (redis://:PASSWORD@host:port)"
        )
    return (
        f"cannot connect to {config.display_url}: the server refused the password (auth: "
        f"it said {said}). Check it, and the user name of an ACL user "
        "(redis://USER:PASSWORD@host:port)"
    )
