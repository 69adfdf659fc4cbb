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
from typing import Any, Literal

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
from supervisor.sources import env_overrides

__all__ = ("Finding", "Report", "diagnose", "diagnose_main")

Severity = Literal["info", "warning", "serious"]
_CONFIG_KEYS = ("timeout", "maxclients", "tcp-keepalive", "client-output-buffer-limit")
_IDLE_BUCKETS = ((10, "<10s"), (60, "10-60s"), (300, "1-5min"), (float("inf"), ">5min"))


@dataclass(frozen=True, slots=True)
class Finding:
    severity: Severity
    finding: str
    fix: str


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
        info: dict[str, Any] = await client.info()
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
        later: dict[str, Any] = await client.info("stats")
    in_window = {k: int(later.get(k, 0) or 0) - int(info.get(k, 0) or 0) for k in _RATES}
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
        findings=_findings(info, settings, others, in_window, window),
        window=window,
        in_window=in_window,
    )


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


def _findings(
    info: dict[str, Any],
    settings: dict[str, str] | None,
    clients: list[dict[str, Any]],
    in_window: dict[str, int],
    window: float,
) -> list[Finding]:
    out: list[Finding] = []
    if settings is None:
        out.append(
            Finding(
                "info",
                "CONFIG GET is not allowed (managed Redis?): findings "
                "come from INFO and CLIENT LIST only",
                "ask the provider for timeout, maxclients and buffer limits",
            )
        )
        settings = {}
    timeout = int(settings.get("timeout", "0") or 0)
    maxclients = int(settings.get("maxclients", info.get("maxclients", 0)) or 0)
    normal = [c for c in clients if str(c.get("flags", "N")) == "N"]
    if timeout > 0:
        near = [c for c in normal if int(c.get("idle", 0)) >= 0.75 * timeout]
        what = (
            f"timeout is {timeout} s and {len(near)} clients idle over "
            f"{int(0.75 * timeout)} s: they will be closed"
            if near
            else f"timeout is {timeout} s: the server closes every client idle that long "
            '(the most common reason for "server closed the connection")'
        )
        out.append(
            Finding(
                "warning",
                what,
                "keep idle connections busy below it (the supervisor PINGs idle pooled "
                f"connections every {timeout / 3:.3g} s), or CONFIG SET timeout 0",
            )
        )
    out += _counter_findings(info, in_window, window, maxclients)
    connected = int(info.get("connected_clients", 0))
    if maxclients and connected >= 0.8 * maxclients:
        out.append(
            Finding(
                "serious",
                f"{connected} of maxclients {maxclients} connected ({connected / maxclients:.0%})",
                "raise maxclients or reduce pool sizes before connections are refused",
            )
        )
    if settings.get("tcp-keepalive") == "0":
        out.append(
            Finding(
                "warning",
                "tcp-keepalive is 0: dead peers are never detected",
                "CONFIG SET tcp-keepalive 300",
            )
        )
    out += _limit_findings(settings)
    behind = [c for c in clients if "P" in str(c.get("flags", "")) and int(c.get("omem", 0)) > 0]
    if behind:
        limit = next((p for p in _pubsub_limits(settings)), "unknown")
        out.append(
            Finding(
                "warning",
                f"{len(behind)} pub/sub clients hold "
                f"{sum(int(c['omem']) for c in behind)} bytes of unread output "
                f"(limit: {limit}): slow consumers get evicted",
                "read faster, or raise client-output-buffer-limit pubsub",
            )
        )
    blocked = int(info.get("blocked_clients", 0))
    if blocked:
        out.append(
            Finding(
                "info",
                f"{blocked} clients are blocked (BLPOP, WAIT...)",
                "give blocking commands a timeout below the socket timeout",
            )
        )
    if str(info.get("loading", 0)) == "1":
        out.append(
            Finding(
                "serious",
                "the server is loading its dataset: commands get LOADING",
                "wait for loading to finish",
            )
        )
    uptime = int(info.get("uptime_in_seconds", 0))
    if uptime < 300:
        out.append(
            Finding(
                "info",
                f"the server started {uptime} s ago: clients connected "
                "before lost their connections",
                "check why it restarted",
            )
        )
    if info.get("role") not in (None, "master"):
        out.append(
            Finding(
                "info",
                f"role is {info.get('role')}: writes fail with READONLY",
                "point writers at the master (or use Sentinel)",
            )
        )
    return out


