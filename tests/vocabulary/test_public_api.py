"""The public API is exactly what supervisor/__init__.py exports."""

from __future__ import annotations

import supervisor


def test_all_names_exist_and_belong_to_the_package():
    """Every name in __all__ exists; classes present themselves as supervisor.X."""
    for name in supervisor.__all__:
        obj = getattr(supervisor, name)
        if isinstance(obj, type):
            assert obj.__module__ == "supervisor", name


def test_issue_names_are_exported():
    """The names other work relies on are public."""
    for name in (
        "Supervisor",
        "SupervisorConfig",
        "ConnectionState",
        "Cause",
        "StateChanged",
        "OutcomeUnknown",
    ):
        assert name in supervisor.__all__
    states = {s.name for s in supervisor.ConnectionState}
    assert {"CONNECTING", "READY", "UNHEALTHY", "RECONNECTING", "CLOSED"} <= states
    causes = {c.name for c in supervisor.Cause}
    assert {
        "IDLE_TIMEOUT",
        "SERVER_RESTART",
        "SERVER_CLOSED",
        "MAXCLIENTS",
        "OUTPUT_BUFFER_LIMIT",
        "LOADING",
        "READONLY",
        "AUTH",
        "NETWORK",
        "UNKNOWN",
    } <= causes
    fields = supervisor.StateChanged.__dataclass_fields__
    assert {"previous", "current", "cause", "at", "detail", "seq"} <= set(fields)
