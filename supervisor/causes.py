"""Why a connection was lost: the causes, and attribution from evidence.

Attribution is a pure function of recorded evidence (the error text, the
server's ``run_id`` before and after, its idle ``timeout`` against the
connection's idle time, ``INFO stats`` counters), so it is tested without a
server and explained in the ``detail`` it returns.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

__all__ = ("Cause", "Evidence", "FlushCause", "attribute", "fix_for")


class FlushCause(enum.Enum):
    """Why the client-side cache dropped every entry (``CacheFlushed.cause``)."""

    STREAM_LOST = "stream_lost"
    """The invalidation connection closed: killed, evicted, the server restarted..."""
    READER_LOST = "reader_lost"
    """The connection the cache reads on closed: what it tracked is forgotten."""
    STALLED = "stalled"
    """A round of the proof went unanswered for ``command_deadline`` (the server was
    stopped, or the connection is silently gone): until then a stall keeps the entries
    and serves none of them."""
    RENEWED = "renewed"
    """The supervisor reconnected after an outage (a restart, a failover)."""
    SERVER_FLUSH = "server_flush"
    """The server said every key changed (a null invalidation): ``FLUSHALL``, ``FLUSHDB``."""
    SWAPDB = "swapdb"
    """``SWAPDB`` ran on the server (it sends no invalidation)."""
    LOCAL_FLUSH = "local_flush"
    """``FLUSHALL``, ``FLUSHDB`` or ``SWAPDB`` through ``sup.client``."""
    REPLICA = "replica"
    """The server says it is a replica (``role:slave``): it applies its master's writes
    later than they were acknowledged, so nothing is served until it is a master."""


class Cause(enum.Enum):
    """Why a connection to Redis was lost or could not be made."""

    IDLE_TIMEOUT = "idle_timeout"
    SERVER_RESTART = "server_restart"
    SERVER_CLOSED = "server_closed"
    MAXCLIENTS = "maxclients"
    OUTPUT_BUFFER_LIMIT = "output_buffer_limit"
    CLIENT_EVICTION = "client_eviction"
    LOADING = "loading"
    READONLY = "readonly"
    FAILOVER = "failover"
    SLOT_MIGRATED = "slot_migrated"
    NODE_REMOVED = "node_removed"
    AUTH = "auth"
    TLS = "tls"
    SETUP = "setup"
    NETWORK = "network"
    UNKNOWN = "unknown"


_FIXES: dict[Cause, str] = {
    Cause.IDLE_TIMEOUT: (
        "the server's `timeout` closed an idle connection; the supervisor pings "
        "idle connections below it, or set `CONFIG SET timeout 0`"
    ),
    Cause.SERVER_RESTART: "the server restarted; data not persisted is gone",
    Cause.SERVER_CLOSED: (
        "the server closed the connection while it stayed up (CLIENT KILL, "
        "client eviction); check `CLIENT LIST` and `INFO stats`"
    ),
    Cause.MAXCLIENTS: (
        "the server refused the connection: maxclients reached; raise it with "
        "`CONFIG SET maxclients N` or use fewer connections (`max_connections`)"
    ),
    Cause.OUTPUT_BUFFER_LIMIT: (
        "the client fell behind and hit `client-output-buffer-limit`; read "
        "faster or raise the limit for its class"
    ),
    Cause.CLIENT_EVICTION: (
        "the server evicted the client to keep all clients' memory under "
        "`maxmemory-clients` (memory pressure); raise it, or exempt the connections that "
        "must stay with `CLIENT NO-EVICT on`"
    ),
    Cause.LOADING: "the server is loading its dataset into memory; it answers when done",
    Cause.READONLY: (
        "the server is a replica now (failover); point the URL at the master or use Sentinel"
    ),
    Cause.FAILOVER: (
        "Redis Sentinel or the cluster moved the master to another server; the supervisor "
        "followed it"
    ),
    Cause.SLOT_MIGRATED: (
        "a cluster slot moved to another primary (resharding); the supervisor followed it, "
        "and messages published during the move may be missing: resync them"
    ),
    Cause.NODE_REMOVED: (
        "the node left the cluster (CLUSTER FORGET, del-node); the supervisor moved what "
        "it carried to the nodes that remain"
    ),
    Cause.AUTH: (
        "authentication failed; fix the username/password in the URL or the "
        "server's ACL (the supervisor retries only every `auth_retry_interval`)"
    ),
    Cause.TLS: (
        "the TLS handshake failed; point `ssl_ca_certs` at the CA that signed the server's "
        "certificate, use the host name the certificate names, and match the scheme to the "
        "port (rediss:// where it speaks TLS, redis:// where it does not); the supervisor "
        "retries only every `auth_retry_interval`"
    ),
    Cause.SETUP: (
        "the server refused the connection's setup (a db index it does not have: "
        "`redis://host:port/N` with N below its `databases`), or what answers is not Redis "
        "(another service's port); fix the url. The supervisor retries only every "
        "`auth_retry_interval`"
    ),
    Cause.NETWORK: (
        "the server could not be reached (refused, reset or timed out); check "
        "that it runs and that the host and port are right"
    ),
    Cause.UNKNOWN: "no evidence pointed at a cause",
}


def fix_for(cause: Cause) -> str:
    """Say what the cause means and what to do about it, in one line."""
    return _FIXES[cause]


@dataclass(frozen=True, slots=True, kw_only=True)
class Evidence:
    """What was known when a connection was lost, and just after.

    ``error`` is the error text (never holding a secret). ``idle_for`` is how
    long the lost connection had gone without a command, ``server_timeout``
    the server's idle ``timeout`` (0 when disabled). ``output_buffer_seen`` is
    the largest ``omem`` sampled for the connection (``CLIENT LIST``) before
    the loss, ``output_buffer_limit`` its class's limit. ``stalled`` says the
    client itself gave up waiting for a reply. ``run_id_before`` and
    ``run_id_after`` come from ``INFO server``; ``reachable`` tells whether the
    server answered just after the loss. The ``*_delta`` fields are growth
    of ``INFO stats`` counters across the loss, where the server has them, over
    ``counters_window`` seconds. ``client_class`` is the lost connection's
    (``normal`` for pooled ones, ``pubsub``): the normal class has no output buffer
    limit unless the server sets one.
    """

    error: str = ""
    idle_for: float | None = None
    server_timeout: float | None = None
    run_id_before: str | None = None
    run_id_after: str | None = None
    uptime_after: int | None = None
    reachable: bool | None = None
    output_buffer_disconnections_delta: int | None = None
    evicted_clients_delta: int | None = None
    output_buffer_seen: int | None = None
    output_buffer_limit: str | None = None
    stalled: bool = False
    client_class: str = "normal"
    counters_window: float | None = None


_IDLE_SLACK = 0.8
"""A connection idle for 80% of the server timeout counts as timed out.

