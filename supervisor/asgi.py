"""ASGI lifespan and readiness probe: the public path of ``supervisor.integrations.asgi``."""

from __future__ import annotations

from supervisor.integrations.asgi import ReadinessApp, lifespan, readiness

__all__ = ("ReadinessApp", "lifespan", "readiness")
