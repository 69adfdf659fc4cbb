"""Decoding raw replies read straight off a connection (bytes or str, RESP2 or RESP3).

The supervisor's own connections (probes, pub/sub, sentinels) read replies
without redis-py's response callbacks; these helpers are the one place that
turns them into text, numbers and maps.
"""

from __future__ import annotations

from typing import Any

__all__ = ("config_value", "info", "pairs", "product", "text", "to_int")


def text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def to_int(value: Any) -> int | None:
    """An integer, or None when the value is missing or not a number."""
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def pairs(reply: Any) -> dict[str, str]:
    """A map from a RESP3 map or a RESP2 flat ``[key, value, ...]`` list."""
    if isinstance(reply, dict):
        return {text(k): text(v) for k, v in reply.items()}
    items = [text(v) for v in reply]
    return dict(zip(items[::2], items[1::2], strict=False))


def config_value(reply: Any) -> str:
    """The value of a one-key ``CONFIG GET`` reply."""
    return next(iter(pairs(reply).values()), "")


def info(reply: Any) -> dict[str, str]:
    """``INFO`` text as a map of its ``key:value`` lines."""
    out = {}
    for line in text(reply).splitlines():
        key, sep, value = line.partition(":")
        if sep and not key.startswith("#"):
            out[key] = value.strip()
    return out


def product(info: dict[str, str]) -> str:
    """The server's product and version: Valkey keeps ``redis_version:7.2.4`` for
    compatibility and names itself in ``server_name`` and ``valkey_version``."""
    if "valkey_version" in info or info.get("server_name", "").lower() == "valkey":
        return f"Valkey {info.get('valkey_version', info.get('redis_version', '?'))}"
    return f"Redis {info.get('redis_version', '?')}"
