"""HTTP clients of the service: :class:`Client` (blocking) and :class:`AsyncClient`.

Both send the same :class:`~service.client.wire.Call` objects and parse answers with the same
functions; they differ only in how they wait. Every event gets an id before the first attempt,
so a retry (after a dropped connection, a timeout or a 502/503/504) is answered with the
original prediction, marked ``duplicate``, never applied twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from service.client.types import BatchResult, Prediction, ServiceError
from service.client.wire import (
    BODY_FORMATS,
    Call,
    EventLike,
    RetryPolicy,
    batch_answer,
    check_body_format,
    encode_events,
    event_json,
    json_or_none,
    multi_body,
    prediction_answer,
    stream_path,
)

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


class _Calls:
    """What both clients share: their options, and the API's requests as :class:`Call`
    objects (no I/O)."""

    def __init__(
        self,
        url: str,
        api_key: str | None,
        model: str | None,
        retry: RetryPolicy | None,
        timeout: httpx.Timeout | float,
        max_connections: int,
        body_format: str,
    ) -> None:
        self.url = url.rstrip("/")
        self.body_format = check_body_format(body_format)
        self.api_key = api_key
        self.model = model
        self.retry = retry or RetryPolicy()
        self._params = {"model": model} if model else {}
        self._http_options: dict[str, Any] = {
            "base_url": self.url,
            "headers": _headers(api_key),
            "timeout": timeout,
            "limits": httpx.Limits(max_connections=max_connections),
        }

    def _events(self, stream_id: str, body: Any) -> Call:
        return self._bulk(stream_path(stream_id, "/events"), body)

    def _bulk(self, path: str, body: Any) -> Call:
        """An events request in the client's body format."""
        fmt = self.body_format
        if fmt == "ndjson" and isinstance(body, dict) and "events" not in body:
            fmt = "json"  # one event is answered with a prediction only in JSON or MessagePack
        return Call("POST", path, self._params, encode_events(body, fmt), BODY_FORMATS[fmt])

    def _one_call(self, stream_id: str, event: EventLike) -> Call:
        return self._events(stream_id, event_json(event))

    def _many_call(self, stream_id: str, events: Sequence[EventLike]) -> Call:
        return self._events(stream_id, {"events": [event_json(e) for e in events]})

    def _multi_call(self, events: Sequence[EventLike]) -> Call:
        return self._bulk("/v1/events", multi_body(events))

    def _delete_call(self, stream_id: str) -> Call:
        return Call("DELETE", stream_path(stream_id), self._params)


def _content_type(call: Call) -> dict[str, str] | None:
    return {"content-type": call.content_type} if call.body is not None else None


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    return headers


def _deleted(status: int, body: Any) -> bool:
    if status == 404:
        return False
    if status >= 300:
        raise ServiceError.from_json(status, body)
    return True


def _models(status: int, body: Any) -> Mapping[str, Any]:
    if status != 200:
        raise ServiceError.from_json(status, body)
    return dict(body)


