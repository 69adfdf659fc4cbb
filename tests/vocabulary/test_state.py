"""The transition table."""

from __future__ import annotations

import pytest

from supervisor.state import ALLOWED, ConnectionState, check_transition

S = ConnectionState


def test_closed_is_final():
    """Nothing leaves CLOSED."""
    for state in S:
        with pytest.raises(RuntimeError, match="illegal transition closed"):
            check_transition(S.CLOSED, state)


def test_every_state_can_close():
    """Stopping works from any live state."""
    for state in S:
        if state is not S.CLOSED:
            check_transition(state, S.CLOSED)


def test_ready_is_reached_only_through_a_connection():
    """READY never follows itself; CONNECTING is never re-entered."""
    assert S.READY not in ALLOWED[S.READY]
    assert all(S.CONNECTING not in targets for targets in ALLOWED.values())
