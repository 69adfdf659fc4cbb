"""ASGI lifespan, readiness probe, metrics and the 503 for ``Unavailable``: the public
path of ``supervisor.integrations.asgi``."""

from __future__ import annotations

from supervisor.integrations.asgi import (
    MetricsApp,
    ReadinessApp,
    UnavailableHandler,
    UnavailableMiddleware,
    lifespan,
    readiness,
    unavailable_handler,
)

__all__ = (
    "MetricsApp",
    "ReadinessApp",
    "UnavailableHandler",
    "UnavailableMiddleware",
    "lifespan",
    "readiness",
    "unavailable_handler",
)
