"""``CLUSTER NODES`` as the cluster supervisor reads it: primaries with their slots,
replicas with their primary, failed and handshaking nodes told apart."""

from __future__ import annotations

from supervisor.targets.cluster_topology import Row, parse_nodes, slot_ranges

NODES = """\
07c3 127.0.0.1:30004@40004 slave e7d1 0 1426238317239 4 connected
67ed 127.0.0.1:30002@40002 master - 0 1426238316232 2 connected 5461-10922
292f 127.0.0.1:30003@40003 master,fail - 0 1426238318243 3 connected 10923-16383
e7d1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460 [5461->-67ed]
aaaa :0@0 handshake,noaddr - 0 0 0 disconnected
"""


def test_rows_for_every_node_with_an_address() -> None:
    rows = parse_nodes(NODES)
    assert rows == [
        Row("127.0.0.1:30004", "replica", False, "", node_id="07c3", primary_id="e7d1"),
        Row("127.0.0.1:30002", "primary", False, "5461-10922", node_id="67ed"),
        Row("127.0.0.1:30003", "primary", True, "10923-16383", node_id="292f"),
        Row("127.0.0.1:30001", "primary", False, "0-5460", node_id="e7d1"),
    ]


def test_slot_ranges_are_inclusive() -> None:
    assert slot_ranges("0-5460 5461") == [(0, 5460), (5461, 5461)]
