"""A stream's live WebSocket as an async iterator of predictions, with events sent on it.

``async with LiveStream(url, "pump-1") as feed``: subscribes (waits for the service's
``subscribed``), then ``async for p in feed`` yields every prediction of the stream, from any
route or replica. ``await feed.send(t, x)`` applies an event over the socket and returns its
prediction; :meth:`LiveStream.submit` sends without waiting (many events may be in flight; each
answer is matched to its event by ``request_id``; the service answers in the order sent).
Events carry ids as over HTTP. ``binary=True`` sends events as MessagePack binary frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from typing import Any

import msgspec

from service.client.types import BatchResult, Prediction, ServiceError
from service.client.wire import EventLike, batch_answer, event_json, live_url, prediction_answer

OPEN_TIMEOUT_S = 5.0
_CLOSED = object()  # queued when the socket closes: ends the iteration


class LiveStream:
    """One stream's live socket. ``buffer``: predictions kept for the iterator; beyond it the
    oldest are dropped (counted in :attr:`dropped`), so a feed nobody reads costs bounded
    memory."""

    def __init__(
        self,
        url: str,
        stream_id: str,
        *,
        api_key: str | None = None,
        model: str | None = None,
        buffer: int = 1024,
        open_timeout: float = OPEN_TIMEOUT_S,
        binary: bool = False,
    ) -> None:
        query = {"model": model} if model else {}
        self.url = live_url(url, stream_id, query)
        self.stream_id = stream_id
        self.dropped = 0
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._open_timeout = open_timeout
        self.binary = binary  # events as MessagePack binary frames (answered in MessagePack)
        self._feed: asyncio.Queue[Any] = asyncio.Queue(maxsize=max(1, buffer))
        self._pending: dict[int, asyncio.Future[tuple[int, Any]]] = {}
        self._next_id = 0
        self._ws: Any = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LiveStream:
        from websockets.asyncio.client import connect

        self._ws = await connect(
            self.url, additional_headers=self._headers, open_timeout=self._open_timeout
        )
        try:
            hello = json.loads(await asyncio.wait_for(self._ws.recv(), self._open_timeout))
        except Exception:
            await self._ws.close()
            raise
        if not isinstance(hello, dict) or hello.get("type") != "subscribed":
            await self._ws.close()
            raise ServiceError(0, "not_subscribed", f"the live feed answered {hello!r}")
        self._reader = asyncio.create_task(self._read(), name=f"live-{self.stream_id}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    def __aiter__(self) -> LiveStream:
        return self

    async def __anext__(self) -> Prediction:
        item = await self._feed.get()
        if item is _CLOSED:
            self._feed.put_nowait(_CLOSED)  # every later call ends too
            raise StopAsyncIteration
        return item

    def _enqueue(self, item: Any) -> None:
        if self._feed.full():
            self._feed.get_nowait()
            self.dropped += 1
        self._feed.put_nowait(item)

    async def _read(self) -> None:
        try:
            async for raw in self._ws:
                msg = msgspec.msgpack.decode(raw) if isinstance(raw, bytes) else json.loads(raw)
                kind = msg.get("type")
                if kind == "prediction":
                    self._enqueue(Prediction.from_json(msg["prediction"]))
                elif kind in ("result", "error"):
                    fut = self._pending.pop(msg.get("request_id"), None)
                    if fut is not None and not fut.done():
                        fut.set_result((int(msg.get("status", 0)), msg))
        except Exception:  # a closed or broken socket ends the feed; pending events fail below
            pass
        finally:
            code = getattr(self._ws, "close_code", None)
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError(f"the live socket closed (code {code})"))
            self._pending.clear()
            self._enqueue(_CLOSED)

    async def submit(self, body: dict[str, Any]) -> asyncio.Future[tuple[int, Any]]:
        """Send one message (an event or ``{"events": [...]}``) without waiting for its
        answer; the future resolves to ``(status, message)``."""
        if self._ws is None or (self._reader is not None and self._reader.done()):
            raise ConnectionError("the live socket is not open")
        self._next_id += 1
        rid = self._next_id
        fut: asyncio.Future[tuple[int, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            message = {**body, "request_id": rid}
            await self._ws.send(
                msgspec.msgpack.encode(message)
                if self.binary
                else json.dumps(message, separators=(",", ":"))
            )
        except Exception:
            self._pending.pop(rid, None)
            raise
        return fut

    async def send(self, t: float | str, x: Any, *, id: str | None = None) -> Prediction:
        """Apply one event over the socket; its prediction (:class:`ServiceError` if refused)."""
        status, msg = await (await self.submit(event_json({"t": t, "x": x, "id": id})))
        return prediction_answer(status, msg.get("prediction") if status == 200 else msg)

    async def send_many(self, events: Sequence[EventLike]) -> BatchResult:
        """Apply several events of this stream, in order, over the socket."""
        status, msg = await (await self.submit({"events": [event_json(e) for e in events]}))
        return batch_answer(status, msg)
