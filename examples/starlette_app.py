"""A small Starlette app embedding a supervisor (``pip install -e '.[web]'``).

    uvicorn examples.starlette_app:app       # SUPERVISOR_URL=redis://... to change the target

``/hits`` counts in Redis; ``/ready`` is the readiness probe: 200 while Redis is
READY, 503 with the state and cause while it is not.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from supervisor import OutcomeUnknown, SupervisorConfig, Unavailable
from supervisor.asgi import ReadinessApp, lifespan


async def hits(request: Request) -> JSONResponse:
    sup = request.app.state.supervisor
    try:
        count = await sup.client.incr("example:hits")
    except OutcomeUnknown:
        return JSONResponse({"error": "the count may or may not have been recorded"}, 503)
    except Unavailable as exc:
        return JSONResponse({"error": str(exc)}, 503)
    return JSONResponse({"hits": count})


def create_app(config: SupervisorConfig | None = None) -> Starlette:
    config = config or SupervisorConfig(
        url=os.environ.get("SUPERVISOR_URL", "redis://127.0.0.1:6379/0")
    )
    return Starlette(
        routes=[Route("/hits", hits), Route("/ready", ReadinessApp())],
        lifespan=lifespan(config),
    )


app = create_app()