def _counter_findings(
    info: dict[str, Any], in_window: dict[str, int], window: float, maxclients: int
) -> list[Finding]:
    """What the server's counters say now (growth over the window) and since it started."""
    out: list[Finding] = []
    uptime = int(info.get("uptime_in_seconds", 0))
    for key, now_fix, label in (
        ("rejected_connections", fix_for(Cause.MAXCLIENTS), "the maxclients limit"),
        (
            "evicted_clients",
            "raise maxmemory-clients or find the clients with large buffers",
            "maxmemory-clients",
        ),
    ):
        grew, total = in_window.get(key, 0), int(info.get(key, 0) or 0)
        if grew > 0:
            limit = f" (now {maxclients or '?'})" if key == "rejected_connections" else ""
            out.append(
                Finding(
                    "serious",
                    f"{key} grew by {grew} in {window:g} s: {label}{limit} is being hit now",
                    now_fix,
                )
            )
        elif total:
            out.append(
                Finding(
                    "info",
                    f"{key} is {total} since the server started ({uptime} s ago), none in "
                    f"the last {window:g} s: a past burst",
                    f"if it recurs: {now_fix}",
                )
            )
    return out


def _limit_findings(settings: dict[str, str]) -> list[Finding]:
    """Output-buffer limits that cut the clients they are meant to protect."""
    out: list[Finding] = []
    for klass, hard, soft, seconds in _buffer_limits(settings):
        if klass == "pubsub" and 0 < hard < _PUBSUB_DEFAULT:
            out.append(
                Finding(
                    "warning",
                    f"client-output-buffer-limit pubsub hard limit is {hard:,} bytes (Redis's "
                    f"default: {_PUBSUB_DEFAULT:,}): a subscriber that falls that far behind "
                    "a burst is disconnected and misses messages",
                    "CONFIG SET client-output-buffer-limit 'pubsub 32mb 8mb 60', and read faster",
                )
            )
        elif klass == "pubsub" and 0 < soft < _PUBSUB_DEFAULT // 4 and 0 < seconds <= 10:
            out.append(
                Finding(
                    "warning",
                    f"client-output-buffer-limit pubsub soft limit is {soft:,} bytes for "
                    f"{seconds} s: a short burst disconnects subscribers",
                    "CONFIG SET client-output-buffer-limit 'pubsub 32mb 8mb 60'",
                )
            )
        elif klass in ("slave", "replica") and 0 < hard < _REPLICA_DEFAULT:
            out.append(
                Finding(
                    "warning",
                    f"client-output-buffer-limit replica hard limit is {hard:,} bytes (Redis's "
                    f"default: {_REPLICA_DEFAULT:,}): a full resync of a larger write burst "
                    "cuts the replica, which then resyncs again, in a loop",
                    "CONFIG SET client-output-buffer-limit 'replica 256mb 64mb 60'",
                )
            )
    return out


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


_RATES = ("rejected_connections", "evicted_clients", "total_connections_received")
_PUBSUB_DEFAULT = 32 * 1024 * 1024
_REPLICA_DEFAULT = 256 * 1024 * 1024


def _buffer_limits(settings: dict[str, str]) -> list[tuple[str, int, int, int]]:
    parts = settings.get("client-output-buffer-limit", "").split()
    out = []
    for i in range(0, len(parts) - 3, 4):
        try:
            out.append((parts[i], int(parts[i + 1]), int(parts[i + 2]), int(parts[i + 3])))
        except ValueError:
            continue
    return out


def _pubsub_limits(settings: dict[str, str]) -> list[str]:
    parts = settings.get("client-output-buffer-limit", "").split()
    return [" ".join(parts[i : i + 4]) for i in range(0, len(parts) - 3, 4) if parts[i] == "pubsub"]


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
            **env_overrides(os.environ, _KEYS),
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
