"""Embedding in ASGI web apps (Starlette, FastAPI...) without depending on any of them.

``lifespan(config)`` starts a supervisor with the app and stops it with the
app; ``ReadinessApp`` is a tiny ASGI endpoint answering 200 while commands are
served (READY, or OVERLOADED on the connections that exist) and 503 (with the
state and cause) otherwise. ``unavailable_handler`` (Starlette, FastAPI) and
``UnavailableMiddleware`` (any ASGI app) turn ``Unavailable`` into a 503 with
``Retry-After`` and one log line, instead of a 500 with a chain of tracebacks.

    app = Starlette(routes=[Route("/ready", ReadinessApp())], lifespan=lifespan(config))
    app.add_exception_handler(Unavailable, unavailable_handler)
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from prometheus_client import make_asgi_app

from supervisor.config import SupervisorConfig
from supervisor.errors import Unavailable
from supervisor.integrations.prometheus import Metrics
from supervisor.targets.readiness import health_response
from supervisor.targets.single import Supervisor

__all__ = (
    "MetricsApp",
    "ReadinessApp",
    "UnavailableHandler",
    "UnavailableMiddleware",
    "lifespan",
    "readiness",
    "unavailable_handler",
)

log = logging.getLogger("supervisor")

_BODY = {"error": "storage unavailable, try again later"}
"""What an HTTP client reads: the detail (host, state, the fix) goes to the log only."""

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def lifespan(
    config: SupervisorConfig, *, state_key: str = "supervisor"
) -> Callable[[Any], AbstractAsyncContextManager[dict[str, Supervisor]]]:
    """An ASGI lifespan: the supervisor runs exactly as long as the app.

    The supervisor is put into the lifespan state (``request.state.supervisor``
    in Starlette) and, when the app has a ``state`` attribute, on ``app.state``.
    Startup does not fail while Redis is down: readiness says so instead.
    """

    @asynccontextmanager
    async def _lifespan(app: Any) -> AsyncIterator[dict[str, Supervisor]]:
        async with Supervisor(config) as sup:
            app_state = getattr(app, "state", None)
            if app_state is not None:
                setattr(app_state, state_key, sup)
            yield {state_key: sup}

    return _lifespan


def readiness(sup: Supervisor) -> tuple[int, dict[str, object]]:
    """``(200, body)`` while commands are served (READY or OVERLOADED), else ``(503,
    body)``; the body names state and cause."""
    return health_response({"redis": sup})


class ReadinessApp:
    """An ASGI endpoint for readiness probes; finds the supervisor in the lifespan state."""

    def __init__(self, state_key: str = "supervisor") -> None:
        self._key = state_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sup = self._find(scope)
        body: dict[str, object]
        if sup is None:
            status, body = 503, {"status": "unavailable", "error": "no supervisor in app state"}
        else:
            status, body = readiness(sup)
        payload = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    def _find(self, scope: Scope) -> Supervisor | None:
        found = scope.get("state", {}).get(self._key)
        if found is None:
            found = getattr(getattr(scope.get("app"), "state", None), self._key, None)
        return found if isinstance(found, Supervisor) else None


class MetricsApp:
    """An ASGI ``/metrics`` endpoint (Prometheus text) for the supervisor in the lifespan
    state: the metrics of ``python -m supervisor run``, so the shipped dashboard and alert
    rules work for an app that embeds the supervisor. ``target`` is the label it gets."""

    def __init__(self, state_key: str = "supervisor", *, target: str = "redis") -> None:
        self._find = ReadinessApp(state_key)._find
        self._target = target
        self._app: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            sup = self._find(scope)
            if sup is None:
                await ReadinessApp()(scope, receive, send)  # 503: no supervisor in app state
                return
            self._app = make_asgi_app(Metrics({self._target: sup}).registry)
        await self._app(scope, receive, send)


class UnavailableHandler:
    """``app.add_exception_handler(Unavailable, unavailable_handler)`` (Starlette,
    FastAPI): a 503 with ``Retry-After`` and a body that names no host, and one log
    line with the detail and no traceback (an outage is not a bug of the app)."""

    def __init__(self, retry_after: int = 1) -> None:
        self.retry_after = retry_after

    async def __call__(self, request: Any, exc: Exception) -> Any:
        from starlette.responses import JSONResponse  # only an app that has Starlette calls it

        _log(request.scope, exc)
        return JSONResponse(
            {**_BODY, "cause": _cause(exc)},
            status_code=503,
            headers={"Retry-After": str(self.retry_after)},
        )


unavailable_handler = UnavailableHandler()


class UnavailableMiddleware:
    """The same for any ASGI app: ``app = UnavailableMiddleware(app)``. A response
    already started when ``Unavailable`` arrived cannot become a 503: it is re-raised."""

    def __init__(self, app: Any, *, retry_after: int = 1) -> None:
        self.app = app
        self.retry_after = retry_after

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def sending(message: MutableMapping[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Unavailable as exc:
            if scope["type"] != "http" or started:
                raise
            _log(scope, exc)
            payload = json.dumps({**_BODY, "cause": _cause(exc)}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(payload)).encode()),
                        (b"retry-after", str(self.retry_after).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": payload})


def _cause(exc: Exception) -> str | None:
    cause = getattr(exc, "cause", None)
    return cause.value if cause is not None else None


def _log(scope: Scope, exc: Exception) -> None:
    log.warning(
        "503 for %s %s: Redis unavailable: %s",
        scope.get("method", "?"),
        scope.get("path", "?"),
        exc,
    )