class Client(_Calls):
    """Blocking client: ``Client("http://127.0.0.1:8000").send("pump-1", 1714564800.0, [..])``.

    ``model``: the served model to use (the service's default when ``None``). ``retry``: how
    often and how long to retry transport errors and 502/503/504 answers. ``body_format``:
    how events are sent, ``"json"``, ``"msgpack"`` or ``"ndjson"`` (answers are JSON). Use it
    as a context manager, or ``close()`` it.
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        model: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        max_connections: int = 16,
        body_format: str = "json",
    ) -> None:
        super().__init__(url, api_key, model, retry, timeout, max_connections, body_format)
        self._http = httpx.Client(**self._http_options)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: Call) -> tuple[int, Any]:
        delays = self.retry.delays()
        while True:
            try:
                resp = self._http.request(
                    call.method,
                    call.path,
                    params=call.params,
                    content=call.body,
                    headers=_content_type(call),
                )
            except httpx.TransportError:
                if (delay := next(delays, None)) is None:
                    raise
            else:
                if (delay := self.retry.after(resp.status_code, delays)) is None:
                    return resp.status_code, json_or_none(resp.content)
            time.sleep(delay)

    def send(self, stream_id: str, t: float | str, x: Any, *, id: str | None = None) -> Prediction:
        """Apply one event; its prediction. :class:`ServiceError` when refused (409
        ``out_of_order``, 422 invalid input, ...)."""
        return prediction_answer(*self._send(self._one_call(stream_id, _ev(t, x, id))))

    def send_many(self, stream_id: str, events: Sequence[EventLike]) -> BatchResult:
        """Apply several events of one stream, in order (all or nothing when any is invalid)."""
        return batch_answer(*self._send(self._many_call(stream_id, events)))

    def send_multi(self, events: Sequence[EventLike]) -> BatchResult:
        """Apply events of many streams (each names its ``stream_id``): ``POST /v1/events``."""
        return batch_answer(*self._send(self._multi_call(events)))

    def delete(self, stream_id: str) -> bool:
        """Forget a stream's state; ``True`` if it had one."""
        return _deleted(*self._send(self._delete_call(stream_id)))

    def models(self) -> Mapping[str, Any]:
        """``GET /v1/models``: the served models and the default one."""
        return _models(*self._send(Call("GET", "/v1/models", {})))


class AsyncClient(_Calls):
    """The asyncio twin of :class:`Client` (same methods, awaited), plus :meth:`live`."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        model: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        max_connections: int = 64,
        body_format: str = "json",
    ) -> None:
        super().__init__(url, api_key, model, retry, timeout, max_connections, body_format)
        self._http = httpx.AsyncClient(**self._http_options)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: Call) -> tuple[int, Any]:
        delays = self.retry.delays()
        while True:
            try:
                resp = await self._http.request(
                    call.method,
                    call.path,
                    params=call.params,
                    content=call.body,
                    headers=_content_type(call),
                )
            except httpx.TransportError:
                if (delay := next(delays, None)) is None:
                    raise
            else:
                if (delay := self.retry.after(resp.status_code, delays)) is None:
                    return resp.status_code, json_or_none(resp.content)
            await asyncio.sleep(delay)

    async def send(
        self, stream_id: str, t: float | str, x: Any, *, id: str | None = None
    ) -> Prediction:
        """See :meth:`Client.send`."""
        call = self._one_call(stream_id, _ev(t, x, id))
        return prediction_answer(*await self._send(call))

    async def send_many(self, stream_id: str, events: Sequence[EventLike]) -> BatchResult:
        """See :meth:`Client.send_many`."""
        return batch_answer(*await self._send(self._many_call(stream_id, events)))

    async def send_multi(self, events: Sequence[EventLike]) -> BatchResult:
        """See :meth:`Client.send_multi`."""
        return batch_answer(*await self._send(self._multi_call(events)))

    async def delete(self, stream_id: str) -> bool:
        """See :meth:`Client.delete`."""
        return _deleted(*await self._send(self._delete_call(stream_id)))

    async def models(self) -> Mapping[str, Any]:
        """See :meth:`Client.models`."""
        return _models(*await self._send(Call("GET", "/v1/models", {})))

    def live(self, stream_id: str) -> Any:
        """The stream's live socket (:class:`~service.client.live.LiveStream`): ``async with
        client.live("pump-1") as feed: async for prediction in feed: ...``; events can be
        sent on it too (``await feed.send(t, x)``)."""
        from service.client.live import LiveStream

        return LiveStream(
            self.url,
            stream_id,
            api_key=self.api_key,
            model=self.model,
            binary=self.body_format == "msgpack",
        )


def _ev(t: float | str, x: Any, id: str | None) -> dict[str, Any]:
    return {"t": t, "x": x, "id": id}