The idle time is measured on the client, the server's clock runs its own
``clientsCron`` a little later; the slack absorbs that difference.
"""


def attribute(evidence: Evidence) -> tuple[Cause, str]:
    """Name the most likely cause of a loss and say what showed it."""
    text = evidence.error.lower()
    if "max number of clients" in text:
        return Cause.MAXCLIENTS, f"server replied: {evidence.error}"
    if any(
        m in text
        for m in ("wrongpass", "noauth", "invalid username", "invalid password", "authentication")
    ):
        return Cause.AUTH, f"server replied: {evidence.error}"
    if "[ssl" in text or "speaks tls" in text or "does not speak tls" in text:
        return Cause.TLS, evidence.error
    if "loading" in text and "dataset" in text:
        return Cause.LOADING, f"server replied: {evidence.error}"
    if evidence.error.startswith("ResponseError: "):  # an error reply to the setup itself
        return Cause.SETUP, f"the server refused the connection's setup: {evidence.error}"
    if evidence.error.startswith("InvalidResponse: "):
        return Cause.SETUP, (
            f"what answers at this address does not speak Redis's protocol ({evidence.error})"
        )
    if "readonly" in text or "read only replica" in text:
        return Cause.READONLY, f"server replied: {evidence.error}"
    before, after = evidence.run_id_before, evidence.run_id_after
    if before and after and before != after:
        uptime = f", up {evidence.uptime_after} s" if evidence.uptime_after is not None else ""
        return Cause.SERVER_RESTART, f"run_id changed {before[:8]} -> {after[:8]}{uptime}"
    window = (
        f" within {evidence.counters_window:.1f} s around the loss"
        if evidence.counters_window is not None
        else ""
    )
    server_wide = "; a server-wide counter, so another client's eviction counts too"
    if evidence.output_buffer_disconnections_delta and (
        evidence.client_class != "normal" or evidence.output_buffer_limit
    ):
        seen = (
            f", and this client held {evidence.output_buffer_seen} bytes of unread output"
            if evidence.output_buffer_seen
            else ""
        )
        return Cause.OUTPUT_BUFFER_LIMIT, (
            "INFO stats client_output_buffer_limit_disconnections grew by "
            f"{evidence.output_buffer_disconnections_delta}{window}{seen}"
            f"{'' if seen else server_wide}"
        )
    if evidence.stalled:
        return Cause.NETWORK, (
            f"{evidence.error or 'no reply'}: the server stalled or the network dropped "
            "packets; the client closed the connection"
        )
    if evidence.evicted_clients_delta and not (
        evidence.output_buffer_seen and evidence.output_buffer_limit
    ):
        return Cause.CLIENT_EVICTION, (
            f"INFO stats evicted_clients grew by {evidence.evicted_clients_delta}{window} "
            f"(maxmemory-clients){server_wide}"
        )
    if (
        evidence.output_buffer_seen
        and evidence.reachable
        and _near_limit(evidence.output_buffer_seen, evidence.output_buffer_limit)
        and evidence.output_buffer_disconnections_delta != 0
    ):
        return Cause.OUTPUT_BUFFER_LIMIT, (
            f"this client ran {evidence.output_buffer_seen} bytes behind (unread output "
            "sampled on the server, or read after its last caught-up moment) when the "
            f"server closed it (limit: {evidence.output_buffer_limit}) and stayed up: "
            "likely the output-buffer limit; no server counter confirms it here"
        )
    if evidence.output_buffer_seen and evidence.reachable:
        limit = (
            f"far below its class's output buffer limit ({evidence.output_buffer_limit})"
            if evidence.output_buffer_limit
            else "its class has no known output buffer limit"
        )
        return Cause.SERVER_CLOSED, (
            f"the server held {evidence.output_buffer_seen} bytes of unread output for this "
            f"client and closed it while it stayed up; {limit}, so client eviction "
            "(maxmemory-clients) or CLIENT KILL closed it"
        )
    timeout, idle = evidence.server_timeout, evidence.idle_for
    if timeout and idle is not None and idle >= timeout * _IDLE_SLACK:
        return Cause.IDLE_TIMEOUT, (
            f"connection idle {idle:.1f} s, server timeout is {timeout:g} s"
        )
    if evidence.reachable:
        return Cause.SERVER_CLOSED, (
            f"{evidence.error or 'connection closed'}; the server stayed up "
            "(same run_id), so it closed the connection (CLIENT KILL or eviction)"
        )
    if evidence.reachable is False or _looks_like_network(text):
        return Cause.NETWORK, evidence.error or "server unreachable"
    return Cause.UNKNOWN, evidence.error or "no evidence"


NEAR_LIMIT = 0.5
"""A client "ran behind" when its unread output reached this share of the smallest
limit of its class (hard, or soft): a subscriber that keeps up has a few hundred bytes
in flight at any moment, which says nothing."""


def _near_limit(seen: int, limit: str | None) -> bool:
    if not limit:
        return False
    found = [int(n) for n in re.findall(r"(?:hard|soft) (\d+) bytes", limit)]
    smallest = min((n for n in found if n > 0), default=None)
    return smallest is not None and seen >= smallest * NEAR_LIMIT


def _looks_like_network(text: str) -> bool:
    return any(
        m in text
        for m in (
            "refused",
            "reset",
            "timeout",
            "timed out",
            "unreachable",
            "closed by server",
            "error while reading",
            "error while writing",
            "no route",
            "name or service",
            "broken pipe",
        )
    )
