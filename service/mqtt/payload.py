"""An MQTT message's payload to validated events: the HTTP event JSON or a SenML pack.

The format comes from the MQTT 5 content type (``application/json``, none, or
``application/senml+json``) or from a ``/senml`` level after the events topic. Every event of a
message is validated before any is applied; a fault is an :class:`ApiError` with the code the
HTTP route would answer.

Event ids make redeliveries duplicates. An event with an ``id`` keeps it; one without gets a
derived id, ``mqtt:<hash of topic and payload>.<index of the event in the message>``: a
redelivery carries the same bytes, so it gets the same id (SenML times relative to "now" too,
which resolve differently on each delivery). Two publishes of byte-identical payloads to one
topic are therefore one event, unless their events carry ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from service.api.deps import parse_json_bytes
from service.api.errors import ApiError, ErrorCode
from service.api.parsing import FieldError, ParsedEvent, parse_event
from service.api.submit import _batch_items, field_error, parse_batch
from service.engine.registry import FeatureSpec
from service.mqtt import senml
from service.mqtt.topics import SENML_SUFFIX
from service.mqtt.wire import derived_id

JSON_TYPES = ("application/json", "")


def is_senml(content_type: str | None, extra_levels: tuple[str, ...]) -> bool:
    """True for SenML, False for the event JSON; :class:`ApiError` for another content type
    or topic suffix."""
    if extra_levels not in ((), (SENML_SUFFIX,)):
        raise ApiError(
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            f"unknown events topic suffix {'/'.join(extra_levels)!r}; use none (JSON) or "
            f"'/{SENML_SUFFIX}'",
        )
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == senml.CONTENT_TYPE:
        return True
    if media not in JSON_TYPES:
        raise ApiError(
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            f"content type {content_type!r} is not supported; send application/json (events) "
            f"or {senml.CONTENT_TYPE} (SenML)",
        )
    return bool(extra_levels)


def decode_events(
    topic: str,
    payload: bytes,
    *,
    senml_pack: bool,
    spec: FeatureSpec,
    units: Mapping[str, str],
    max_bytes: int,
    max_events: int,
    now: float,
) -> list[ParsedEvent]:
    """The message's events in order, each with an id; :class:`ApiError` when any is invalid
    (then none is applied)."""
    if len(payload) > max_bytes:
        raise ApiError(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"payload of {len(payload)} bytes; at most {max_bytes} are accepted",
            {"max_bytes": max_bytes},
        )
    if not payload.strip():
        raise ApiError(ErrorCode.INVALID_JSON, "the payload is empty; send a JSON document")
    body = parse_json_bytes(payload)
    if senml_pack:
        try:
            records = senml.decode_pack(body, spec, units, now)
        except FieldError as exc:
            raise field_error(exc) from None
        events = [ParsedEvent(r.t, r.x, None) for r in records]
    else:
        items = _batch_items(body)
        if items is None:
            try:
                events = [parse_event(body, spec)]
            except FieldError as exc:
                raise field_error(exc) from None
        else:
            events = parse_batch(items, spec) if items else []
    if not events:
        raise ApiError(ErrorCode.INVALID_EVENT, "the message has no event")
    if len(events) > max_events:
        raise ApiError(
            ErrorCode.TOO_MANY_EVENTS,
            f"{len(events)} events in one message; at most {max_events} are accepted",
            {"max_events": max_events, "got": len(events)},
        )
    return [
        e if e.id is not None else replace(e, id=derived_id(topic, payload, i))
        for i, e in enumerate(events)
    ]
