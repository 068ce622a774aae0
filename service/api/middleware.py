"""Pure ASGI middleware: HTTP metrics by route template, and the request body's size and time
limits.

Both are plain ASGI (no ``BaseHTTPMiddleware``): they add no task per request and never buffer
a response.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import ErrorCode, error_body
from service.metrics import Metrics

UNMATCHED_ROUTE = "<unmatched>"
_timeout_at = getattr(asyncio, "timeout_at", None)  # Python >= 3.11
CLIENT_CLOSED_REQUEST = 499


def route_template(scope: Scope, routes: Sequence[BaseRoute] = ()) -> str:
    """The template of the route that served (or would serve) ``scope``: never the raw path,
    so that stream ids never become label values. ``routes`` resolve requests answered before
    routing (a 413 from the body limit)."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return path
    partial = None
    for route in routes:
        match, _ = route.matches(scope)
        template = getattr(route, "path", None)
        if not isinstance(template, str):
            continue
        if match is Match.FULL:
            return template
        if match is Match.PARTIAL and partial is None:
            partial = template
    return partial or UNMATCHED_ROUTE


class MetricsMiddleware:
    """Counts requests and observes their duration by route template, method and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Sequence[BaseRoute] = ()) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = tuple(routes)
        # (route template, method, status) -> its counter and histogram children; bounded by
        # the routes x methods x statuses the app answers (templates, never raw paths)
        self._series: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status: int | None = None

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        except BaseException:
            status = status or 500
            raise
        finally:
            # no answer and no error: the client left first (nginx's 499)
            label = str(status or CLIENT_CLOSED_REQUEST)
            route = route_template(scope, self.routes)
            key = (route, str(scope.get("method", "")), label)
            series = self._series.get(key)
            if series is None:  # labels() costs a few µs per call: each child is looked up once
                series = self._series[key] = (
                    self.metrics.http_requests.labels(route=route, method=key[1], status=label),
                    self.metrics.http_request_duration.labels(route=route, method=key[1]),
                )
            series[0].inc()
            series[1].observe(time.perf_counter() - start)


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    raw = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(raw)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": raw})


class BodyLimitMiddleware:
    """Refuses bodies over ``max_bytes`` with 413 before anything parses them, and bodies that
    do not arrive whole within ``timeout_s`` with 408 ``request_timeout``.

    A declared ``Content-Length`` over the limit is refused without reading; a chunked body is
    read up to the limit and refused as soon as it passes it. Accepted bodies are handed on
    whole (they are at most ``max_bytes``), so the app never sees a partial body. The time limit
    covers the whole body, so a client that trickles it (or sends less than its
    ``Content-Length`` and waits) holds a request for at most ``timeout_s``.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def _timed_out(self, send: Send) -> None:
        await _send_json(
            send,
            408,
            error_body(
                ErrorCode.REQUEST_TIMEOUT,
                f"the request body did not arrive within {self.timeout_s} s",
                {"timeout_s": self.timeout_s},
            ),
        )

    async def _too_large(self, send: Send) -> None:
        await _send_json(
            send,
            413,
            error_body(
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"request body is larger than {self.max_bytes} bytes",
                {"max_bytes": self.max_bytes},
            ),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    await self._too_large(send)
                    return
        chunks: list[bytes] = []
        size = 0
        loop = asyncio.get_running_loop()
        deadline = None if self.timeout_s is None else loop.time() + self.timeout_s
        while True:
            try:
                if deadline is None:
                    message = await receive()
                elif _timeout_at is not None:  # a timer, not a task per receive (wait_for)
                    async with _timeout_at(deadline):
                        message = await receive()
                else:
                    message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                await self._timed_out(send)
                return
            if message["type"] != "http.request":
                return  # the client went away before sending its body: nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body: Message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return body
            return await receive()

        await self.app(scope, replay, send)
