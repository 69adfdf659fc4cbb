"""Throwaway Redis Clusters: three primaries and three replicas on loopback."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import redis

from supervisor.testing.servers import BinaryServer, free_port
from supervisor.testing.tls import TLSFiles


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free and valid too."""
    for _ in range(100):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


class ClusterNode(BinaryServer):
    """A cluster-enabled ``redis-server`` whose bus port (port + 10000) is free too."""

    def __init__(self, *extra: str, tls: TLSFiles | None = None) -> None:
        super().__init__(*extra, tls=tls)
        self.port = _cluster_port()

    def _pick_port(self) -> int:
        return _cluster_port()


class ClusterSetup:
    """A Redis Cluster of 3 primaries and 3 replicas on loopback (binary backend only)."""

    def __init__(
        self,
        *extra: str,
        node_timeout_ms: int = 1000,
        full_coverage: bool = True,
        tls: bool = False,
    ) -> None:
        """``extra``: more ``redis-server`` arguments for every node (a node restarted or
        added keeps them, unlike ``CONFIG SET``). ``tls``: every node listens on TLS only,
        the cluster bus and replication included; ``self.tls.ca`` is the CA clients trust."""
        self.nodes: list[ClusterNode] = []
        self._extra = extra
        self.tls = TLSFiles() if tls else None
        try:
            self._start(node_timeout_ms, full_coverage)
        except BaseException:
            self.close()
            raise

    def _start(self, node_timeout_ms: int, full_coverage: bool) -> None:
        self.nodes = [
            ClusterNode(
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                str(node_timeout_ms),
                "--cluster-require-full-coverage",
                "yes" if full_coverage else "no",
                "--repl-diskless-sync-delay",
                "0",
                *(("--tls-cluster", "yes", "--tls-replication", "yes") if self.tls else ()),
                *self._extra,
                tls=self.tls,
            )
            for _ in range(6)
        ]
        for node in self.nodes:
            node.start()
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is not installed (Debian: redis-tools)")
        subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.port}" for n in self.nodes),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
                *(("--tls", "--cacert", self.tls.ca) if self.tls else ()),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        self.wait_ok()

    @property
    def seeds(self) -> list[str]:
        return [f"127.0.0.1:{n.port}" for n in self.nodes[:3]]

    def node(self, address: str) -> ClusterNode:
        return next(n for n in self.nodes if f"127.0.0.1:{n.port}" == address)

    def wait_ok(self, timeout: float = 30) -> None:
        """Until every live node says cluster_state:ok, knows every live node and its role
        as the others do (gossip is slow with a long node timeout: a replica's role may
        reach one node after another), and knows its replica is in sync."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                states = []
                views = []
                live = [n for n in self.nodes if n._proc is not None and n._proc.poll() is None]
                for n in live:
                    with n.admin() as r:
                        states.append(r.cluster("info")["cluster_state"] == "ok")
                        known = r.execute_command("CLUSTER", "NODES").splitlines()
                        settled = [k for k in known if "handshake" not in k]
                        states.append(len(settled) >= len(live))
                        views.append(_roles(settled))
                        info = r.info("replication")
                        if info["role"] == "slave":
                            states.append(info.get("master_link_status") == "up")
                if all(states) and all(view == views[0] for view in views):
                    return
            except redis.RedisError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the cluster did not reach cluster_state:ok in {timeout} s")

    def primary_of(self, key: str) -> str:
        with self.nodes[0].admin() as r:
            slot = r.cluster("keyslot", key)
            for start, end, primary, *_ in r.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    return f"{primary[0]}:{primary[1]}"
        raise LookupError(key)

    def node_id(self, address: str) -> str:
        with self.node(address).admin() as r:
            return str(r.execute_command("CLUSTER", "MYID"))

    def slot_of(self, key: str) -> int:
        with self.nodes[0].admin() as r:
            return int(r.cluster("keyslot", key))

    def primaries(self) -> list[str]:
        """Live nodes that say they are a primary."""
        out = []
        for n in self.nodes:
            if n._proc is None or n._proc.poll() is not None:
                continue
            with n.admin() as r:
                if r.execute_command("ROLE")[0] == "master":
                    out.append(f"127.0.0.1:{n.port}")
        return out

    def replica_of(self, address: str) -> str:
        """A live replica of the primary at ``address``."""
        port = int(address.rsplit(":", 1)[1])
        for n in self.nodes:
            if n._proc is None or n._proc.poll() is not None:
                continue
            with n.admin() as r:
                info = r.info("replication")
                if info["role"] == "slave" and int(info["master_port"]) == port:
                    return f"127.0.0.1:{n.port}"
        raise LookupError(f"no live replica of {address}")

    def move_slot(self, slot: int, to: str) -> None:
        """Move ``slot`` in place as resharding tools do: IMPORTING on the new owner,
        MIGRATING on the old one, its keys moved with ``MIGRATE``, then ``SETSLOT NODE``
        on the new owner, the old one and the rest of the primaries."""
        source = self.owner_of_slot(slot)
        dest_id, source_id = self.node_id(to), self.node_id(source)
        host, port = to.rsplit(":", 1)
        with self.node(to).admin() as d, self.node(source).admin() as s:
            d.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
            s.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dest_id)
            for _ in range(10_000):
                keys = s.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100)
                if not keys:
                    break
                s.execute_command("MIGRATE", host, port, "", 0, 5000, "KEYS", *keys)
            d.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dest_id)
            try:
                s.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dest_id)
            except redis.ResponseError as exc:
                # its last slot gone, the old owner made itself a replica of the new one
                # (Redis 7) as soon as the new owner's epoch reached it
                if "only with masters" not in str(exc):
                    raise
        for address in self.primaries():
            if address not in (to, source):
                with self.node(address).admin() as r:
                    r.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dest_id)

    def owner_of_slot(self, slot: int) -> str:
        with self.nodes[0].admin() as r:
            for start, end, primary, *_ in r.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    return f"{primary[0]}:{primary[1]}"
        raise LookupError(slot)

    def failover(self, address: str, timeout: float = 30) -> str:
        """A manual ``CLUSTER FAILOVER`` of the primary at ``address``; returns its
        replica, once that says it is the primary."""
        replica = self.replica_of(address)
        with self.node(replica).admin() as r:
            r.execute_command("CLUSTER", "FAILOVER")
            deadline = time.monotonic() + timeout
            while r.execute_command("ROLE")[0] != "master":
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{replica} was not promoted within {timeout} s")
                time.sleep(0.02)
        return replica

    def add_node(self) -> str:
        """A new empty primary, met by the cluster; returns its address."""
        node = ClusterNode(*self.nodes[0]._extra, tls=self.tls)
        node.start()
        self.nodes.append(node)
        address = f"127.0.0.1:{node.port}"
        with self.nodes[0].admin() as r:
            r.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)
        self.wait_ok()
        return address

    def remove_node(self, address: str) -> None:
        """Take a primary that serves no slot (and has no replica) out of the cluster:
        ``CLUSTER FORGET`` on every other node, then stop it."""
        node_id = self.node_id(address)
        leaving = self.node(address)
        for n in self.nodes:
            if n is leaving or n._proc is None or n._proc.poll() is not None:
                continue
            with n.admin() as r:
                r.execute_command("CLUSTER", "FORGET", node_id)
        leaving.close()
        self.nodes.remove(leaving)
        self.wait_ok()

    def close(self) -> None:
        for node in self.nodes:
            node.close()
        if self.tls is not None:
            self.tls.close()


def _roles(lines: list[str]) -> frozenset[tuple[str, str]]:
    """``(address, "master" | "slave")`` of each node a ``CLUSTER NODES`` view holds."""
    out = set()
    for line in lines:
        fields = line.split()
        if len(fields) > 2:
            flags = fields[2].split(",")
            role = "master" if "master" in flags else "slave" if "slave" in flags else "?"
            out.add((fields[1].split("@")[0], role))
    return frozenset(out)
