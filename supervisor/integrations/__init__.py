"""Glue for the stacks apps run: ASGI lifespan, readiness and metrics, Prometheus, OpenTelemetry.

Public through ``supervisor.asgi`` and ``supervisor.otel``. May import the vocabulary,
``connection`` and ``targets``; never ``service``, which builds on it.
"""
