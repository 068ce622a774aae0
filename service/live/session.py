"""A live session: one WebSocket on ``/v1/streams/{stream_id}/live`` that forwards the stream's
live predictions and answers the events its client sends.

Protocol (JSON text frames):

- server -> client, once subscribed: ``{"type": "subscribed", "stream_id", "model"}``. Every
  prediction made for the stream afterwards (by any route, any process) follows as
  ``{"type": "prediction", "model": ..., "prediction": {...}}`` (the HTTP prediction object
  plus ``x``, the input), the live channel's message forwarded as it was published. With
  ``?model=`` only that model's predictions are sent.
- client -> server: an event object, a list of events or ``{"events": [...]}`` (the body of
  ``POST /v1/streams/{stream_id}/events``), optionally with ``"request_id"`` (string or
  integer) in the object. The answer: ``{"type": "result", "request_id", "status": 200,
  "prediction" | "results" ...}`` or ``{"type": "error", "request_id", "status", "error"}``;
  the socket stays open. (The prediction also arrives on the live feed, as any other.)
- Formats: a text frame is JSON and is answered by a text frame (JSON); a binary frame is
  MessagePack (the same shapes) and is answered by a binary frame (MessagePack). The live feed
  (``subscribed``, ``prediction``) is always JSON text. A binary frame that does not decode is
  answered ``{"type": "error", "request_id": null, "status": 400, "error": {"code":
  "invalid_json", ...}}`` (MessagePack) and the socket stays open, as for a text frame that is
  not JSON.

Pipelining: a client may send many messages without waiting for answers. Messages are read,
validated and queued for the engine one after another in the order they arrive, so the events
of the socket's stream are applied in that order, and **answers are sent in the order the
messages arrived** (each answer after every earlier one; an invalid message's error waits its
turn too). At most ``ws_max_in_flight`` messages are answered at once: when that many wait for
their answers the socket is not read (TCP backpressure), and reading resumes when the oldest is
answered. An event that fails for the store (down: ``unavailable``; out of memory:
``store_full``) gets an error message with status 503 like any other error; the socket stays
open and later messages are still read and answered.

Close codes: 1008 policy violation (bad or missing key, invalid stream id, unknown model; the
reason names it; or the client stopped reading: a message not taken within
``ws_send_timeout_s``), 1000 idle (nothing either way for
``ws_idle_timeout_s``), 1013 try again later (the service is starting or stopping), 1001 going
away (the service shuts down), 1011 internal error. Under uvicorn a shutdown closes sockets with
1012 (service restart) before the app is told.

A subscriber's buffer holds ``live_buffer`` messages; when a client reads slower than
predictions arrive, the oldest are dropped (``liquid_live_messages_dropped_total``), so a
stalled client costs bounded memory; one that takes nothing for ``ws_send_timeout_s`` is cut
off (``liquid_live_send_timeouts_total``).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import msgspec
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from service.api.columns import decode_message, validate
from service.api.deps import AppContext
from service.api.errors import ApiError, ErrorCode
from service.api.failures import failure_error
from service.api.formats import BodyFormat, exact_body
from service.api.parsing import MAX_REQUEST_ID_CHARS
from service.api.submit import Answer, enqueue_columns, enqueue_exact
from service.api.timeouts import PeerStoppedReading
from service.engine.encode import PredictionBody, dumps, live_frame
from service.engine.registry import ServedModel
from service.store.keys import live_channel

log = logging.getLogger(__name__)

SUBSCRIBE_TIMEOUT_S = 5.0
NORMAL_CLOSURE = 1000
GOING_AWAY = 1001
POLICY_VIOLATION = 1008
INTERNAL_ERROR = 1011
TRY_AGAIN_LATER = 1013
CLOSE_REASONS = {
    GOING_AWAY: "server shutting down",
    TRY_AGAIN_LATER: "live feed unavailable",
}

Close = tuple[int, str]  # a close code and its reason


class SessionState(enum.Enum):
    CONNECTING = "connecting"
    LIVE = "live"
    CLOSING = "closing"
    CLOSED = "closed"


def _request_id(body: Any) -> Any:
    """Pop and check the client's correlation id (``None`` when absent)."""
    if not isinstance(body, dict) or "request_id" not in body:
        return None
    rid = body.pop("request_id")
    ok = (isinstance(rid, str) and len(rid) <= MAX_REQUEST_ID_CHARS) or (
        isinstance(rid, int) and not isinstance(rid, bool) and abs(rid) < 2**53
    )
    if not ok:
        raise ApiError(
            ErrorCode.INVALID_EVENT,
            f"request_id must be a string of at most {MAX_REQUEST_ID_CHARS} characters or an "
            "integer",
            {"field": "request_id"},
        )
    return rid


