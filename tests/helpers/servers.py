"""The test suite's servers come from ``supervisor.testing`` (the demo uses them too)."""

from supervisor.testing import BOUND, RedisServer, free_port, make_server

__all__ = ("BOUND", "RedisServer", "free_port", "make_server")
