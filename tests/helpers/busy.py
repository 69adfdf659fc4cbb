"""A server kept busy on purpose: a Lua loop measured on that server, and its counters."""

from __future__ import annotations

from typing import Any

SPIN = "local x = 0 for i = 1, tonumber(ARGV[1]) do x = x + i end return 1"
"""A script that keeps the server busy for ARGV[1] rounds of a loop (not TIME, which
some servers freeze for the length of a script)."""


def spins_for(admin: Any, milliseconds: float) -> int:
    """Loop rounds that keep this server busy for at least ``milliseconds``: the fastest
    of three measured runs, so a run slowed by a busy machine (the other Pythons' tests
    beside this one) cannot make the loop too short to outlast the timeout."""
    fastest = None
    for _ in range(3):
        admin.config_resetstat()
        admin.eval(SPIN, 0, 1_000_000)
        usec = int(admin.info("commandstats")["cmdstat_eval"]["usec"])
        fastest = usec if fastest is None else min(fastest, usec)
    admin.config_resetstat()
    return int(1_000_000 * milliseconds * 1000 / max(fastest or 1, 1))


def calls(admin: Any, command: str) -> int:
    stats = admin.info("commandstats").get(f"cmdstat_{command}", {})
    return int(stats.get("calls", 0))