class SendTimeout(Exception):  # noqa: N818
    """The client did not take a message within ``ws_send_timeout_s`` (it stopped reading)."""


class LiveSession:
    """One accepted socket: forwards the stream's live feed and answers the client's events.

    The session ends when the client leaves, stops reading (a send
    not taken within ``ws_send_timeout_s``: 1008), says and hears nothing for
    ``ws_idle_timeout_s`` (1000), or when the service shuts down (1001)."""

    def __init__(
        self,
        ws: WebSocket,
        ctx: AppContext,
        tenant: str,
        stream_id: str,
        served: ServedModel,
        model_filter: str | None,
    ) -> None:
        self.ws = ws
        self.ctx = ctx
        self.tenant = tenant
        self.stream_id = stream_id
        self.served = served
        self.model_filter = model_filter
        self.state = SessionState.CONNECTING
        self._send_lock = asyncio.Lock()
        # The send in progress: when it began and the task sending (see _watch_sends).
        self._sending_since: float | None = None
        self._sender: asyncio.Task[Any] | None = None
        self._send_expired = False
        # answers in arrival order: (request_id, pending answer or None, ready reply, binary)
        self._replies: asyncio.Queue[_Reply] = asyncio.Queue()
        self._slots = asyncio.Semaphore(ctx.settings.ws_max_in_flight)
        self._sub: Any = None
        self._last_activity = time.monotonic()
        self.finished = asyncio.Event()

    def stop(self) -> None:
        """End the feed (the service shuts down): the session then closes with 1001."""
        if self._sub is not None:
            self._sub.close()

    async def send(self, data: str | bytes) -> None:
        """Send a text (``str``) or binary (``bytes``) frame, within ``ws_send_timeout_s``.

        The limit is kept by :meth:`_watch_sends`, not by a timeout per send: two sends per
        event each arming an ``asyncio.timeout`` cost ~8% of the server's CPU under WebSocket
        load."""
        message = (
            {"type": "websocket.send", "text": data}
            if isinstance(data, str)
            else {"type": "websocket.send", "bytes": data}
        )
        async with self._send_lock:
            self._sender = asyncio.current_task()
            self._sending_since = time.monotonic()
            try:
                await self.ws.send(message)
            except asyncio.CancelledError:
                if not self._send_expired or self._sender is None:
                    raise
                self._sender.uncancel()  # the watchdog's cancellation, answered here
                raise self._send_timeout() from None
            except WebSocketDisconnect as exc:
                # the server's own send limit (service.api.timeouts) may act first
                if isinstance(exc.__context__, PeerStoppedReading):
                    raise self._send_timeout() from None
                raise
            finally:
                self._sending_since = None
        self._last_activity = time.monotonic()

    def _send_timeout(self) -> SendTimeout:
        timeout = self.ctx.settings.ws_send_timeout_s
        return SendTimeout(f"the client took no message for {timeout} s")

    async def _watch_sends(self, timeout: float) -> None:
        """Cancel a send still in progress after ``timeout`` seconds (its task, suspended in
        that send, gets :class:`SendTimeout` and ends the session), checking four times per
        ``timeout``. Runs until the session's tasks are cancelled."""
        while True:
            await asyncio.sleep(timeout / 4)
            since = self._sending_since
            if since is not None and time.monotonic() - since > timeout and self._sender:
                # the sender is suspended inside ws.send (nothing else runs while we do)
                self._send_expired = True
                self._sender.cancel()

    async def close(self, code: int, reason: str = "") -> None:
        if self.state is SessionState.CLOSED:
            return
        self.state = SessionState.CLOSING
        with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError, asyncio.TimeoutError):
            if self.ws.application_state is WebSocketState.CONNECTED:
                # a client that stopped reading takes no close frame either: bounded too
                await asyncio.wait_for(
                    self.ws.close(code, reason[:120]), self.ctx.settings.ws_send_timeout_s
                )
        self.state = SessionState.CLOSED

    async def run(self) -> None:
        ctx = self.ctx
        sub = ctx.live.subscribe(
            live_channel(self.tenant, self.stream_id), maxsize=ctx.settings.live_buffer
        )
        self._sub = sub
        ctx.metrics.websocket_connections.inc()
        ctx.sessions.add(self)
        tasks: list[asyncio.Task[Any]] = []
        try:
            try:
                close = await self._serve(sub, tasks)
            finally:
                for task in tasks:
                    task.cancel()
                sub.close()
                ctx.sessions.discard(self)
                ctx.metrics.websocket_connections.dec()
            if close is not None:
                await self.close(*close)
        finally:
            self.state = SessionState.CLOSED
            self.finished.set()

    async def _serve(self, sub: Any, tasks: list[asyncio.Task[Any]]) -> Close | None:
        """Run the session; the close code and reason to send (None: the client left)."""
        try:
            await asyncio.wait_for(sub.ready(), SUBSCRIBE_TIMEOUT_S)
        except asyncio.TimeoutError:
            return TRY_AGAIN_LATER, CLOSE_REASONS[TRY_AGAIN_LATER]
        self.state = SessionState.LIVE
        tasks.append(asyncio.create_task(self._watch_sends(self.ctx.settings.ws_send_timeout_s)))
        hello = {"type": "subscribed", "stream_id": self.stream_id, "model": self.served.name}
        try:
            await self.send(json.dumps(hello))
        except SendTimeout:
            return self._send_timed_out()
        except (WebSocketDisconnect, OSError, RuntimeError):
            return None  # the client left already
        forward = asyncio.create_task(self._forward(sub))
        receive = asyncio.create_task(self._receive())
        replies = asyncio.create_task(self._reply())
        tasks += [forward, receive, replies]
        idle_s = self.ctx.settings.ws_idle_timeout_s
        idle = asyncio.create_task(self._idle(idle_s)) if idle_s is not None else None
        if idle is not None:
            tasks.append(idle)
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, SendTimeout):
                await task
        for task in done:
            exc = task.exception()
            if isinstance(exc, SendTimeout):
                return self._send_timed_out()
            if exc is not None and not isinstance(exc, (WebSocketDisconnect, OSError)):
                log.error("live session failed", exc_info=exc)
                return INTERNAL_ERROR, "internal error"
        if receive in done:
            return receive.result()  # None: the client left
        if idle is not None and idle in done:
            return NORMAL_CLOSURE, "idle timeout"
        return GOING_AWAY, CLOSE_REASONS[GOING_AWAY]  # the feed ended: the service shuts down

    def _send_timed_out(self) -> Close:
        self.ctx.metrics.live_send_timeouts.inc()
        return POLICY_VIOLATION, "send timeout: the client does not read"

    async def _idle(self, idle_s: float) -> None:
        """Return once nothing was sent or received for ``idle_s`` seconds."""
        while True:
            left = self._last_activity + idle_s - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(left)

    async def _forward(self, sub: Any) -> None:
        async for raw in sub:
            text = live_frame(raw, self.model_filter)
            if text is not None:
                await self.send(text)

    async def _receive(self) -> Close | None:
        """Read the client's frames in order and queue each one's answer (at most
        ``ws_max_in_flight`` unanswered: beyond that the socket is not read); ``None`` when the
        client leaves."""
        limit = self.ctx.settings.max_body_bytes
        while True:
            await self._slots.acquire()  # released when an answer is sent (_reply)
            message = await self.ws.receive()
            self._last_activity = time.monotonic()
            if message["type"] == "websocket.disconnect":
                return None
            text = message.get("text")
            if text is not None:
                self._replies.put_nowait(await self._prepare(text.encode("utf-8"), False, limit))
            else:
                self._replies.put_nowait(
                    await self._prepare(message.get("bytes") or b"", True, limit)
                )

    async def _prepare(self, raw: bytes, binary: bool, limit: int) -> _Reply:
        """Decode and validate one message and queue its events: its reply, or the answer to
        wait for."""
        received_at = time.time()
        rid: Any = None
        try:
            if len(raw) > limit:
                raise ApiError(
                    ErrorCode.PAYLOAD_TOO_LARGE,
                    f"message is larger than {limit} bytes",
                    {"max_bytes": limit},
                )
            ctx, stream_id = self.ctx, self.stream_id
            fmt = BodyFormat.MSGPACK if binary else BodyFormat.JSON
            decoded = decode_message(raw, ctx.settings.max_events_per_request, fmt)
            cols = validate(decoded, self.served.features, stream_id) if decoded else None
            if decoded is not None and cols is not None:  # the fast path (see api.columns)
                rid = decoded.request_id
                pending = await enqueue_columns(
                    ctx, self.tenant, self.served, stream_id, cols, received_at
                )
            else:  # the exact path: every fault named
                body = exact_body(raw, fmt)
                rid = _request_id(body)
                pending = await enqueue_exact(
                    ctx, self.tenant, self.served, stream_id, body, received_at
                )
        except Exception as exc:
            return _Reply(rid, None, self._error_reply(exc, rid), binary)
        return _Reply(rid, pending, None, binary)

    def _error_reply(self, exc: Exception, rid: Any) -> dict[str, Any]:
        """The error message for a failed message: its 4xx, or 503 when the store is down or
        full or the engine stops (the socket stays open); anything else propagates."""
        err = (
            exc
            if isinstance(exc, ApiError)
            else failure_error(exc, self.ctx.settings.retry_after_s)
        )
        if err is None:
            raise exc
        return {"type": "error", "request_id": rid, "status": err.status, **err.body()}

    async def _reply(self) -> None:
        """Send the answers in the order their messages arrived."""
        while True:
            item = await self._replies.get()
            reply = item.reply
            if item.pending is not None:
                try:
                    status, payload = await item.pending
                except Exception as exc:
                    reply = self._error_reply(exc, item.request_id)
                else:
                    reply = _result_reply(item.request_id, status, payload)
            assert reply is not None
            await self.send(_encode(reply, item.binary))
            self._slots.release()


@dataclass(frozen=True, slots=True)
class _Reply:
    """A message's place in the answer order: its answer to await (``pending``) or its
    ready ``reply``; ``binary``: answer in MessagePack (a binary frame)."""

    request_id: Any
    pending: Awaitable[Answer] | None
    reply: dict[str, Any] | None
    binary: bool


def _result_reply(rid: Any, status: int, payload: Any) -> dict[str, Any]:
    if isinstance(payload, PredictionBody):
        return {"type": "result", "request_id": rid, "status": status, "prediction": payload}
    if "error" in payload:
        return {"type": "error", "request_id": rid, "status": status, **payload}
    if "results" in payload:
        return {"type": "result", "request_id": rid, "status": status, **payload}
    raise TypeError(f"unexpected answer {type(payload).__name__}")


_msgpack_encoder = msgspec.msgpack.Encoder()


def _encode(reply: dict[str, Any], binary: bool) -> str | bytes:
    return _msgpack_encoder.encode(reply) if binary else dumps(reply).decode("utf-8")
