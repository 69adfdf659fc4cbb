"""A small Starlette app embedding a supervisor (``pip install -e '.[web]'``).

    SUPERVISOR_URL=redis://127.0.0.1:6379/0 uvicorn examples.starlette_app:app

The target and every other setting come from ``SUPERVISOR_<KEY>`` variables
(``SupervisorConfig.from_env()``); with none set it is redis://127.0.0.1:6379/0,
and the app logs which Redis it uses at startup. A request waits through an outage
for at most ``WEB_DEFAULTS``' 2 s, not the library's 10 s (right for workers and jobs):
a request held longer outlives most clients' and load balancers' timeouts.
``/hits`` counts in Redis; ``/ready`` is the readiness probe: 200 while Redis is
READY, 503 with the state and cause while it is not (mount it where only your
orchestrator reaches it: it names the target); ``/metrics`` is Prometheus text, the
names the shipped dashboard and alert rules use.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from supervisor import OutcomeUnknown, SupervisorConfig, Unavailable
from supervisor.asgi import MetricsApp, ReadinessApp, lifespan, unavailable_handler

log = logging.getLogger("examples.starlette_app")
# the app, not the library, configures logging: the supervisor's records (logger
# "supervisor") and the app's own go wherever the app sends them
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


async def hits(request: Request) -> JSONResponse:
    sup = request.app.state.supervisor
    try:
        count = await sup.client.incr("example:hits")
    except OutcomeUnknown as exc:
        log.warning("hit may or may not be counted: %s", exc)
        return JSONResponse({"error": "the count may or may not have been recorded"}, 503)
    # Unavailable: unavailable_handler below answers 503 with Retry-After for every route
    return JSONResponse({"hits": count})


WEB_DEFAULTS = {"command_deadline": 2.0}
"""Request-path settings: a restart's or a failover's few seconds mostly fit in 2 s; for
a longer outage each request gets its 503 after 2 s (``SUPERVISOR_OFFLINE=fail_fast``
answers at once). ``SUPERVISOR_*`` variables still win."""


def create_app(config: SupervisorConfig | None = None) -> Starlette:
    config = config or SupervisorConfig.from_env(defaults=WEB_DEFAULTS)
    supervise = lifespan(config)

    @asynccontextmanager
    async def lifespan_logged(app: Any) -> AsyncIterator[dict[str, Any]]:
        log.info("supervising Redis at %s", config.display_url)
        async with supervise(app) as state:
            yield state

    return Starlette(
        routes=[
            Route("/hits", hits),
            Route("/ready", ReadinessApp()),
            Route("/metrics", MetricsApp()),  # the metrics of `python -m supervisor run`
        ],
        lifespan=lifespan_logged,
        # the detail (host, state, cause, the fix) goes to the log, one line without a
        # traceback; the HTTP client gets a 503 with Retry-After and no host name
        exception_handlers={Unavailable: unavailable_handler},
    )


app = create_app()
