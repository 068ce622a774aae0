"""Request bytes -> event columns, once: the fast path of the events routes.

A well-formed body is decoded by msgspec straight into typed structs (no ``json`` objects, no
per-event pydantic or parsing objects) and validated as arrays: ``t[N]`` float64 (finite, in
``[MIN_TIMESTAMP, MAX_TIMESTAMP)``), ``x[N, F]`` (finite, at most ``max_abs`` in magnitude,
``F`` features), stream ids and event ids. Numbers are taken as numbers; RFC 3339 strings go
through the library's strict grammar (:mod:`liquidcore.timestamps`).

The fast path answers only "valid" or "not mine": any body it cannot take whole (a decoding
error, a NaN token, an invalid value, a missing field, an escaped character, too many events,
a duplicate key) returns ``None``, and the caller runs the exact parser of
:mod:`service.api.parsing`, which produces today's error bodies. So both paths accept the same
bodies and bad input gets the same 4xx, whichever path saw it.

Duplicate keys are refused by the exact parser (which value was meant?), and msgspec keeps the
last; the fast path therefore counts the body's ``:`` separators against the members it
decoded (colons inside strings counted from the decoded strings; a body that spells a colon as
an escape, ``\\u003a``, which could hide a duplicate from that count, is left to the exact path).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from liquidcore import timestamps
from service.api.formats import BodyFormat
from service.api.parsing import (
    MAX_EVENT_ID_CHARS,
    MAX_REQUEST_ID_CHARS,
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    FieldError,
    check_stream_id,
)
from service.engine.registry import FLOAT32_MAX, FeatureSpec

_UNSET = msgspec.UNSET
SMALL_REQUEST = 4  # events; see validate
# ":" spelled as an escape: the one way a decoded string can hold a colon the body does not show
_ESCAPED_COLON = re.compile(rb"\\u003[aA]")


class _Event(msgspec.Struct, forbid_unknown_fields=True):
    t: float | str
    x: list[float] | dict[str, float]
    id: str | msgspec.UnsetType | None = _UNSET


class _StreamEvent(msgspec.Struct, forbid_unknown_fields=True):
    stream_id: str
    t: float | str
    x: list[float] | dict[str, float]
    id: str | msgspec.UnsetType | None = _UNSET


class _Events(msgspec.Struct, forbid_unknown_fields=True):
    events: list[_Event]


class _StreamEvents(msgspec.Struct, forbid_unknown_fields=True):
    events: list[_StreamEvent]


class _MessageEvent(_Event, forbid_unknown_fields=True):
    """A live socket's one-event message: an event with the client's ``request_id``."""

    request_id: str | int | msgspec.UnsetType = _UNSET


class _MessageEvents(_Events, forbid_unknown_fields=True):
    request_id: str | int | msgspec.UnsetType = _UNSET


_one_stream = msgspec.json.Decoder(_Events | list[_Event])
_one_event = msgspec.json.Decoder(_Event)
_many_streams = msgspec.json.Decoder(_StreamEvents | list[_StreamEvent])
_one_stream_lines = msgspec.json.Decoder(_Event)
_many_streams_lines = msgspec.json.Decoder(_StreamEvent)
_message = msgspec.json.Decoder(_MessageEvents | list[_Event])
_message_event = msgspec.json.Decoder(_MessageEvent)
_message_msgpack = msgspec.msgpack.Decoder(_MessageEvents | list[_Event])
_message_event_msgpack = msgspec.msgpack.Decoder(_MessageEvent)
_one_stream_msgpack = msgspec.msgpack.Decoder(_Events | list[_Event])
_one_event_msgpack = msgspec.msgpack.Decoder(_Event)
_many_streams_msgpack = msgspec.msgpack.Decoder(_StreamEvents | list[_StreamEvent])


@dataclass(frozen=True, slots=True)
class EventColumns:
    """Validated events as columns, in request order. ``single``: the body was one event
    object (it is answered with a prediction, not a list of results)."""

    stream_ids: list[str]
    t: np.ndarray  # [N] float64 epoch seconds
    x: np.ndarray  # [N, F] float64, finite, within max_abs
    ids: list[str | None]
    single: bool = False

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True, slots=True)
class Decoded:
    """A body decoded into typed events: ``envelope`` is 1 for ``{"events": [...]}`` (its one
    member), ``single`` when the body was one event object. ``raw``: the JSON text whose ``:``
    are counted against the decoded members (duplicate keys); ``None`` for MessagePack, whose
    maps keep a repeated key's last value (see :mod:`service.api.formats`)."""

    raw: bytes | None
    events: Sequence[_Event | _StreamEvent]
    envelope: int
    single: bool = False
    request_id: str | int | None = None  # a live socket's message: the client's id


def _decode(
    raw: bytes,
    max_events: int,
    whole: msgspec.json.Decoder[Any] | msgspec.msgpack.Decoder[Any],
    single: msgspec.json.Decoder[Any] | msgspec.msgpack.Decoder[Any] | None,
    text: bytes | None,
) -> Decoded | None:
    try:
        body = whole.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        if single is None:
            return None
        try:
            event = single.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        return _with_request_id(Decoded(text, [event], 0, single=True), event)
    envelope = isinstance(body, (_Events, _StreamEvents))
    events = body.events if envelope else body
    if not events or len(events) > max_events:
        return None
    return _with_request_id(Decoded(text, events, 1 if envelope else 0), body)


