"""OpenTelemetry metrics (extra ``otel``): the public path of ``supervisor.integrations.otel``."""

from __future__ import annotations

from supervisor.integrations.otel import CLOSE_REASON, FLUSH_CAUSE, TARGET, instrument

__all__ = ("CLOSE_REASON", "FLUSH_CAUSE", "TARGET", "instrument")
