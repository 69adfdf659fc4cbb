"""The test servers themselves: a port another process holds is never taken for ours."""

from __future__ import annotations

import pytest

from supervisor.testing import BinaryServer, PortTaken


def test_a_taken_port_is_given_up_on_first_start_and_refused_on_restart(shared_server):
    """Started on a port another redis-server holds: the first start moves to a free
    port and talks to its own process; a restart on a taken port fails clearly."""
    server = BinaryServer()
    server.port = shared_server.port  # as if another job bound it after free_port()
    try:
        server.start()
        assert server.port != shared_server.port
        with server.admin() as r:
            assert int(r.info("server")["process_id"]) == server._proc.pid
        server.kill()
        server.port = shared_server.port
        with pytest.raises(PortTaken, match=r"exited|not ours"):
            server.start()
    finally:
        server.close()
