"""What ``diagnose`` concludes from a server's ``INFO``, ``CONFIG`` and ``CLIENT LIST``:
each finding with its severity and its fix, the seed's causes first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from supervisor.causes import Cause, fix_for

__all__ = ("RATES", "Finding", "findings")

Severity = Literal["info", "warning", "serious"]


@dataclass(frozen=True, slots=True)
class Finding:
    severity: Severity
    finding: str
    fix: str


def findings(
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


RATES = ("rejected_connections", "evicted_clients", "total_connections_received")
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
