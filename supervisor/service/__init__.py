"""The standalone process (``python -m supervisor run``) and its tools.

Its configuration, HTTP ``/health`` and ``/metrics`` (the Prometheus text of
``integrations``), server monitoring, ``diagnose`` and ``demo``. May import every layer
below it; nothing imports it.
"""
