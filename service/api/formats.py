"""The body formats of the events routes: JSON, NDJSON (one event per line) and MessagePack.

Every format decodes to the same shapes (an event object, a list of events, ``{"events":
[...]}``; NDJSON is always a list, one event per non-empty line), so one validator and one set of
error codes serve all three. The fast path decodes a body straight into typed structs
(:mod:`service.api.columns`); the exact path (:func:`exact_body`) decodes it into plain values for
:mod:`service.api.parsing`, which names every fault.

An undecodable body is ``400 invalid_json`` in every format (the message names the format, and
for NDJSON the line); a content type that is none of these is ``415 unsupported_media_type``.
Two differences come from the formats themselves: a MessagePack map with a key twice keeps the
last value (msgspec's rule; JSON bodies refuse it), and MessagePack has no ``NaN`` token problem
(a NaN float decodes and is refused as ``non_finite_value``, as in JSON).
"""

from __future__ import annotations

import enum
import json
from typing import Any

import msgspec

from service.api.errors import ApiError, ErrorCode


class BodyFormat(enum.Enum):
    JSON = "application/json"
    NDJSON = "application/x-ndjson"
    MSGPACK = "application/msgpack"


# media type (lower case, no parameters) -> format; ``+json`` suffixes are JSON too
_MEDIA = {
    "application/json": BodyFormat.JSON,
    "application/x-ndjson": BodyFormat.NDJSON,
    "application/ndjson": BodyFormat.NDJSON,
    "application/jsonl": BodyFormat.NDJSON,
    "application/msgpack": BodyFormat.MSGPACK,
    "application/x-msgpack": BodyFormat.MSGPACK,
    "application/vnd.msgpack": BodyFormat.MSGPACK,
}
EVENT_MEDIA_TYPES = tuple(f.value for f in BodyFormat)


def body_format(content_type: str | None, *, bulk: bool) -> BodyFormat:
    """The format a ``Content-Type`` names (JSON when absent). ``bulk``: the events routes,
    which also take NDJSON and MessagePack; other routes take JSON only (415 otherwise)."""
    if content_type is None:
        return BodyFormat.JSON
    media = content_type.split(";", 1)[0].strip().lower()
    fmt = _MEDIA.get(media)
    if fmt is None and media.startswith("application/") and media.endswith("+json"):
        fmt = BodyFormat.JSON
    if fmt is BodyFormat.JSON or (fmt is not None and bulk):
        return fmt
    accepted = ", ".join(EVENT_MEDIA_TYPES) if bulk else BodyFormat.JSON.value
    raise ApiError(
        ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        f"send a body of {accepted} (Content-Type); got {content_type!r}",
        {"accepted": list(EVENT_MEDIA_TYPES) if bulk else [BodyFormat.JSON.value]},
    )


def _object_without_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r} in an object")
            seen.add(key)
    return obj


def parse_json_bytes(raw: bytes) -> Any:
    """Parse a JSON body. ``NaN``/``Infinity`` tokens and overflowing numbers parse (to
    non-finite floats) so that validation can name them; anything else malformed is
    ``invalid_json``, an object with a key twice included (which value was meant?)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(ErrorCode.INVALID_JSON, "request body is not UTF-8") from None
    try:
        return json.loads(text, object_pairs_hook=_object_without_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise ApiError(
            ErrorCode.INVALID_JSON,
            f"request body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
        ) from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer of > 4300 digits, deep nesting
        raise ApiError(ErrorCode.INVALID_JSON, f"request body is not usable JSON: {exc}") from None


_msgpack = msgspec.msgpack.Decoder()


def decode_msgpack(raw: bytes) -> Any:
    """A MessagePack body as plain values (maps with non-string keys are left to validation)."""
    try:
        return _msgpack.decode(raw)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise ApiError(
            ErrorCode.INVALID_JSON, f"request body is not valid MessagePack: {exc}"
        ) from None


def ndjson_lines(raw: bytes) -> list[tuple[int, bytes]]:
    """The non-empty lines of an NDJSON body with their 1-based line numbers (``\\n`` or
    ``\\r\\n`` endings; blank lines are skipped)."""
    return [(i, line) for i, line in enumerate(raw.split(b"\n"), start=1) if line.strip(b" \t\r")]


def exact_body(raw: bytes, fmt: BodyFormat) -> Any:
    """The body as plain values for the exact parser (JSON strictly: :func:`parse_json_bytes`).
    NDJSON becomes a list, one item per non-empty line; a line
    that is not JSON fails the request naming the line."""
    if fmt is BodyFormat.MSGPACK:
        return decode_msgpack(raw)
    if fmt is BodyFormat.JSON:
        return parse_json_bytes(raw)
    items = []
    for number, line in ndjson_lines(raw):
        try:
            items.append(parse_json_bytes(line))
        except ApiError as exc:
            raise ApiError(exc.code, f"line {number}: {exc.message}", {"line": number}) from None
    if not items:
        raise ApiError(ErrorCode.INVALID_JSON, "request body has no events (NDJSON: one per line)")
    return items