def _with_request_id(decoded: Decoded, body: Any) -> Decoded | None:
    """``decoded`` with the message's ``request_id`` (a member the ``:`` count must see);
    ``None`` (the exact path) for an id the exact path refuses."""
    rid = getattr(body, "request_id", _UNSET)
    if rid is _UNSET:
        return decoded
    if isinstance(rid, str):
        if len(rid) > MAX_REQUEST_ID_CHARS:
            return None
        colons = rid.count(":")
    elif isinstance(rid, bool) or abs(rid) >= 2**53:
        return None
    else:
        colons = 0
    return Decoded(decoded.raw, decoded.events, decoded.envelope + 1 + colons, decoded.single, rid)


def _decode_lines(raw: bytes, max_events: int, line: msgspec.json.Decoder[Any]) -> Decoded | None:
    try:
        events = line.decode_lines(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if not events or len(events) > max_events:
        return None
    return Decoded(raw, events, 0)


def decode_one_stream(
    raw: bytes, max_events: int, fmt: BodyFormat = BodyFormat.JSON
) -> Decoded | None:
    """A ``POST /v1/streams/{stream_id}/events`` body (one event, a list or ``{"events":
    [...]}``; NDJSON: a list) decoded, or ``None``: the exact parser decides."""
    if fmt is BodyFormat.MSGPACK:
        return _decode(raw, max_events, _one_stream_msgpack, _one_event_msgpack, None)
    if _ESCAPED_COLON.search(raw):
        return None
    if fmt is BodyFormat.NDJSON:
        return _decode_lines(raw, max_events, _one_stream_lines)
    return _decode(raw, max_events, _one_stream, _one_event, raw)


def decode_message(raw: bytes, max_events: int, fmt: BodyFormat) -> Decoded | None:
    """A live socket's message (the one-stream body, its object optionally with a
    ``request_id``; JSON or MessagePack) decoded, or ``None``: the exact parser decides."""
    if fmt is BodyFormat.MSGPACK:
        return _decode(raw, max_events, _message_msgpack, _message_event_msgpack, None)
    if _ESCAPED_COLON.search(raw):
        return None
    return _decode(raw, max_events, _message, _message_event, raw)


def decode_many_streams(
    raw: bytes, max_events: int, fmt: BodyFormat = BodyFormat.JSON
) -> Decoded | None:
    """A ``POST /v1/events`` body decoded, or ``None``: the exact parser decides."""
    if fmt is BodyFormat.MSGPACK:
        return _decode(raw, max_events, _many_streams_msgpack, None, None)
    if _ESCAPED_COLON.search(raw):
        return None
    if fmt is BodyFormat.NDJSON:
        return _decode_lines(raw, max_events, _many_streams_lines)
    return _decode(raw, max_events, _many_streams, None, raw)


def validate(
    decoded: Decoded,
    spec: FeatureSpec,
    stream_id: str | None = None,
    stream_id_re: re.Pattern[str] | None = None,
) -> EventColumns | None:
    """The decoded events as columns when every one is valid as it stands, else ``None``.
    ``stream_id``: the path's (one-stream route); else each event names its own, checked
    against ``stream_id_re``."""
    events = decoded.events
    n = len(events)
    members = decoded.envelope
    if stream_id is not None:
        sids = [stream_id] * n
    else:
        assert stream_id_re is not None
        sids = [ev.stream_id for ev in events]  # type: ignore[union-attr]
        for sid, k in Counter(sids).items():
            try:
                check_stream_id(sid, stream_id_re)
            except FieldError:
                return None
            members += sid.count(":") * k
        members += n  # the stream_id members
    ts: list[float] = []
    rows: list[list[float]] = []
    ids: list[str | None] = []
    names = spec.names
    for ev in events:
        members += 2  # t, x
        t = ev.t
        if isinstance(t, str):
            members += t.count(":")
            try:
                t = timestamps.parse_rfc3339(t)
            except ValueError:
                return None
        ts.append(t)
        x = ev.x
        if isinstance(x, dict):
            if names is None or len(x) != len(names):
                return None
            members += len(x) + sum(k.count(":") for k in x)
            try:
                x = [x[k] for k in names]
            except KeyError:
                return None
        rows.append(x)
        event_id = ev.id
        if event_id is _UNSET:
            ids.append(None)
            continue
        members += 1
        if event_id is not None:
            if not 0 < len(event_id) <= MAX_EVENT_ID_CHARS:
                return None
            members += event_id.count(":")
        ids.append(event_id)
    if decoded.raw is not None and decoded.raw.count(b":") != members:
        return None  # a duplicate key (or a colon this count does not see): the exact path
    limit = min(spec.max_abs, FLOAT32_MAX)
    if n <= SMALL_REQUEST:  # a few events: plain checks cost less than numpy's per-call overhead
        for t, row in zip(ts, rows, strict=True):
            if not MIN_TIMESTAMP <= t < MAX_TIMESTAMP or len(row) != spec.size:
                return None
            if not all(abs(v) <= limit for v in row):  # False for NaN too
                return None
        return EventColumns(sids, np.array(ts), np.array(rows), ids, decoded.single)
    t_arr = np.fromiter(ts, dtype=np.float64, count=n)
    try:
        x_arr = np.array(rows, dtype=np.float64)
    except ValueError:  # ragged
        return None
    if (
        x_arr.shape != (n, spec.size)
        or not (np.abs(x_arr) <= limit).all()  # False for NaN too
        or not ((t_arr >= MIN_TIMESTAMP) & (t_arr < MAX_TIMESTAMP)).all()
    ):
        return None
    return EventColumns(sids, t_arr, x_arr, ids, decoded.single)
