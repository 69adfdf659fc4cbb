"""Throwaway Redis servers, Sentinel deployments and clusters for tests and the demo.

Leaf of the package: it imports nothing from ``supervisor``, so a test can start
servers without the code under test. Everything public is re-exported here.
"""

from __future__ import annotations

from supervisor.testing.cluster import ClusterNode, ClusterSetup
from supervisor.testing.sentinel import SentinelServer, SentinelSetup
from supervisor.testing.servers import (
    BOUND,
    BinaryServer,
    DockerServer,
    PortTaken,
    RedisServer,
    backend,
    docker_available,
    free_port,
    make_server,
    wait_ping,
)
from supervisor.testing.tls import TLSFiles

__all__ = (
    "BOUND",
    "BinaryServer",
    "ClusterNode",
    "ClusterSetup",
    "DockerServer",
    "PortTaken",
    "RedisServer",
    "SentinelServer",
    "SentinelSetup",
    "TLSFiles",
    "backend",
    "docker_available",
    "free_port",
    "make_server",
    "wait_ping",
)
