"""An asyncio connection supervisor for Redis.

The public API is what this module exports; every other module is internal.
"""

from __future__ import annotations

from supervisor import _clash  # noqa: F401  (first: refuses a package shared with supervisord)
from supervisor.causes import Cause, FlushCause
from supervisor.config import SupervisorConfig
from supervisor.errors import ConfigError, OutcomeUnknown, SupervisorError, Unavailable
from supervisor.events import (
    Alert,
    CacheFlushed,
    ConnectionLost,
    Event,
    HealthCheckFailed,
    MasterChanged,
    NodeStateChanged,
    ReconnectScheduled,
    Resubscribed,
    ServerSampled,
    Snapshot,
    StateChanged,
    TopologyChanged,
)
from supervisor.state import ConnectionState
from supervisor.targets.cluster import ClusterNodeState, ClusterSupervisor
from supervisor.targets.cluster_pubsub import ClusterPubSub
from supervisor.targets.hub import Subscription
from supervisor.targets.pubsub import Message, SupervisedPubSub
from supervisor.targets.single import Supervisor, SupervisorStatistics
from supervisor.targets.statistics import CacheStatistics

__all__ = (
    # the supervisor
    "Supervisor",
    "SupervisorConfig",
    "SupervisorStatistics",
    "CacheStatistics",
    "ClusterSupervisor",
    "ClusterNodeState",
    "ConnectionState",
    "Cause",
    # events
    "Event",
    "Snapshot",
    "StateChanged",
    "ReconnectScheduled",
    "ConnectionLost",
    "HealthCheckFailed",
    "MasterChanged",
    "NodeStateChanged",
    "TopologyChanged",
    "Resubscribed",
    "ServerSampled",
    "Alert",
    "CacheFlushed",
    "FlushCause",
    "Subscription",
    # pub/sub
    "SupervisedPubSub",
    "ClusterPubSub",
    "Message",
    # exceptions
    "SupervisorError",
    "ConfigError",
    "OutcomeUnknown",
    "Unavailable",
)

from supervisor._version import __version__ as __version__

for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type):
        _obj.__module__ = "supervisor"
del _name, _obj
