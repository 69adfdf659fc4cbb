"""A cluster's topology as the supervisor reads it from ``CLUSTER NODES``."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ("ClusterNodeState", "Row", "parse_nodes", "slot_ranges")


@dataclass(frozen=True, slots=True)
class ClusterNodeState:
    """What the supervisor knows of one node."""

    address: str
    role: str
    """``primary`` or ``replica``."""
    up: bool
    slots: str
    """Slot ranges it serves, e.g. ``0-5460``; empty for replicas."""
    detail: str


@dataclass(frozen=True, slots=True)
class Row:
    address: str
    role: str
    failed: bool
    slots: str
    node_id: str = ""
    primary_id: str = ""
    """For a replica: the node id of its primary."""


def slot_ranges(slots: str) -> list[tuple[int, int]]:
    """``"0-5460 5461"`` as inclusive ranges: ``[(0, 5460), (5461, 5461)]``."""
    ranges = []
    for part in slots.split():
        low, _, high = part.partition("-")
        ranges.append((int(low), int(high or low)))
    return ranges


def parse_nodes(text: str) -> list[Row]:
    rows = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        flags = set(fields[2].split(","))
        if "noaddr" in flags or "handshake" in flags:
            continue
        address = fields[1].split("@", 1)[0]
        slots = " ".join(f for f in fields[8:] if not f.startswith("["))
        role = "primary" if "master" in flags else "replica"
        rows.append(
            Row(
                address,
                role,
                "fail" in flags,
                slots if role == "primary" else "",
                node_id=fields[0],
                primary_id=fields[3] if role == "replica" else "",
            )
        )
    return rows
