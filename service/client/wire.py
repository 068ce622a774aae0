"""The client's pure parts, shared by the sync and async clients: request bodies (with event
ids assigned once, before the first attempt), answers to typed results, and the retry rule."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from service.client.types import BatchResult, Event, Prediction, ServiceError

EventLike = Event | Mapping[str, Any]
# Answers worth another attempt: the service was unreachable, stopping or lost a state race.
RETRY_STATUSES = frozenset({502, 503, 504})


def new_event_id() -> str:
    """A random event id (16 hex digits): unique enough within a stream's dedupe window."""
    return os.urandom(8).hex()


def event_json(event: EventLike, *, with_stream: bool = False) -> dict[str, Any]:
    """The JSON object of ``event``, with an id (assigned here when missing)."""
    if isinstance(event, Event):
        body: dict[str, Any] = {"t": event.t, "x": event.x, "id": event.id}
        if with_stream:
            body["stream_id"] = event.stream_id
    else:
        body = dict(event)
        body.setdefault("id", None)
    if body["id"] is None:
        body["id"] = new_event_id()
    if not isinstance(body["x"], (list, dict)):
        body["x"] = dict(body["x"]) if isinstance(body["x"], Mapping) else list(body["x"])
    return body


def stream_path(stream_id: str, suffix: str = "") -> str:
    return f"/v1/streams/{quote(stream_id, safe='')}{suffix}"


def live_url(base_url: str, stream_id: str, query: Mapping[str, str]) -> str:
    """The ``ws(s)://`` URL of a stream's live feed."""
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    q = "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items())
    path = parts.path.rstrip("/") + stream_path(stream_id, "/live")
    return urlunsplit((scheme, parts.netloc, path, q, ""))


def json_or_none(raw: bytes | str) -> Any:
    """An answer's JSON body; ``None`` when it is not JSON (e.g. a proxy's error page)."""
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


# body format -> its content type (the events routes take all three; other routes JSON)
BODY_FORMATS = {
    "json": "application/json",
    "ndjson": "application/x-ndjson",
    "msgpack": "application/msgpack",
}


def check_body_format(body_format: str) -> str:
    if body_format not in BODY_FORMATS:
        raise ValueError(
            f"body_format must be one of {', '.join(BODY_FORMATS)}; got {body_format!r}"
        )
    return body_format


def encode_events(body: Any, body_format: str) -> bytes:
    """An events body in ``body_format``: JSON as is, MessagePack of the same shape, NDJSON one
    event per line (a single event is one line; ``{"events": [...]}`` its list)."""
    if body_format == "msgpack":
        import msgspec

        return msgspec.msgpack.encode(body)
    if body_format == "ndjson":
        items = body["events"] if isinstance(body, dict) and "events" in body else body
        if not isinstance(items, list):
            items = [items]
        return b"".join(dumps(item) + b"\n" for item in items)
    return dumps(body)


def prediction_answer(status: int, body: Any) -> Prediction:
    """A single event's answer: its prediction, or :class:`ServiceError` (409 out of order)."""
    if status != 200:
        raise ServiceError.from_json(status, body)
    return Prediction.from_json(body)


def batch_answer(status: int, body: Any) -> BatchResult:
    if status != 200:
        raise ServiceError.from_json(status, body)
    return BatchResult.from_json(body)


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` in all (1: no retry), waiting ``backoff_s`` x 2^k (at most ``max_backoff_s``)
    between them. Safe for events because every event carries its id: the service answers a
    repeat with the original prediction, marked ``duplicate``."""

    attempts: int = 4
    backoff_s: float = 0.05
    max_backoff_s: float = 2.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1; got {self.attempts}")
        if not self.backoff_s >= 0 or not self.max_backoff_s >= 0:
            raise ValueError("backoff_s and max_backoff_s must be >= 0")

    def delays(self) -> Iterator[float]:
        """The wait before each retry (``attempts - 1`` of them)."""
        for k in range(self.attempts - 1):
            yield min(self.max_backoff_s, self.backoff_s * 2**k)

    def after(self, status: int, delays: Iterator[float]) -> float | None:
        """The wait before retrying an answer with ``status``; ``None``: keep the answer."""
        return next(delays, None) if status in RETRY_STATUSES else None


@dataclass(frozen=True)
class Call:
    """One HTTP request of the API, built once and sent (again, on retry) unchanged."""

    method: str
    path: str
    params: Mapping[str, str]
    body: bytes | None = None
    content_type: str = "application/json"


def multi_body(events: Sequence[EventLike]) -> dict[str, Any]:
    """The body of ``POST /v1/events``: every event names its stream."""
    items = [event_json(e, with_stream=True) for e in events]
    for i, item in enumerate(items):
        if not item.get("stream_id"):
            raise ValueError(f"events[{i}] has no stream_id (POST /v1/events needs one each)")
    return {"events": items}
