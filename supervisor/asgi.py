"""ASGI lifespan and readiness probe: the public path of ``supervisor.integrations.asgi``."""

from __future__ import annotations

from supervisor.integrations.asgi import MetricsApp, ReadinessApp, lifespan, readiness

__all__ = ("MetricsApp", "ReadinessApp", "lifespan", "readiness")
