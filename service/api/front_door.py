"""The app's front door: the two events routes dispatched before routing.

A single-event request spent about a sixth of its CPU passing FastAPI's and Starlette's layers
(``FastAPI.__call__``, server-error, telemetry and body-limit middleware, the router, the
route's handler, the exit-stack middleware) before reaching the events endpoint of
:mod:`service.api.routers.fast`. :class:`LiquidApp` sends ``POST`` requests on those two paths
straight to a stack built the way Starlette builds the app's own (the server-error handler
outermost, then the app's middleware — metrics, body limits — then the exception handlers) with
the endpoint in place of the router. Answers, errors, metrics and limits are the same; what is
skipped is dispatch. Anything else, or a request the endpoint would hand to its FastAPI twin,
goes through the whole app as before.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.routers.fast import MANY_EVENTS_PATH, STREAM_EVENTS_PATH, takes

STREAM_PREFIX, STREAM_SUFFIX = STREAM_EVENTS_PATH.split("{stream_id}")


def stream_id_in(path: str) -> str | None:
    """The ``{stream_id}`` of ``/v1/streams/{stream_id}/events`` (one non-empty segment, as
    Starlette's ``str`` convertor matches), else ``None``."""
    if not (path.startswith(STREAM_PREFIX) and path.endswith(STREAM_SUFFIX)):
        return None
    sid = path[len(STREAM_PREFIX) : -len(STREAM_SUFFIX)]
    return sid if sid and "/" not in sid else None


class LiquidApp(FastAPI):
    """FastAPI with the events routes dispatched at the door (see the module's docstring)."""

    _front: dict[str, tuple[Route, ASGIApp]] | None = None

    def open_front_door(self, routes: list[Route]) -> None:
        """Dispatch ``routes`` (the plain events routes of ``fast_routes``) at the door. Call
        once the app's middleware and exception handlers are installed."""
        self._front = {route.path: (route, _stack(self, route.app)) for route in routes}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        front = self._front
        if front and scope["type"] == "http" and scope["method"] == "POST" and not self.root_path:
            path = scope["path"]
            if path == MANY_EVENTS_PATH:
                hit = front.get(MANY_EVENTS_PATH)
                params: dict[str, Any] = {}
            else:
                sid = stream_id_in(path)
                hit = None if sid is None else front.get(STREAM_EVENTS_PATH)
                params = {"stream_id": sid}
            if hit is not None and takes(scope):
                route, stack = hit
                scope["app"] = self
                scope["route"] = route
                scope["endpoint"] = route.endpoint
                scope["path_params"] = params
                await stack(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def _stack(app: FastAPI, endpoint: ASGIApp) -> ASGIApp:
    """``endpoint`` wrapped as ``Starlette.build_middleware_stack`` wraps the router."""
    error_handler = None
    handlers: dict[Any, Any] = {}
    for key, value in app.exception_handlers.items():
        if key in (500, Exception):
            error_handler = value
        else:
            handlers[key] = value
    middleware = [Middleware(ServerErrorMiddleware, handler=error_handler, debug=app.debug)]
    middleware += app.user_middleware
    middleware.append(Middleware(ExceptionMiddleware, handlers=handlers, debug=app.debug))
    wrapped = endpoint
    for cls, args, kwargs in reversed(middleware):
        wrapped = cls(wrapped, *args, **kwargs)
    return wrapped
