"""Whether commands are served: the one readiness answer for ``/health`` and ASGI."""

from __future__ import annotations

from collections.abc import Mapping

from supervisor.state import ConnectionState
from supervisor.targets.cluster import ClusterSupervisor
from supervisor.targets.single import Supervisor

__all__ = ("AnySupervisor", "health_response")

AnySupervisor = Supervisor | ClusterSupervisor

_SERVING = (ConnectionState.READY, ConnectionState.OVERLOADED)


def health_response(supervisors: Mapping[str, AnySupervisor]) -> tuple[int, dict[str, object]]:
    """200 when every target serves commands (READY, or OVERLOADED: commands run on the
    connections that exist), else 503; the body names each state and cause (and, for a
    cluster, each node)."""
    targets: dict[str, dict[str, object]] = {}
    for name, sup in supervisors.items():
        targets[name] = {
            "target": sup.target,
            "state": sup.state.value,
            "cause": sup.cause.value if sup.cause else None,
            "detail": sup.detail,
        }
        if isinstance(sup, ClusterSupervisor):
            targets[name]["nodes"] = {
                address: {"role": n.role, "up": n.up, "slots": n.slots, "detail": n.detail}
                for address, n in sup.nodes.items()
            }
    ready = all(sup.state in _SERVING for sup in supervisors.values())
    return (200 if ready else 503), {
        "status": "ready" if ready else "unavailable",
        "targets": targets,
    }
