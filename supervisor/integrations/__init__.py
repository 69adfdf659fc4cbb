"""Glue for the stacks apps run: ASGI lifespan and readiness, OpenTelemetry metrics.

Public through ``supervisor.asgi`` and ``supervisor.otel``. May import the vocabulary,
``connection`` and ``targets``; never ``service``.
"""
