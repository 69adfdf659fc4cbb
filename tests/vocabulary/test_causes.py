"""Cause attribution from recorded evidence."""

from __future__ import annotations

import re

import pytest

from supervisor.causes import Cause, Evidence, attribute, fix_for


@pytest.mark.parametrize(
    ("evidence", "cause", "shown"),
    [
        (
            Evidence(error="ResponseError: max number of clients reached"),
            Cause.MAXCLIENTS,
            "max number",
        ),
        (
            Evidence(
                error="AuthenticationError: invalid username-password pair or user is disabled."
            ),
            Cause.AUTH,
            "invalid username",
        ),
        (
            Evidence(error="AuthenticationRequiredError: Authentication required."),
            Cause.AUTH,
            "Authentication",
        ),
        (
            Evidence(
                error="ConnectionError: Error 1 connecting to 127.0.0.1:6380. [SSL: "
                "CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate",
                reachable=False,
            ),
            Cause.TLS,
            "certificate verify failed",
        ),
        (  # a subscriber that keeps up, cut by CLIENT KILL TYPE pubsub (no counter: 7.0)
            Evidence(
                error="ConnectionError: Connection closed by server.",
                reachable=True,
                output_buffer_seen=900,
                output_buffer_limit="pubsub hard 33554432 bytes, soft 8388608 bytes for 60 s",
                client_class="pubsub",
            ),
            Cause.SERVER_CLOSED,
            "far below its class's output buffer limit",
        ),
        (  # one that ran behind: past half of the soft limit
            Evidence(
                error="ConnectionError: Connection closed by server.",
                reachable=True,
                output_buffer_seen=5_000_000,
                output_buffer_limit="pubsub hard 33554432 bytes, soft 8388608 bytes for 60 s",
                client_class="pubsub",
            ),
            Cause.OUTPUT_BUFFER_LIMIT,
            "ran 5000000 bytes behind",
        ),
        (
            Evidence(error="BusyLoadingError: Redis is loading the dataset in memory"),
            Cause.LOADING,
            "loading",
        ),
        (
            Evidence(error="ReadOnlyError: You can't write against a read only replica."),
            Cause.READONLY,
            "read only",
        ),
        (
            Evidence(
                error="ConnectionError: Connection closed by server.",
                run_id_before="a" * 40,
                run_id_after="b" * 40,
                uptime_after=2,
                reachable=True,
            ),
            Cause.SERVER_RESTART,
            "run_id changed",
        ),
        (
            Evidence(
                error="ConnectionError: Connection closed by server.",
                output_buffer_disconnections_delta=1,
                reachable=True,
                client_class="pubsub",
                counters_window=1.0,
            ),
            Cause.OUTPUT_BUFFER_LIMIT,
            "client_output_buffer_limit_disconnections grew by 1 within 1.0 s .*server-wide",
        ),
        (
            # a pooled (normal) connection: the normal class has no output buffer limit,
            # so another client's eviction does not explain its loss
            Evidence(
                error="ConnectionError: Connection closed by server.",
                output_buffer_disconnections_delta=1,
                reachable=True,
            ),
            Cause.SERVER_CLOSED,
            "CLIENT KILL",
        ),
        (
            Evidence(
                error="the server closed the connection",
                idle_for=1.4,
                server_timeout=1.0,
                run_id_before="a",
                run_id_after="a",
                reachable=True,
            ),
            Cause.IDLE_TIMEOUT,
            "idle 1.4 s, server timeout is 1 s",
        ),
        (
            Evidence(
                error="the server closed the connection",
                idle_for=0.1,
                server_timeout=300.0,
                run_id_before="a",
                run_id_after="a",
                reachable=True,
            ),
            Cause.SERVER_CLOSED,
            "CLIENT KILL",
        ),
        (
            Evidence(error="x", evicted_clients_delta=2, reachable=True),
            Cause.CLIENT_EVICTION,
            "evicted_clients grew by 2 .*maxmemory-clients.*server-wide",
        ),
        (
            Evidence(
                error="ConnectionError: Error 111 connecting to 127.0.0.1:1. Connection refused.",
                reachable=False,
            ),
            Cause.NETWORK,
            "refused",
        ),
        (Evidence(error="TimeoutError: Timeout reading from socket"), Cause.NETWORK, "Timeout"),
        (Evidence(error="something odd"), Cause.UNKNOWN, "something odd"),
    ],
)
def test_attribution(evidence, cause, shown):
    """Each cause is named from the evidence that shows it, and the detail says what."""
    found, detail = attribute(evidence)
    assert found is cause
    assert re.search(shown, detail), detail


def test_idle_time_below_the_timeout_is_not_an_idle_timeout():
    """A connection used half a timeout ago was not closed for idleness."""
    cause, _ = attribute(Evidence(error="closed", idle_for=0.3, server_timeout=1.0, reachable=True))
    assert cause is Cause.SERVER_CLOSED


def test_disabled_timeout_never_attributes_idle():
    """timeout 0 means the server never closes idle clients."""
    cause, _ = attribute(Evidence(error="closed", idle_for=1e6, server_timeout=0.0, reachable=True))
    assert cause is Cause.SERVER_CLOSED


def test_every_cause_has_a_fix():
    """Each cause tells the user what to do."""
    for cause in Cause:
        assert fix_for(cause)
